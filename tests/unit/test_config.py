"""Settings: precedence of the four sources, every validation message, per-model resolution, immutability."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mullama.config import (
    SETTING_NAMES,
    ModelSettings,
    RunnerConfig,
    Settings,
    is_loopback,
    load_settings,
    model_settings,
)
from mullama.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def toml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mullama.toml"
    path.write_text(text, "utf-8")
    return path


def load(tmp_path: Path, toml: str | None = None, env: dict[str, str] | None = None,
         flags: dict[str, Any] | None = None) -> Settings:
    path = toml_file(tmp_path, toml) if toml is not None else None
    return load_settings(flags, env=env or {}, config_path=path)


def error(tmp_path: Path, toml: str | None = None, env: dict[str, str] | None = None,
          flags: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml, env, flags)
    return str(info.value)


# ---------------------------------------------------------------- defaults and precedence


def test_defaults_match_the_schema(tmp_path: Path) -> None:
    s = load_settings(env={})
    assert s.host == "127.0.0.1" and s.port == 8080 and s.n_ctx == 8192 and s.keep_alive == 300.0
    assert s.models_dirs == (os.path.expanduser("~/.mullama/models"),)
    assert s.api_keys == () and s.models == {} and s.memory_budget is None and s.bundled_model


# field, TOML literal, (env var, env text), flag value, expected from file, env, flag
PRECEDENCE = [
    ("port", "9001", ("MULLAMA_PORT", "9002"), 9003, 9001, 9002, 9003),
    ("n_ctx", "4096", ("MULLAMA_N_CTX", "2048"), 1024, 4096, 2048, 1024),
    ("n_parallel", "2", ("MULLAMA_N_PARALLEL", "8"), 1, 2, 8, 1),
    ("keep_alive", '"10m"', ("MULLAMA_KEEP_ALIVE", "1h30m"), 5, 600.0, 5400.0, 5.0),
    ("keep_alive", "-1", ("MULLAMA_KEEP_ALIVE", "0"), "250ms", -1.0, 0.0, 0.25),
    ("load_timeout", '"2m"', ("MULLAMA_LOAD_TIMEOUT", "45"), "1h", 120.0, 45.0, 3600.0),
    ("memory_budget", '"8GiB"', ("MULLAMA_MEMORY_BUDGET", "512MB"), 1024, 8 << 30, 512_000_000, 1024),
    ("max_body_bytes", "123", ("MULLAMA_MAX_BODY_BYTES", "1MiB"), "1.5k", 123, 1 << 20, 1500),
    ("models_dirs", '["/f"]', ("MULLAMA_MODELS_DIRS", os.pathsep.join(["/e1", "/e2"])), ["/x"],
     ("/f",), ("/e1", "/e2"), ("/x",)),
    ("api_keys", '["a"]', ("MULLAMA_API_KEYS", "b, c"), ["d"], ("a",), ("b", "c"), ("d",)),
    ("allow_public", "true", ("MULLAMA_ALLOW_PUBLIC", "no"), True, True, False, True),
    ("bundled_model", "false", ("MULLAMA_BUNDLED_MODEL", "ON"), False, False, True, False),
    ("cache_type_k", '"Q8_0"', ("MULLAMA_CACHE_TYPE_K", "q4_0"), "BF16", "q8_0", "q4_0", "bf16"),
    ("flash_attn", '"on"', ("MULLAMA_FLASH_ATTN", "OFF"), "auto", "on", "off", "auto"),
    ("log_level", '"debug"', ("MULLAMA_LOG_LEVEL", "error"), "warning", "debug", "error", "warning"),
    ("scheduler", '"priority"', ("MULLAMA_SCHEDULER", "mypkg.sched:Fair"), "round_robin",
     "priority", "mypkg.sched:Fair", "round_robin"),
    ("default_model", '"smollm2"', ("MULLAMA_DEFAULT_MODEL", "qwen:7b"), "llama3",
     "smollm2", "qwen:7b", "llama3"),
    ("event_log", '"/tmp/f.jsonl"', ("MULLAMA_EVENT_LOG", "/tmp/e.jsonl"), "/tmp/x.jsonl",
     "/tmp/f.jsonl", "/tmp/e.jsonl", "/tmp/x.jsonl"),
]


@pytest.mark.parametrize("field,toml,env,flag,from_file,from_env,from_flag", PRECEDENCE)
def test_each_source_beats_the_one_before(tmp_path: Path, field: str, toml: str, env: tuple[str, str],
                                          flag: Any, from_file: Any, from_env: Any, from_flag: Any) -> None:
    default = getattr(load_settings(env={}), field)
    file_text = f"{field} = {toml}\n"
    assert getattr(load(tmp_path), field) == default
    assert getattr(load(tmp_path, file_text), field) == from_file
    assert getattr(load(tmp_path, file_text, dict([env])), field) == from_env
    assert getattr(load(tmp_path, file_text, dict([env]), {field: flag}), field) == from_flag
    not_given = {field: None}
    assert getattr(load(tmp_path, file_text, dict([env]), not_given), field) == from_env
    assert getattr(load(tmp_path, None, None, {field: flag}), field) == from_flag


def test_config_path_comes_from_mullama_config_unless_given(tmp_path: Path) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text("port = 1111\n")
    assert load_settings(env={"MULLAMA_CONFIG": str(env_file)}).port == 1111
    assert load_settings(env={"MULLAMA_CONFIG": str(env_file)},
                         config_path=toml_file(tmp_path, "port = 2222\n")).port == 2222
    assert load_settings(env={"MULLAMA_CONFIG": ""}).port == 8080


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULLAMA_PORT", "7070")
    monkeypatch.delenv("MULLAMA_CONFIG", raising=False)
    assert load_settings().port == 7070
    assert load_settings(env={}).port == 8080


def test_string_flags_are_parsed_like_env() -> None:
    s = load_settings({"port": "8081", "allow_public": "yes", "api_keys": "a,b", "keep_alive": "1m"}, env={})
    assert (s.port, s.allow_public, s.api_keys, s.keep_alive) == (8081, True, ("a", "b"), 60.0)


def test_flags_mapping_is_not_modified() -> None:
    flags = {"host": "127.0.0.1:9000", "port": None}
    load_settings(flags, env={})
    assert flags == {"host": "127.0.0.1:9000", "port": None}


def test_api_key_and_api_keys_are_combined() -> None:
    s = load_settings(env={"MULLAMA_API_KEYS": "a,b", "MULLAMA_API_KEY": "c"})
    assert s.api_keys == ("a", "b", "c")
    assert load_settings(env={"MULLAMA_API_KEYS": "a,b", "MULLAMA_API_KEY": "a"}).api_keys == ("a", "b")
    assert load_settings(env={"MULLAMA_API_KEY": " k "}).api_keys == ("k",)


def test_unknown_and_empty_env_vars_are_ignored() -> None:
    env = {"MULLAMA_RUNNER_TOKEN": "t", "MULLAMA_FAKE_GPUS": "2x24GiB", "MULLAMA_TEST_X": "1",
           "MULLAMA_PROT": "1", "MULLAMA_PORT": "", "MULLAMA_N_CTX": "  ", "MULLAMA_MODELS": "/srv"}
    assert load_settings(env=env) == load_settings(env={})


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load(tmp_path, 'event_log = "~/ev.jsonl"\n[models.m]\npath = "~/m.gguf"\n')
    assert s.models_dirs == (f"{tmp_path}/.mullama/models",)
    assert s.event_log == f"{tmp_path}/ev.jsonl" and s.models["m"].path == f"{tmp_path}/m.gguf"


def test_single_string_is_a_one_item_tuple_in_a_file(tmp_path: Path) -> None:
    assert load(tmp_path, 'models_dirs = "/srv/models"\n').models_dirs == ("/srv/models",)


# ---------------------------------------------------------------- MULLAMA_HOST


KEY = {"MULLAMA_API_KEY": "k"}


@pytest.mark.parametrize("text,host,port", [
    ("0.0.0.0", "0.0.0.0", 8080),
    ("0.0.0.0:9000", "0.0.0.0", 9000),
    ("http://example.com:11434", "example.com", 11434),
    ("http://127.0.0.1:11434/", "127.0.0.1", 11434),
    ("https://example.com", "example.com", 8080),
    ("[::1]:8081", "::1", 8081),
    ("[::1]", "::1", 8080),
    ("::1", "::1", 8080),
    (":9000", "127.0.0.1", 9000),
    ("localhost", "localhost", 8080),
])
def test_mullama_host_forms(text: str, host: str, port: int) -> None:
    s = load_settings(env={"MULLAMA_HOST": text, **KEY})
    assert (s.host, s.port) == (host, port)


@pytest.mark.parametrize("text", ["ftp://x:1", "[::1", "[::1]x", "host:abc", "host:70000", "host:-1"])
def test_bad_mullama_host(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^MULLAMA_HOST: .*" + re.escape(repr(text))):
        load_settings(env={"MULLAMA_HOST": text})


def test_explicit_port_beats_port_in_host(tmp_path: Path) -> None:
    assert load_settings(env={"MULLAMA_HOST": "127.0.0.1:9000", "MULLAMA_PORT": "9001"}).port == 9001
    assert load_settings({"port": 9002}, env={"MULLAMA_HOST": "127.0.0.1:9000"}).port == 9002
    assert load_settings({"host": "127.0.0.1:9003"}, env={"MULLAMA_PORT": "9001"}).port == 9003
    assert load(tmp_path, 'host = "127.0.0.1:9000"\nport = 9004\n').port == 9004
    assert load(tmp_path, "port = 9004\n", {"MULLAMA_HOST": "127.0.0.1:9005"}).port == 9005


@pytest.mark.parametrize("host,loopback", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
    ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_bind_needs_keys_or_allow_public(tmp_path: Path) -> None:
    message = error(tmp_path, 'host = "0.0.0.0"\n')
    assert message.startswith(f"{tmp_path / 'mullama.toml'}: host: host '0.0.0.0' is not a loopback address")
    assert "--allow-public" in message and "api_keys" in message
    assert error(tmp_path, flags={"host": "example.com"}).startswith("--host: ")
    assert load(tmp_path, 'host = "0.0.0.0"\nallow_public = true\n').host == "0.0.0.0"
    assert load(tmp_path, 'host = "0.0.0.0"\napi_keys = ["k"]\n').api_keys == ("k",)
    assert load(tmp_path, env={"MULLAMA_HOST": "0.0.0.0", "MULLAMA_ALLOW_PUBLIC": "1"}).host == "0.0.0.0"


# ---------------------------------------------------------------- validation messages


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


# ---------------------------------------------------------------- docs stay honest


def test_docs_describe_every_setting() -> None:
    text = DOCS.read_text("utf-8")
    for name in sorted(SETTING_NAMES | set(ModelSettings.__struct_fields__)):
        assert f"`{name}`" in text, name


def test_docs_example_file_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text("utf-8"), re.S)
    assert blocks
    for block in blocks:
        load(tmp_path, block)


# ---------------------------------------------------------------- prefetch settings


@pytest.mark.parametrize("field, value", [
    ("prefetch_min_confidence", "0"), ("prefetch_min_confidence", "1.01"), ("prefetch_min_confidence", "nan"),
    ("prefetch_min_confidence", "abc"), ("prefetch_idle", "-1"), ("prefetch_idle", "soon"),
])
def test_bad_prefetch_settings_are_refused_naming_the_variable(field, value):
    with pytest.raises(ConfigError, match=f"MULLAMA_{field.upper()}"):
        load_settings({}, env={f"MULLAMA_{field.upper()}": value})


@pytest.mark.parametrize("field, value, expected", [
    ("prefetch_min_confidence", "1", 1.0), ("prefetch_min_confidence", "0.75", 0.75), ("prefetch_idle", "0", 0.0),
    ("prefetch_idle", "250ms", 0.25), ("prefetch", "none", "none"),
])
def test_good_prefetch_settings(field, value, expected):
    assert getattr(load_settings({}, env={f"MULLAMA_{field.upper()}": value}), field) == expected


def test_a_blank_prefetch_flag_is_refused():
    with pytest.raises(ConfigError, match="prefetch"):
        load_settings({"prefetch": " "}, env={})


def test_an_absurd_keep_alive_is_forever() -> None:
    """An expiry ten years out or more cannot be written as a date (/api/ps): such values mean forever."""
    from mullama.config import load_settings

    assert load_settings({"keep_alive": "1e308"}, config_path=None, env={}).keep_alive == -1.0
