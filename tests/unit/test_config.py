"""Settings: defaults and the precedence of the four sources, MULLAMA_HOST and public binds, prefetch
settings, and the docs that describe them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from config_helpers import error, load, toml_file

from mullama.config import SETTING_NAMES, ModelSettings, is_loopback, load_settings
from mullama.core.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


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
