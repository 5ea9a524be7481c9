"""Tensor buffer overrides, MoE shorthands, NUMA, context shift and LoRA adapters as settings: checked at
start with the field named, resolved per model, expanded into llama.cpp's own patterns, and handed to the
runner in ``LoadParams``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from config_helpers import error, load
from lifecycle_fakes import entry

from mullama import wire
from mullama.config import model_settings
from mullama.config.tensors import (
    FFN_EXPS_REGEX,
    MAX_OVERRIDES,
    block_exps_regex,
    check_override,
    expand_overrides,
)
from mullama.serving.loading import load_params

LLAMA_CPP = Path(__file__).resolve().parents[2] / "third_party" / "llama.cpp" / "common" / "common.h"


def test_the_moe_patterns_are_llama_cpps_own() -> None:
    if not LLAMA_CPP.is_file():
        pytest.skip("third_party/llama.cpp is not fetched")
    text = LLAMA_CPP.read_text("utf-8")
    c_string = re.search(r'LLM_FFN_EXPS_REGEX = "(.*?)";', text).group(1)  # type: ignore[union-attr]
    assert c_string.replace("\\\\", "\\") == FFN_EXPS_REGEX
    assert 'string_format("blk\\\\.%d%s", idx, ffn_regex)' in text  # llm_ffn_block_regex
    assert block_exps_regex(12) == r"blk\.12\.ffn_(up|down|gate|gate_up)_(ch|)exps"


@pytest.mark.parametrize("cfg, expected", [
    ({}, ()),
    ({"tensor_overrides": ("a=CUDA0",)}, ("a=CUDA0",)),
    ({"cpu_moe": True}, (FFN_EXPS_REGEX + "=CPU",)),
    ({"n_cpu_moe": 2, "tensor_overrides": ("x=CUDA1",)},
     ("x=CUDA1", r"blk\.0\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU", r"blk\.1\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU")),
    ({"n_cpu_moe": 30, "cpu_moe": True}, (FFN_EXPS_REGEX + "=CPU",)),  # cpu_moe already matches all of them
])
def test_expand_overrides_puts_the_explicit_ones_first(cfg, expected) -> None:
    values = {"tensor_overrides": (), "cpu_moe": False, "n_cpu_moe": 0} | cfg
    assert expand_overrides(SimpleNamespace(**values)) == expected


@pytest.mark.parametrize("good", [r"\.ffn_.*_exps\.=CPU", "blk\\.(1[0-9]|2[0-3])\\.=CUDA1", "output=CUDA_Host",
                                  "token_embd=Metal", "x{1,3}=RPC[127.0.0.1:50052]", "(?:a|b)(?!c)=Vulkan0",
                                  r"[(?P]=CPU", r"\(?x=CPU"])
def test_good_overrides_pass(good: str) -> None:
    check_override(good)


@pytest.mark.parametrize("bad, why", [
    ("exps", "expected REGEX=DEVICE"), ("=CPU", "REGEX is empty"), ("a(=CPU", "does not compile"),
    ("a=", "expected a device"), ("a=CU DA0", "expected a device"), ("a=0CUDA", "expected a device"),
    ("(?P<x>a)=CPU", "'(?P'"), ("(?i)exps=CPU", "'(?i'"), (r"\Aexps=CPU", r"'\A'"), ("(?<!a)b=CPU", "'(?<'"),
    ("(?=a)=CPU", "a REGEX cannot contain '='"),
])
def test_bad_overrides_say_why(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        check_override(bad)


MOE_TOML = """
numa = "distribute"
context_shift = true

[models.qwen3moe]
tensor_overrides = ["blk\\\\.0\\\\.=CUDA0"]
cpu_moe = true

