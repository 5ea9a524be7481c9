"""Reading the settings' sources: the TOML file, the ``MULLAMA_*`` environment and flags, each into
one normalised layer.

A layer is ``(values, where)``: raw values by field name, and for each the source to name in an
error (``MULLAMA_PORT``, ``--port``, ``/etc/mullama.toml: port``). Normalising turns what people
write into the stored form -- durations and sizes parsed, choices lower-cased, ``host`` split into
host and port -- and leaves type checking to msgspec and range checking to ``config.py``. Also
holds the per-field metadata both sides use (which fields are durations, sizes, integer ranges).

The dependency points one way: ``config.py`` imports this module and passes its Structs in as a
``Schema``; nothing here imports ``config.py``. Pure apart from reading the file.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import tomllib

from mullama.core.errors import ConfigError
from mullama.core.units import parse_duration, parse_keep_alive, parse_size

Layer = tuple[dict[str, Any], dict[str, str]]

# ---------------------------------------------------------------- field metadata

MAPPINGS = ("aliases", "default_variants", "models", "presets")
DURATIONS = frozenset({"keep_alive", "load_timeout", "drain_timeout", "prefetch_idle", "stream_write_timeout",
                       "stream_interval",
                       "header_timeout", "runner_probe_interval", "runner_probe_timeout", "runner_stall_timeout"})
SIZES = frozenset({"memory_budget", "max_body_bytes", "ram_budget", "cache_ram"})
LOWERCASE = frozenset({"cache_type_k", "cache_type_v"})
INT_RANGES: Mapping[str, tuple[int, int | None]] = types.MappingProxyType({
    "port": (0, 65535), "n_ctx": (16, None), "n_parallel": (1, 256), "n_batch": (1, None),
    "n_ubatch": (1, None), "threads": (0, None), "threads_batch": (0, None), "n_gpu_layers": (-1, None), "main_gpu": (0, 255), "yarn_orig_ctx": (0, None),
    "max_loaded_models": (0, None), "ram_budget": (1, None), "max_queue": (0, None), "max_queue_per_model": (0, None),
    "max_tokens_limit": (1, None), "max_connections": (1, None), "max_messages": (1, None), "max_stop": (0, None),
    "responses_store": (0, None), "cache_ram": (0, None),
    "max_choices": (1, 128), "adapter_turn": (1, 100_000),
})
_BOOL_WORDS: Mapping[str, bool] = types.MappingProxyType(
    {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False})

#: Flags of ``mullama serve`` not spelled ``--name-with-dashes``; only used to name a bad flag in errors.
_FLAG_NAMES: Mapping[str, str] = types.MappingProxyType({
    "n_ctx": "--ctx-size", "n_parallel": "--parallel", "models_dirs": "--models-dir", "api_keys": "--api-key",
    "bundled_model": "--no-bundled-model"})


def range_text(name: str) -> str:
    low, high = INT_RANGES.get(name, (None, None))
    if low is not None and high is not None:
        return f"an integer in {low}..{high}"
    return f"an integer >= {low}" if low is not None else "an integer"


@dataclass(frozen=True)
class Schema:
    """The Structs the sources fill: the server-wide one and the per-model ``[models.NAME]`` one."""

    settings: type[msgspec.Struct]
    model: type[msgspec.Struct]
    names: frozenset[str] = field(init=False)         # the settings' fields: flags and top-level keys
    model_names: frozenset[str] = field(init=False)
    _hints: Mapping[type, Mapping[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(self.settings.__struct_fields__))
        object.__setattr__(self, "model_names", frozenset(self.model.__struct_fields__))
        object.__setattr__(self, "_hints", types.MappingProxyType({
            cls: types.MappingProxyType(typing.get_type_hints(cls)) for cls in (self.settings, self.model)}))

    def kind(self, cls: type, name: str) -> tuple[str, tuple[Any, ...]]:
        """("int" | "float" | "bool" | "str" | "tuple" | "choice" | "mapping", Literal choices) of a field."""
        tp = self._hints[cls][name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(arg for arg in typing.get_args(tp) if arg is not type(None))
        origin = typing.get_origin(tp)
        if origin is Literal:
            return "choice", typing.get_args(tp)
        if origin is tuple:
            return "tuple", ()
        if origin is Mapping:
            return "mapping", ()
        return tp.__name__, ()


def _suggest(key: str, choices: frozenset[str]) -> str:
    match = difflib.get_close_matches(key, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


# ---------------------------------------------------------------- sources → normalised layers


def _parse_text(schema: Schema, name: str, text: str, where: str) -> Any:
    """A setting given as text (env, or a string flag) → the field's type; durations/sizes stay text."""
    kind, _ = schema.kind(schema.settings, name)
    if kind == "bool":
        word = text.strip().lower()
        if word not in _BOOL_WORDS:
            raise ConfigError(f"{where}: expected a boolean (1/0, true/false, yes/no, on/off), got {text!r}")
        return _BOOL_WORDS[word]
    if kind == "int" and name not in SIZES:
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected {range_text(name)}, got {text!r}") from None
    if kind == "float" and name not in DURATIONS:
        try:
            return float(text.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {text!r}") from None
    if kind == "tuple":  # directories are listed like PATH, everything else with commas
        parts = text.split(os.pathsep if name == "models_dirs" else ",")
        return tuple(part.strip() for part in parts if part.strip())
    return text


def _split_host(text: str, where: str) -> tuple[str, int | None]:
    """Ollama's OLLAMA_HOST forms: "host", "host:port", "http://host:port", "[::1]:8080", "::1", ":8080"."""
    rest, port = text.strip(), None
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme.lower() not in ("http", "https"):
            raise ConfigError(f"{where}: expected an http:// address, got {text!r}")
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ConfigError(f"{where}: expected '[ipv6]' or '[ipv6]:port', got {text!r}")
        port_text = tail[1:] if tail else None
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host, port_text = rest, None
    if port_text is not None:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ConfigError(f"{where}: expected a port in 0..65535 after ':', got {text!r}")
        port = int(port_text)
    if not host and port is None:
        raise ConfigError(f"{where}: expected a host name or address, got {text!r}")
    return host or "127.0.0.1", port  # ":8080": Ollama's way of changing only the port


def _normalize(schema: Schema, cls: type, name: str, value: Any, where: str) -> Any:
    """Durations, sizes and choices as people write them → the stored form; types are msgspec's job."""
    kind, choices = schema.kind(cls, name)
    try:
        if name == "keep_alive":
            return parse_keep_alive(value)
        if name in DURATIONS:
            return parse_duration(value)
        if name in SIZES:
            return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if isinstance(value, str) and (kind == "choice" or name in LOWERCASE):
        value = value.strip().lower()
        if choices and value not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    if kind == "tuple" and isinstance(value, str):  # models_dirs = "/srv/models" means one directory
        value = (value,)
    return value


def normalize_layer(schema: Schema, values: dict[str, Any], where: dict[str, str]) -> None:
    """In place: split host into host/port (an explicit port in the same layer wins), parse units."""
    if isinstance(values.get("host"), str):
        values["host"], port = _split_host(values["host"], where["host"])
        if port is not None and "port" not in values:
            values["port"], where["port"] = port, where["host"]
    for name, value in list(values.items()):
        if name == "models" and isinstance(value, Mapping):
            values[name] = {k: _normalize_model(schema, entry, f"{where[name]}.{k}")
                            for k, entry in value.items()}
        elif name in ("aliases", "default_variants") and isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(item, str):
                    raise ConfigError(f"{where[name]}.{key}: expected a string, got {item!r}")
        elif name in schema.names:
            values[name] = _normalize(schema, schema.settings, name, value, where[name])


def _normalize_model(schema: Schema, entry: Any, label: str) -> Any:
    if not isinstance(entry, Mapping):
        return entry
    return {k: _normalize(schema, schema.model, k, v, f"{label}.{k}") if k in schema.model_names else v
            for k, v in entry.items()}


def file_layer(schema: Schema, path: str | Path, via_env: bool) -> Layer:
    """The TOML file; an unknown key (top level or in ``[models.NAME]``) is an error with a suggestion."""
    file = Path(path).expanduser()
    name = f"config file {file}" + (" (from MULLAMA_CONFIG)" if via_env else "")
    try:
        data = tomllib.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{name}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read: {exc}") from None
    for key, value in data.items():
        if key not in schema.names:
            hint = (" (a per-model setting: put it under [models.NAME])" if key in schema.model_names
                    else _suggest(key, schema.names))
            raise ConfigError(f"{name}: unknown setting {key!r}{hint}")
    models = data.get("models")
    for model, entry in models.items() if isinstance(models, Mapping) else ():
        for key, value in entry.items() if isinstance(entry, Mapping) else ():
            if key not in schema.model_names:
                hint = (f' (quote model names that contain dots: [models."{model}.{key}"])'
                        if isinstance(value, Mapping) else _suggest(key, schema.model_names))
                raise ConfigError(f"{name}: unknown setting 'models.{model}.{key}'{hint}")
    return dict(data), {key: f"{file}: {key}" for key in data}


def env_layer(schema: Schema, env: Mapping[str, str]) -> Layer:
    """``MULLAMA_<NAME>`` for every setting that is not a table, plus ``MULLAMA_API_KEY``."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name in schema.names.difference(MAPPINGS):
        var = f"MULLAMA_{name.upper()}"
        text = env.get(var, "")
        if text.strip():  # an empty variable counts as unset, as in a shell `MULLAMA_X= mullama serve`
            values[name], where[name] = _parse_text(schema, name, text, var), var
    single = env.get("MULLAMA_API_KEY", "").strip()
    if single:
        values["api_keys"] = tuple(dict.fromkeys((*values.get("api_keys", ()), single)))
        where.setdefault("api_keys", "MULLAMA_API_KEY")
    return values, where


def flag_layer(schema: Schema, flags: Mapping[str, Any]) -> Layer:
    """Flags by field name; None means "not given", a string for a non-string field is parsed as env is."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name, value in flags.items():
        flag = _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        if name not in schema.names:
            raise ConfigError(f"{flag}: unknown setting {name!r}{_suggest(name, schema.names)}")
        if value is None:
            continue
        if isinstance(value, str) and schema.kind(schema.settings, name)[0] not in ("str", "choice"):
            value = _parse_text(schema, name, value, flag)
        values[name], where[name] = value, flag
    return values, where
