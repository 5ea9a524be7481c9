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
        "--port", "8081", "--api-key", "k1", "--lora", "adapter.gguf", "-ot", "exps=CPU", "--mlock", "--no-mmap",
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
    assert notes == ["--jinja (not needed: chat templates are always rendered with Jinja)",
                     "--lora adapter.gguf (LoRA adapters are not supported yet)",
                     "-ot exps=CPU (no tensor buffer overrides yet)"]
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
