"""``mullama import-args`` (issue 19): a llama-server command line becomes TOML that mullama's own config
loader accepts with the same values, and every flag it cannot map is named with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import load

from mullama.cli import import_args
from mullama.cli.main import main
from mullama.config import model_settings

LINE = ["-m", "/srv/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf", "--alias", "qwen", "-c", "8192", "-np", "4",
        "-ngl", "99", "-ts", "3,1", "-t", "8", "-fa", "--jinja", "-ctk", "Q8_0", "--temp", "0.7", "--top-k", "20",
        "--min-p=0.05", "--mirostat", "2", "--mirostat-ent", "4.5", "--dry-multiplier", "0.8",
        "--dry-sequence-breaker", "\\n", "--dry-sequence-breaker", ":", "--samplers", "top_k;min_p;temperature",
        "--port", "8081", "--api-key", "k1", "-ot", "exps=CPU", "--mlock", "--no-mmap",
        "-sm", "row", "-mg", "1", "--chat-template", "llama3", "-nkvo", "--swa-full", "--rope-scaling", "YaRN",
        "--rope-scale", "4", "--yarn-orig-ctx", "32768", "--override-kv", "a.b=int:3", "--override-kv",
        "c=bool:false", "--check-tensors"]


def test_the_toml_loads_with_the_same_values(tmp_path: Path) -> None:
    imported = import_args.parse(LINE)
    settings = load(tmp_path, imported.toml(imported.name or "x"))
    assert (settings.port, settings.api_keys) == (8081, ("k1",))
    cfg = model_settings(settings, "qwen", "qwen")
    assert (cfg.n_ctx, cfg.n_parallel, cfg.n_gpu_layers, cfg.tensor_split, cfg.threads, cfg.flash_attn,
            cfg.cache_type_k) == (8192, 4, 99, (3.0, 1.0), 8, "on", "q8_0")
    assert (cfg.use_mlock, cfg.use_mmap, cfg.split_mode, cfg.main_gpu, cfg.chat_template) == (
        True, False, "row", 1, "llama3")
    assert (cfg.kv_offload, cfg.swa_full, cfg.rope_scaling, cfg.rope_freq_scale, cfg.yarn_orig_ctx) == (
        False, True, "yarn", 0.25, 32768)
    assert (cfg.override_kv, cfg.check_tensors) == (("a.b=int:3", "c=bool:false"), True)
    assert dict(cfg.sampling) == {"temperature": 0.7, "top_k": 20, "min_p": 0.05, "mirostat": 2,
                                  "mirostat_tau": 4.5, "dry_multiplier": 0.8, "dry_sequence_breakers": ("\n", ":"),
                                  "samplers": ("top_k", "min_p", "temperature")}
    assert settings.models["qwen"].path == "/srv/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf"


def test_what_cannot_be_mapped_is_named_with_the_reason() -> None:
    notes = import_args.parse(LINE).notes
    assert notes == ["--jinja (not needed: chat templates are always rendered with Jinja)"]
    assert import_args.parse(["--frobnicate", "3"]).notes == ["--frobnicate 3 (no equivalent)"]


@pytest.mark.parametrize("args, message", [(["-c", "big"], "-c: cannot read 'big'"),
                                           (["--temp"], "--temp: a value is missing")])
def test_bad_values_exit_2_naming_the_flag(capsys, args, message) -> None:
    assert main(["import-args", "--", *args]) == 2
    assert message in capsys.readouterr().err


def test_the_command_prints_the_toml(capsys) -> None:
    assert main(["import-args", "--name", "mine", "--", "-m", "/m/a.gguf", "--temp", "0.2"]) == 0
    out = capsys.readouterr().out
    assert '[models."mine"]' in out and 'path = "/m/a.gguf"' in out and "temperature = 0.2" in out


def test_overrides_numa_context_shift_and_adapters_load_with_the_same_values(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.gguf").write_bytes(b"")
    line = ["-m", "/m/q.gguf", "-ot", r"blk\.1\.=CUDA0,output=CPU", "--override-tensor=exps=CUDA1", "-ncmoe", "3",
            "--numa", "isolate", "--context-shift", "--lora", f"{tmp_path}/a.gguf,{tmp_path}/b.gguf",
            "--lora-scaled", f"{tmp_path}/c.gguf:0.5", "--lora-scaled", f"{tmp_path}/d.gguf", "2"]
    imported = import_args.parse(line)
    assert imported.notes == []
    text = imported.toml("q")
    assert '[[models."q".adapters]]' in text
    cfg = model_settings(load(tmp_path, text), "q", "q")
    assert cfg.tensor_overrides == (r"blk\.1\.=CUDA0", "output=CPU", "exps=CUDA1")
    assert (cfg.n_cpu_moe, cfg.cpu_moe, cfg.numa, cfg.context_shift) == (3, False, "isolate", True)
    assert [(Path(a.path).name, a.scale) for a in cfg.adapters] == [("a.gguf", 1.0), ("b.gguf", 1.0), ("c.gguf", 0.5),
                                                                   ("d.gguf", 2.0)]


def test_lora_init_without_apply_loads_every_adapter_at_scale_0() -> None:
    model = import_args.parse(["--lora-init-without-apply", "--lora", "a.gguf", "--lora-scaled", "b.gguf:0.5"]).model
    assert model["adapters"] == [{"path": "a.gguf", "scale": 0.0}, {"path": "b.gguf", "scale": 0.0}]


@pytest.mark.parametrize("line, model", [
    (["-cmoe"], {"cpu_moe": True}),
    (["--rpc", "10.0.0.2:50052,10.0.0.3:50052"], {"rpc_workers": ["10.0.0.2:50052", "10.0.0.3:50052"]}),
    (["--no-context-shift", "--numa", ""], {"context_shift": False, "numa": "distribute"}),
    (["-ot", "x=CPU", "--cpu-moe"], {"tensor_overrides": ["x=CPU"], "cpu_moe": True}),
    # llama-server keeps the command line's order (the first match wins): a shorthand before an -ot is written out
    (["--n-cpu-moe", "2", "-ot", "exps=CUDA0"], {"tensor_overrides": [
        r"blk\.0\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU", r"blk\.1\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU",
        "exps=CUDA0"]}),
    (["-ot", "a=CPU", "--cpu-moe", "-ot", "b=CUDA0"], {"tensor_overrides": [
        "a=CPU", r"\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU", "b=CUDA0"]}),
    (["-ncffn", "2"], {"tensor_overrides": [r"blk\.0\.ffn_(up|down|gate)\.=CPU", r"blk\.1\.ffn_(up|down|gate)\.=CPU"]}),
    (["--lora-scaled", "C:/x/a.gguf:0.25"], {"adapters": [{"path": "C:/x/a.gguf", "scale": 0.25}]}),
    (["-cram", "512"], {"cache_ram": 512 << 20}),
    (["--cache-ram", "-1"], {"cache_ram": 1 << 40}),  # no limit
    (["--cache-ram=0"], {"cache_ram": 0}),
    (["--no-cache-idle-slots"], {"cache_ram": 0}),  # idle slots stay in the KV cache (the nearest mapping)
])
def test_moe_and_adapter_flags(line: list[str], model: dict) -> None:
    assert import_args.parse(line).model == model


@pytest.mark.parametrize("args, message", [(["--n-cpu-moe", "-1"], "--n-cpu-moe: cannot read '-1'"),
                                           (["--numa", "fast"], "--numa: cannot read 'fast'"),
                                           (["--lora-scaled", "a.gguf"], "--lora-scaled: cannot read 'a.gguf'")])
def test_bad_moe_and_adapter_values(capsys, args, message) -> None:
    assert main(["import-args", "--", *args]) == 2
    assert message in capsys.readouterr().err


def test_speculative_flags_become_the_models_speculative_table(tmp_path) -> None:
    from mullama.config import load_settings

    out = import_args.parse(["-m", "/m/q.gguf", "--spec-type", "ngram-simple,ngram-map-k", "--spec-draft-n-max", "8",
                             "--spec-ngram-simple-size-n", "6"])
    assert out.speculative == {"types": ["ngram-simple", "ngram-map-k"], "n_max": 8, "ngram_n": 6}
    path = tmp_path / "m.toml"
    path.write_text(out.toml("q"))
    spec = load_settings(config_path=path, env={}).models["q"].speculative
    assert spec is not None and spec.types == ("ngram-simple", "ngram-map-k") and spec.n_max == 8


def test_a_draft_model_becomes_draft_simple_after_the_ngram_drafters(tmp_path) -> None:
    from mullama.config import load_settings
    from mullama.config.speculative import effective

    draft = tmp_path / "d.gguf"
    draft.write_bytes(b"GGUF")
    out = import_args.parse(["-m", "/m/q.gguf", "-md", str(draft), "--draft-p-min", "0.6", "-ngld", "all"])
    assert out.speculative == {"draft_model": str(draft), "draft_p_min": 0.6, "draft_gpu_layers": -1}
    path = tmp_path / "m.toml"
    path.write_text(out.toml("q"))
    spec = effective(load_settings(config_path=path, env={}).models["q"].speculative)
    assert spec.types == ("draft-simple",) and spec.draft_model == str(draft) and spec.draft_p_min == 0.6
    both = import_args.parse(["-m", "/m/q.gguf", "--spec-type", "ngram-mod", "--model-draft", str(draft)])
    assert both.speculative["types"] == ["ngram-mod", "draft-simple"]