[models."qwen3moe:30b"]
n_cpu_moe = 20
cpu_moe = false
numa = "isolate"
context_shift = false
"""


def test_settings_resolve_per_model(tmp_path: Path) -> None:
    s = load(tmp_path, MOE_TOML)
    family = model_settings(s, "qwen3moe:a3b", "qwen3moe")
    assert (family.tensor_overrides, family.cpu_moe, family.n_cpu_moe, family.numa, family.context_shift) == (
        (r"blk\.0\.=CUDA0",), True, 0, "distribute", True)
    variant = model_settings(s, "qwen3moe:30b", "qwen3moe")
    assert (variant.cpu_moe, variant.n_cpu_moe, variant.numa, variant.context_shift) == (False, 20, "isolate", False)
    assert len(expand_overrides(variant)) == 21
    plain = model_settings(s, "smollm2", "smollm2")
    assert (plain.tensor_overrides, plain.cpu_moe, plain.n_cpu_moe, plain.adapters) == ((), False, 0, ())


@pytest.mark.parametrize("toml, message", [
    ('[models.qwen]\ntensor_overrides = ["exps=CPU", "exps"]\n', "models.qwen.tensor_overrides[1]: expected REGEX=DEVICE"),
    ('[models.qwen]\ntensor_overrides = "a[=CPU"\n', "models.qwen.tensor_overrides[0]: the REGEX 'a[' does not compile"),
    ('[models.qwen]\ntensor_overrides = ["a=cuda 0"]\n', "models.qwen.tensor_overrides[0]: expected a device"),
    ("[models.qwen]\nn_cpu_moe = -1\n", "models.qwen.n_cpu_moe: expected an integer in 0..4095"),
    ('[models.qwen]\nnuma = "everywhere"\n', "models.qwen.numa: expected one of off, distribute, isolate, numactl"),
    ('numa = "sometimes"\n', "numa: expected one of off, distribute, isolate, numactl"),
    (f'[models.qwen]\nn_cpu_moe = {MAX_OVERRIDES}\ntensor_overrides = ["a=CPU"]\n',
     "models.qwen: 4096 tensor overrides once cpu_moe/n_cpu_moe are expanded"),
])
def test_bad_values_name_the_field(tmp_path: Path, toml: str, message: str) -> None:
    assert message in error(tmp_path, toml)


def adapters_toml(*tables: str) -> str:
    return "".join(f"[[models.qwen.adapters]]\n{t}\n" for t in tables)


def test_adapters_load_with_paths_expanded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "style.gguf").write_bytes(b"")
    (tmp_path / "b.gguf").write_bytes(b"")
    s = load(tmp_path, adapters_toml('path = "~/style.gguf"\nscale = 0.5', f'path = "{tmp_path}/b.gguf"\nname = "b2"'))
    cfg = model_settings(s, "qwen:7b", "qwen")
    assert [(a.path, a.scale, a.name) for a in cfg.adapters] == [
        (str(tmp_path / "style.gguf"), 0.5, None), (str(tmp_path / "b.gguf"), 1.0, "b2")]


@pytest.mark.parametrize("tables, message", [
    (['path = ""'], "models.qwen.adapters[0].path: expected the adapter's GGUF file"),
    (['path = "{d}/missing.gguf"'], "models.qwen.adapters[0].path: no such file"),
    (['path = "{d}/a.gguf"\nscale = nan'], "models.qwen.adapters[0].scale: expected a finite number, got nan"),
    (['path = "{d}/a.gguf"\nscale = inf'], "models.qwen.adapters[0].scale: expected a finite number"),
    (['path = "{d}/a.gguf"', 'path = "{d}/sub/a.gguf"'], "models.qwen.adapters[1]: the name 'a' is taken by adapters[0]"),
    (['path = "{d}/a.gguf"\nname = "x/y"'], "models.qwen.adapters[0].name: 'x/y' must not contain '/'"),
    (['path = "{d}/a.gguf"\nname = ""'], "models.qwen.adapters[0].name: '' is empty"),
    (['scale = 1.0'], "models.qwen.adapters[0]: Object missing required field `path`"),
    (['path = "{d}/a.gguf"\nalpha = 2'], "Object contains unknown field `alpha`"),
])
def test_bad_adapters_name_the_entry(tmp_path: Path, tables: list[str], message: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "sub" / "a.gguf").write_bytes(b"")
    assert message in error(tmp_path, adapters_toml(*(t.format(d=tmp_path) for t in tables)))


def test_redacted_shows_the_new_fields(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"")
    s = load(tmp_path, MOE_TOML + f'\n[[models."qwen3moe:30b".adapters]]\npath = "{tmp_path}/a.gguf"\nscale = 0.0\n')
    shown = json.loads(json.dumps(s.redacted()))
    assert (shown["numa"], shown["context_shift"]) == ("distribute", True)
    assert shown["models"]["qwen3moe"] == {"tensor_overrides": [r"blk\.0\.=CUDA0"], "cpu_moe": True}
    variant = shown["models"]["qwen3moe:30b"]
    assert (variant["n_cpu_moe"], variant["numa"]) == (20, "isolate")
    assert variant["adapters"] == [{"path": f"{tmp_path}/a.gguf", "scale": 0.0, "name": None}]


def test_load_params_carry_them_to_the_runner(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"")
    s = load(tmp_path, MOE_TOML + f'\n[[models."qwen3moe:30b".adapters]]\npath = "{tmp_path}/a.gguf"\nscale = 0.25\n'
                                  f'[[models."qwen3moe:30b".adapters]]\npath = "{tmp_path}/a.gguf"\nname = "again"\n')
    cfg = model_settings(s, "qwen3moe:30b", "qwen3moe")
    params = load_params(entry("qwen3moe:30b"), cfg, "alloc", None, 0)
    assert params.tensor_overrides == [r"blk\.0\.=CUDA0", *(f"{block_exps_regex(i)}=CPU" for i in range(20))]
    assert (params.numa, params.context_shift) == ("isolate", False)
    assert params.adapters == [wire.AdapterSpec(path=f"{tmp_path}/a.gguf", scale=0.25, name=""),
                               wire.AdapterSpec(path=f"{tmp_path}/a.gguf", scale=1.0, name="again")]
    family = load_params(entry("qwen3moe:a3b"), model_settings(s, "qwen3moe:a3b", "qwen3moe"), "fit", None, -1)
    assert family.tensor_overrides == [r"blk\.0\.=CUDA0", f"{FFN_EXPS_REGEX}=CPU"]
    assert (family.numa, family.context_shift, family.adapters) == ("distribute", True, [])
