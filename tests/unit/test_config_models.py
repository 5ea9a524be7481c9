"""Settings: per-model resolution (variant beats family beats server), redaction and immutability."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from config_helpers import error, load

from mullama.config import ModelSettings, RunnerConfig, Settings, load_settings, model_settings

# ---------------------------------------------------------------- per-model resolution


MODELS_TOML = """
n_ctx = 8192
threads = 6
keep_alive = "5m"

[aliases]
chat = "llama3:8b"
ll = "llama3"

[models.smollm2]
n_ctx = 4096
keep_alive = "10m"
pinned = true
cache_type_k = "Q8_0"

[models."smollm2:135m"]
n_ctx = 2048
flash_attn = "on"
tensor_split = [3, 1]
require_full = true

[models.chat]
n_ctx = 1024
preload = true

[models.ll]
threads = 3
"""


@pytest.mark.parametrize("name,family,expected", [
    ("smollm2:135m", "smollm2", dict(n_ctx=2048, flash_attn="on", keep_alive=600.0, pinned=True, threads=6,
                                     cache_type_k="q8_0", tensor_split=(3.0, 1.0), require_full=True)),
    ("smollm2:360m", "smollm2", dict(n_ctx=4096, flash_attn="auto", keep_alive=600.0, pinned=True,
                                     tensor_split=(), require_full=False)),
    ("smollm2", "smollm2", dict(n_ctx=4096, pinned=True, preload=False)),
    ("qwen:7b", "qwen", dict(n_ctx=8192, keep_alive=300.0, threads=6, pinned=False, cache_type_k="f16",
                             n_gpu_layers=-1, n_parallel=4, n_batch=2048, n_ubatch=512)),
    ("llama3:8b", "llama3", dict(n_ctx=1024, threads=3, preload=True)),
    ("chat", "llama3", dict(n_ctx=1024, threads=3, preload=True)),
    ("llama3:70b", "llama3", dict(n_ctx=8192, threads=3, preload=False)),
])
def test_variant_beats_family_beats_server(tmp_path: Path, name: str, family: str,
                                           expected: dict[str, Any]) -> None:
    config = model_settings(load(tmp_path, MODELS_TOML), name, family)
    assert isinstance(config, RunnerConfig)
    assert {k: getattr(config, k) for k in expected} == expected
    assert None not in vars(config).values()


def test_runner_config_is_frozen(tmp_path: Path) -> None:
    config = model_settings(load_settings(env={}), "x:y", "x")
    with pytest.raises(AttributeError):
        config.n_ctx = 1  # type: ignore[misc]


# ---------------------------------------------------------------- redaction and immutability


def test_redacted_hides_keys_and_is_json(tmp_path: Path) -> None:
    s = load(tmp_path, MODELS_TOML, {"MULLAMA_API_KEYS": "sk-one,sk-two"})
    data = s.redacted()
    assert data["api_keys"] == 2
    text = json.dumps(data)
    assert "sk-one" not in text and "sk-two" not in text
    assert json.loads(text) == data
    assert data["models"]["smollm2:135m"] == {"n_ctx": 2048, "flash_attn": "on", "tensor_split": [3.0, 1.0],
                                              "require_full": True}
    assert data["aliases"] == {"chat": "llama3:8b", "ll": "llama3"} and data["port"] == 8080


def test_settings_are_immutable(tmp_path: Path) -> None:
    s = load(tmp_path, MODELS_TOML)
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.aliases["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        s.models["x"] = ModelSettings()  # type: ignore[index]
    with pytest.raises(TypeError):
        s.default_variants["x"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        s.models["smollm2"].n_ctx = 1  # type: ignore[misc]
    assert isinstance(s.api_keys, tuple) and isinstance(s.models_dirs, tuple)


def test_directly_built_and_replaced_settings_are_immutable_too() -> None:
    s = Settings(aliases={"a": "b"}, models={"m": ModelSettings(n_ctx=512)})
    with pytest.raises(TypeError):
        s.aliases["c"] = "d"  # type: ignore[index]
    replaced = msgspec.structs.replace(s, port=1)
    with pytest.raises(TypeError):
        replaced.models["x"] = ModelSettings()  # type: ignore[index]
    assert model_settings(replaced, "m", "m").n_ctx == 512 and replaced.redacted()["aliases"] == {"a": "b"}



def test_sampling_defaults_merge_field_by_field(tmp_path: Path) -> None:
    s = load(tmp_path, '[models.smollm2.sampling]\ntemperature = 0.2\nstop = ["END"]\n'
                       '[models."smollm2:q8_0".sampling]\ntop_k = 5\ntemperature = 0.3\n')
    assert dict(model_settings(s, "smollm2:q8_0", "smollm2").sampling) == {"temperature": 0.3, "stop": ("END",),
                                                                           "top_k": 5}
    assert dict(model_settings(s, "smollm2:q4_1", "smollm2").sampling) == {"temperature": 0.2, "stop": ("END",)}
    assert model_settings(s, "other", "other").sampling == ()


@pytest.mark.parametrize("toml, fragment", [
    ("[models.m.sampling]\ntemprature = 0.2\n", "models.m.sampling: Object contains unknown field `temprature`"),
    ("[models.m.sampling]\ntop_p = 2\n", "models.m.sampling.top_p: expected a value from 0 to 1, got 2.0"),
    ("[models.m.sampling]\nmirostat = 3\n", "models.m.sampling.mirostat"),
    ("[models.m.sampling]\nstop = [\"\"]\n", "models.m.sampling.stop: expected non-empty strings"),
    ("[models.m.sampling]\ntop_k = \"many\"\n", "models.m.sampling.top_k"),
])
def test_bad_sampling_defaults_name_the_field(tmp_path: Path, toml: str, fragment: str) -> None:
    assert fragment in error(tmp_path, toml)


def test_defaults_fill_only_what_the_request_left_out() -> None:
    from mullama import wire
    from mullama.serving.job import Job, with_defaults

    job = Job(kind="chat", model="m", request=wire.CompletionRequest(prompt="x", temperature=0.9), stream=False,
              include_usage=False, given=frozenset({"temperature"}))
    req = with_defaults(job, (("temperature", 0.2), ("top_k", 5), ("stop", ("END",))))
    assert (req.temperature, req.top_k, req.stop) == (0.9, 5, ["END"])
    assert with_defaults(job, ()) is job.request


def test_load_knobs_reach_the_runner_s_load_params(tmp_path: Path) -> None:
    from mullama.models.entry import ModelEntry
    from mullama.serving.loading import load_params

    s = load(tmp_path, 'use_mlock = true\nsplit_mode = "row"\nrope_scaling = "yarn"\n[models.m]\nuse_mmap = false\n'
                       'main_gpu = 1\nkv_offload = false\nswa_full = true\nrope_freq_base = 1e6\nyarn_orig_ctx = 4096\n')
    entry = ModelEntry(name="m:q", family="m", variant="q", path=Path("/x.gguf"), parts=(Path("/x.gguf"),),
                       size_bytes=1, modified=0.0, id="0" * 12, header=None, error=None, source="models_dir")
    p = load_params(entry, model_settings(s, "m:q", "m"), "alloc", None)
    assert (p.use_mmap, p.use_mlock, p.main_gpu, p.split_mode) == (False, True, 1, "row")
    assert (p.offload_kqv, p.swa_full, p.rope_scaling, p.rope_freq_base, p.rope_freq_scale, p.yarn_orig_ctx) == (
        False, True, "yarn", 1e6, 0.0, 4096)
    plain = load_params(entry, model_settings(load(tmp_path, ""), "m:q", "m"), "alloc", None)
    assert (plain.rope_scaling, plain.offload_kqv) == ("", True)  # "model": the GGUF's own
    assert "rope_freq_base: expected a number >= 0" in error(tmp_path, "rope_freq_base = -1.0\n")
    kv = load(tmp_path, '[models.m]\noverride_kv = ["tokenizer.ggml.add_bos_token=bool:false"]\ncheck_tensors = true\n')
    p = load_params(entry, model_settings(kv, "m:q", "m"), "alloc", None)
    assert (p.kv_overrides, p.check_tensors, p.pooling) == (["tokenizer.ggml.add_bos_token=bool:false"], True, "mean")
    assert "models.m.override_kv[0]: expected KEY=TYPE:VALUE" in error(tmp_path, '[models.m]\noverride_kv = ["x=y"]\n')
    assert "main_gpu: expected an integer in 0..255, got 300" in error(tmp_path, "main_gpu = 300\n")
    assert "split_mode: expected one of none, layer, row" in error(tmp_path, 'split_mode = "diagonal"\n')
    assert "models.m.chat_template: expected a Jinja file that exists" in error(
        tmp_path, '[models.m]\nchat_template = "/no/such/file.jinja"\n')
    assert model_settings(load(tmp_path, '[models.m]\nchat_template = "llama3"\n'), "m", "m").chat_template == "llama3"
