"""Settings: every validation message names its source (variable, flag, file and field), and config
file problems (missing, unreadable, bad TOML, unknown settings)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from config_helpers import error, load

from mullama.config import load_settings
from mullama.core.errors import ConfigError

BAD_ENV = [
    ({"MULLAMA_PORT": "abc"}, "MULLAMA_PORT: expected an integer in 0..65535, got 'abc'"),
    ({"MULLAMA_N_PARALLEL": "0"}, "MULLAMA_N_PARALLEL: expected an integer in 1..256, got 0"),
    ({"MULLAMA_THREADS": "-1"}, "MULLAMA_THREADS: expected an integer >= 0, got -1"),
    ({"MULLAMA_THREADS_BATCH": "two"}, "MULLAMA_THREADS_BATCH: expected an integer >= 0, got 'two'"),
    ({"MULLAMA_KEEP_ALIVE": "5 minutes"}, "MULLAMA_KEEP_ALIVE: expected a duration"),
    ({"MULLAMA_MEMORY_BUDGET": "8XB"}, "MULLAMA_MEMORY_BUDGET: expected a size such as '8GiB'"),
    ({"MULLAMA_DRAIN_TIMEOUT": "-1"}, "MULLAMA_DRAIN_TIMEOUT: expected a positive duration, got -1.0"),
    ({"MULLAMA_FLASH_ATTN": "maybe"}, "MULLAMA_FLASH_ATTN: expected one of auto, on, off, got 'maybe'"),
    ({"MULLAMA_ALLOW_PUBLIC": "maybe"},
     "MULLAMA_ALLOW_PUBLIC: expected a boolean (1/0, true/false, yes/no, on/off), got 'maybe'"),
    ({"MULLAMA_DEFAULT_MODEL": "..\\x"}, r"MULLAMA_DEFAULT_MODEL: invalid model name '..\\x': must not"),
]

BAD_FLAGS = [
    ({"port": 70000}, "--port: expected an integer in 0..65535, got 70000"),
    ({"n_parallel": 257}, "--parallel: expected an integer in 1..256, got 257"),
    ({"n_ctx": 8}, "--ctx-size: expected an integer >= 16, got 8"),
    ({"api_keys": ["a b"]}, "--api-key: key #1 is empty or contains whitespace"),
    ({"n_ubatch": 0}, "--n-ubatch: expected an integer >= 1, got 0"),
    ({"n_batch": 256}, "n_ubatch (default): n_ubatch (512) must not exceed n_batch (256, from --n-batch)"),
    ({"max_body_bytes": -5}, "--max-body-bytes: expected a non-negative size"),
    ({"cache_type_v": "Q2_K"},
     "--cache-type-v: expected one of f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1, got 'q2_k'"),
    ({"log_level": "verbose"}, "--log-level: expected one of debug, info, warning, error, got 'verbose'"),
    ({"port": "http"}, "--port: expected an integer in 0..65535, got 'http'"),
    ({"n_ctxx": 4}, "--n-ctxx: unknown setting 'n_ctxx' (did you mean 'n_ctx'?)"),
]

# the message after "<config file>: "
BAD_FILE = [
    ('port = "x"', "port: Expected `int`, got `str`"),
    ("port = 80.5", "port: Expected `int`, got `float`"),
    ("n_ctx = 8", "n_ctx: expected an integer >= 16, got 8"),
    ("n_gpu_layers = -2", "n_gpu_layers: expected an integer >= -1, got -2"),
    ("max_queue = -1", "max_queue: expected an integer >= 0, got -1"),
    ("max_tokens_limit = 0", "max_tokens_limit: expected an integer >= 1, got 0"),
    ("keep_alive = true", "keep_alive: expected a duration"),
    ('memory_budget = "8 gigs"', "memory_budget: expected a size"),
    ("memory_budget = 0", "memory_budget: expected a positive size such as '8GiB', got 0"),
    ("load_timeout = 0", "load_timeout: expected a positive duration, got 0.0"),
    ('scheduler = "  "', "scheduler: expected a policy name or 'module:Class', got '  '"),
    ('api_keys = ["ok", ""]', "api_keys: key #2 is empty or contains whitespace"),
    ("api_keys = [1]", "api_keys[0]: Expected `str`, got `int`"),
    ('cache_type_k = "q3"', "cache_type_k: expected one of f32, f16, bf16, q8_0"),
    ("log_format = 1", "log_format: Expected `str`, got `int`"),
    ("bundled_model = 1", "bundled_model: Expected `bool`, got `int`"),
    ('models_dirs = ["/a", ""]', "models_dirs: a directory is an empty string"),
    ('host = "my host"', "host: expected a host name or address, got 'my host'"),
    ('host = ""', "host: expected a host name or address, got ''"),
    ('host = "http://"', "host: expected a host name or address, got 'http://'"),
    ('default_model = "a/b"', "default_model: invalid model name 'a/b': must not contain '/'"),
    ('[aliases]\n"my chat" = "qwen:7b"', "aliases.my chat: invalid model name 'my chat': must not"),
    ('[aliases]\nchat = "a:b:c"', "aliases.chat: invalid model name 'a:b:c': must be 'family' or 'family:"),
    ('[aliases]\nchat = "chat"', "aliases.chat: alias target 'chat' must be a model or family, not an alias"),
    ('[aliases]\na = "b"\nb = "c"', "aliases.a: alias target 'b' must be a model or family"),
    ("[aliases]\nchat = 3", "aliases.chat: expected a string, got 3"),
    ("aliases = 3", "aliases: Expected `object`, got `int`"),
    ('[default_variants]\nqwen = "7b:x"', "default_variants.qwen: invalid model name 'qwen:7b:x'"),
    ('[models."../x"]\nn_ctx = 512', "models.../x: invalid model name '../x': must not contain '/'"),
    ('[models.smollm2]\nn_ctx = "big"', "models.smollm2.n_ctx: Expected `int`, got `str`"),
    ("[models.smollm2]\nn_ctx = 8", "models.smollm2.n_ctx: expected an integer >= 16, got 8"),
    ("[models.smollm2]\nn_parallel = 0", "models.smollm2.n_parallel: expected an integer in 1..256, got 0"),
    ("[models.smollm2]\nthreads = -3", "models.smollm2.threads: expected an integer >= 0, got -3"),
    ("[models.m]\ntensor_split = [-1, 2]",
     "models.m.tensor_split: expected non-negative shares with a positive sum, got [-1.0, 2.0]"),
    ("[models.m]\ntensor_split = [0, 0]", "models.m.tensor_split: expected non-negative shares"),
    ('[models.m]\ntensor_split = ["a"]', "models.m.tensor_split[0]: Expected `float`, got `str`"),
    ('[models.m]\nflash_attn = "maybe"', "models.m.flash_attn: expected one of auto, on, off, got 'maybe'"),
    ('[models.m]\ncache_type_k = "q3"', "models.m.cache_type_k: expected one of f32"),
    ('[models.m]\nkeep_alive = "soon"', "models.m.keep_alive: expected a duration"),
    ('[models.m]\npath = " "', "models.m.path: expected a file path, got an empty string"),
    ('[models.m]\npinned = "yes"', "models.m.pinned: Expected `bool`, got `str`"),
    ("[models]\nm = 3", "models.m: Expected `object`, got `int`"),
    ("models = 3", "models: Expected `object`, got `int`"),
    ('[models."m:small"]\nn_ubatch = 4096',
     "models.m:small: n_ubatch (4096) must not exceed n_batch (2048) once server-wide values are applied"),
    ("n_batch = 512\n[models.m]\nn_ubatch = 1024", "models.m: n_ubatch (1024) must not exceed n_batch (512)"),
    ('[aliases]\nchat = "qwen:7b"\n[models.chat]\nn_ctx = 512\n[models."qwen:7b"]\nn_ctx = 1024',
     "models.chat: 'chat' is an alias of 'qwen:7b', which has its own [models] entry"),
]


@pytest.mark.parametrize("env,expected", BAD_ENV)
def test_bad_env_names_the_variable(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert error(tmp_path, env=env).startswith(expected)


@pytest.mark.parametrize("flags,expected", BAD_FLAGS)
def test_bad_flag_names_the_flag(tmp_path: Path, flags: dict[str, Any], expected: str) -> None:
    assert error(tmp_path, flags=flags).startswith(expected)


@pytest.mark.parametrize("toml,expected", BAD_FILE)
def test_bad_file_value_names_the_file_and_field(tmp_path: Path, toml: str, expected: str) -> None:
    message = error(tmp_path, toml + "\n")
    assert message.startswith(f"{tmp_path / 'mullama.toml'}: {expected}"), message


def test_bad_api_key_is_never_echoed(tmp_path: Path) -> None:
    message = error(tmp_path, 'api_keys = ["s3cret", "bad secret"]\n')
    assert "secret" not in message and "s3cret" not in message


def test_config_error_is_a_value_error_with_a_status() -> None:
    with pytest.raises(ValueError) as info:
        load_settings(env={"MULLAMA_PORT": "x"})
    assert isinstance(info.value, ConfigError) and info.value.status == 400


# ---------------------------------------------------------------- config file problems


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=rf"^config file {re.escape(str(missing))}: not found$"):
        load_settings(env={}, config_path=missing)
    with pytest.raises(ConfigError, match=r"\(from MULLAMA_CONFIG\): not found"):
        load_settings(env={"MULLAMA_CONFIG": str(missing)})


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = error(tmp_path, 'port = 8080\nn_ctx = 4096\nhost = "0.0.0.0\n')
    assert message.startswith(f"config file {tmp_path / 'mullama.toml'}: invalid TOML: ")
    assert "line 3" in message


@pytest.mark.parametrize("content", [b"\xff\xfe port = 1", None])
def test_unreadable_config_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "c.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^config file {re.escape(str(path))}: cannot read: "):
        load_settings(env={}, config_path=path)


@pytest.mark.parametrize("toml,expected", [
    ("n_ctxx = 4", "unknown setting 'n_ctxx' (did you mean 'n_ctx'?)"),
    ("hots = 'x'", "unknown setting 'hots' (did you mean 'host'?)"),
    ("zzz = 1", "unknown setting 'zzz'"),
    ("pinned = true", "unknown setting 'pinned' (a per-model setting: put it under [models.NAME])"),
    ("[models.m]\nn_ctxx = 4", "unknown setting 'models.m.n_ctxx' (did you mean 'n_ctx'?)"),
    ("[models.qwen2.5]\nn_ctx = 4", "unknown setting 'models.qwen2.5' (quote model names that contain dots: "
     '[models."qwen2.5"])'),
])
def test_unknown_setting_in_file_is_suggested(tmp_path: Path, toml: str, expected: str) -> None:
    message = error(tmp_path, toml + "\n")
    assert message == f"config file {tmp_path / 'mullama.toml'}: {expected}"



def test_the_stream_interval_is_a_duration_up_to_a_second_and_reaches_the_runners(tmp_path: Path) -> None:
    from mullama.serving.supervisor import Supervisor

    assert load(tmp_path, "stream_interval = '50ms'\n").stream_interval == 0.05
    assert load(tmp_path, env={"MULLAMA_STREAM_INTERVAL": "0"}).stream_interval == 0.0
    assert "stream_interval: expected 0 to 1s" in error(tmp_path, "stream_interval = '2s'\n")
    assert Supervisor(load(tmp_path, "stream_interval = '40ms'\n")).spec.stream_interval_ms == 40.0
