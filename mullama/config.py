"""The server's settings: one typed schema, read once as defaults ← TOML file ← MULLAMA_* env ← flags.

Every other module gets a frozen ``Settings`` (and, per model, a resolved ``RunnerConfig``) and never
looks at a file or the environment again, so a setting means the same thing everywhere and a bad one
fails at start with a message naming where it came from: ``MULLAMA_PORT: ...``, ``--port: ...`` or
``/etc/mullama.toml: models.smollm2.n_ctx: ...``. Reading is pure apart from the file and ``~``
expansion; the environment is a parameter so tests never touch ``os.environ``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from mullama.errors import ConfigError
from mullama.units import parse_duration, parse_size

FlashAttn = Literal["auto", "on", "off"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["console", "json"]

#: KV-cache element types llama.cpp accepts for ``--cache-type-k/-v``.
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


class ModelSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Overrides for one model or family (``[models."family:variant"]``); None inherits the server value."""

    path: str | None = None  # declare a model file outside the models dirs under this name
    n_ctx: int | None = None
    n_parallel: int | None = None
    n_batch: int | None = None
    n_ubatch: int | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    n_gpu_layers: int | None = None
    tensor_split: tuple[float, ...] | None = None
    threads: int | None = None
    threads_batch: int | None = None
    flash_attn: FlashAttn | None = None
    keep_alive: float | None = None  # seconds; -1 forever, 0 unload when idle
    require_full: bool | None = None  # refuse to load unless fully on GPU
    pinned: bool = False  # never evicted (a family entry pins every variant)
    preload: bool = False  # loaded at start


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every server-wide setting; see docs/configuration.md for the meaning of each."""

    host: str = "127.0.0.1"
    port: int = 8080
    models_dirs: tuple[str, ...] = ("~/.mullama/models",)
    bundled_model: bool = True
    default_model: str | None = None
    n_ctx: int = 8192
    n_parallel: int = 4
    n_batch: int = 2048
    n_ubatch: int = 512
    threads: int = 0
    threads_batch: int = 0
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: FlashAttn = "auto"
    n_gpu_layers: int = -1
    keep_alive: float = 300.0
    max_loaded_models: int = 0
    memory_budget: int | None = None
    load_timeout: float = 300.0
    drain_timeout: float = 30.0
    scheduler: str = "fifo"
    max_queue: int = 512
    max_queue_per_model: int = 128
    api_keys: tuple[str, ...] = ()
    allow_public: bool = False
    max_body_bytes: int = 16 << 20
    max_tokens_limit: int = 32768
    max_messages: int = 2048
    max_stop: int = 16
    event_log: str | None = None
    log_level: LogLevel = "info"
    log_format: LogFormat = "console"
    aliases: Mapping[str, str] = {}
    default_variants: Mapping[str, str] = {}
    models: Mapping[str, ModelSettings] = {}

    def __post_init__(self) -> None:
        # frozen=True stops rebinding a field; read-only views stop editing a dict in place
        for name in _MAPPINGS:
            value = getattr(self, name)
            if not isinstance(value, types.MappingProxyType):
                msgspec.structs.force_setattr(self, name, types.MappingProxyType(dict(value)))

    def redacted(self) -> dict[str, Any]:
        """JSON-able settings for logs and ``/internal/config``: api_keys replaced by their count."""
        data: dict[str, Any] = {name: getattr(self, name) for name in self.__struct_fields__}
        data["api_keys"] = len(self.api_keys)
        data["aliases"], data["default_variants"] = dict(self.aliases), dict(self.default_variants)
        data["models"] = {
            key: {f: v for f, v in msgspec.structs.asdict(entry).items() if v is not None and v is not False}
            for key, entry in self.models.items()
        }
        return typing.cast(dict[str, Any], msgspec.json.decode(msgspec.json.encode(data)))


@dataclass(frozen=True)
class RunnerConfig:
    """One model's effective settings, every field resolved (no None)."""

    n_ctx: int
    n_parallel: int
    n_batch: int
    n_ubatch: int
    cache_type_k: str
    cache_type_v: str
    n_gpu_layers: int
    tensor_split: tuple[float, ...]
    threads: int
    threads_batch: int
    flash_attn: str
    keep_alive: float
    require_full: bool
    pinned: bool
    preload: bool


# ---------------------------------------------------------------- field metadata

_MAPPINGS = ("aliases", "default_variants", "models")
_DURATIONS = frozenset({"keep_alive", "load_timeout", "drain_timeout"})
_SIZES = frozenset({"memory_budget", "max_body_bytes"})
_LOWERCASE = frozenset({"cache_type_k", "cache_type_v"})
_INT_RANGES: Mapping[str, tuple[int, int | None]] = types.MappingProxyType({
    "port": (0, 65535), "n_ctx": (16, None), "n_parallel": (1, 256), "n_batch": (1, None),
    "n_ubatch": (1, None), "threads": (0, None), "threads_batch": (0, None), "n_gpu_layers": (-1, None),
    "max_loaded_models": (0, None), "max_queue": (0, None), "max_queue_per_model": (0, None),
    "max_tokens_limit": (1, None), "max_messages": (1, None), "max_stop": (0, None),
})
_BOOL_WORDS: Mapping[str, bool] = types.MappingProxyType(
    {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False})
_HINTS: Mapping[type, Mapping[str, Any]] = types.MappingProxyType({
    cls: types.MappingProxyType(typing.get_type_hints(cls)) for cls in (Settings, ModelSettings)})

#: The names ``load_settings`` accepts as flags (and as top-level TOML keys).
SETTING_NAMES: frozenset[str] = frozenset(Settings.__struct_fields__)
_MODEL_FIELDS: frozenset[str] = frozenset(ModelSettings.__struct_fields__)
_RUNNER_FIELDS = tuple(RunnerConfig.__dataclass_fields__)

#: Flags of ``mullama serve`` not spelled ``--name-with-dashes``; only used to name a bad flag in errors.
_FLAG_NAMES: Mapping[str, str] = types.MappingProxyType({
    "n_ctx": "--ctx-size", "n_parallel": "--parallel", "models_dirs": "--models-dir", "api_keys": "--api-key",
    "bundled_model": "--no-bundled-model"})

Where = Callable[[str], str]


def _kind(cls: type, name: str) -> tuple[str, tuple[Any, ...]]:
    """("int" | "float" | "bool" | "str" | "tuple" | "choice" | "mapping", Literal choices) of a field."""
    tp = _HINTS[cls][name]
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


def _range_text(name: str) -> str:
    low, high = _INT_RANGES.get(name, (None, None))
    if low is not None and high is not None:
        return f"an integer in {low}..{high}"
    return f"an integer >= {low}" if low is not None else "an integer"


def _suggest(key: str, choices: frozenset[str]) -> str:
    match = difflib.get_close_matches(key, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


# ---------------------------------------------------------------- sources → normalised layers


def _parse_text(name: str, text: str, where: str) -> Any:
    """A setting given as text (env, or a string flag) → the field's type; durations/sizes stay text."""
    kind, _ = _kind(Settings, name)
    if kind == "bool":
        word = text.strip().lower()
        if word not in _BOOL_WORDS:
            raise ConfigError(f"{where}: expected a boolean (1/0, true/false, yes/no, on/off), got {text!r}")
        return _BOOL_WORDS[word]
    if kind == "int" and name not in _SIZES:
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected {_range_text(name)}, got {text!r}") from None
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


def _normalize(cls: type, name: str, value: Any, where: str) -> Any:
    """Durations, sizes and choices as people write them → the stored form; types are msgspec's job."""
    kind, choices = _kind(cls, name)
    try:
        if name in _DURATIONS:
            return parse_duration(value)
        if name in _SIZES:
            return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if isinstance(value, str) and (kind == "choice" or name in _LOWERCASE):
        value = value.strip().lower()
        if choices and value not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    if kind == "tuple" and isinstance(value, str):  # models_dirs = "/srv/models" means one directory
        value = (value,)
    return value


def _normalize_layer(values: dict[str, Any], where: dict[str, str]) -> None:
    """In place: split host into host/port (an explicit port in the same layer wins), parse units."""
    if isinstance(values.get("host"), str):
        values["host"], port = _split_host(values["host"], where["host"])
        if port is not None and "port" not in values:
            values["port"], where["port"] = port, where["host"]
    for name, value in list(values.items()):
        if name == "models" and isinstance(value, Mapping):
            values[name] = {k: _normalize_model(entry, f"{where[name]}.{k}") for k, entry in value.items()}
        elif name in ("aliases", "default_variants") and isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(item, str):
                    raise ConfigError(f"{where[name]}.{key}: expected a string, got {item!r}")
        elif name in SETTING_NAMES:
            values[name] = _normalize(Settings, name, value, where[name])


def _normalize_model(entry: Any, label: str) -> Any:
    if not isinstance(entry, Mapping):
        return entry
    return {k: _normalize(ModelSettings, k, v, f"{label}.{k}") if k in _MODEL_FIELDS else v
            for k, v in entry.items()}


def _file_layer(path: str | Path, via_env: bool) -> tuple[dict[str, Any], dict[str, str]]:
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
        if key not in SETTING_NAMES:
            hint = (" (a per-model setting: put it under [models.NAME])" if key in _MODEL_FIELDS
                    else _suggest(key, SETTING_NAMES))
            raise ConfigError(f"{name}: unknown setting {key!r}{hint}")
    models = data.get("models")
    for model, entry in models.items() if isinstance(models, Mapping) else ():
        for key, value in entry.items() if isinstance(entry, Mapping) else ():
            if key not in _MODEL_FIELDS:
                hint = (f' (quote model names that contain dots: [models."{model}.{key}"])'
                        if isinstance(value, Mapping) else _suggest(key, _MODEL_FIELDS))
                raise ConfigError(f"{name}: unknown setting 'models.{model}.{key}'{hint}")
    return dict(data), {key: f"{file}: {key}" for key in data}


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name in SETTING_NAMES.difference(_MAPPINGS):
        var = f"MULLAMA_{name.upper()}"
        text = env.get(var, "")
        if text.strip():  # an empty variable counts as unset, as in a shell `MULLAMA_X= mullama serve`
            values[name], where[name] = _parse_text(name, text, var), var
    single = env.get("MULLAMA_API_KEY", "").strip()
    if single:
        values["api_keys"] = tuple(dict.fromkeys((*values.get("api_keys", ()), single)))
        where.setdefault("api_keys", "MULLAMA_API_KEY")
    return values, where


def _flag_layer(flags: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name, value in flags.items():
        flag = _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        if name not in SETTING_NAMES:
            raise ConfigError(f"{flag}: unknown setting {name!r}{_suggest(name, SETTING_NAMES)}")
        if value is None:
            continue
        if isinstance(value, str) and _kind(Settings, name)[0] not in ("str", "choice"):
            value = _parse_text(name, value, flag)
        values[name], where[name] = value, flag
    return values, where


# ---------------------------------------------------------------- validation


def _convert(raw: Any, cls: type[msgspec.Struct], where: Where) -> Any:
    """msgspec.convert with its error rewritten to name the source and the field."""
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        path = path.rstrip("`").lstrip(".").replace("[...]", "")
        field = re.match(r"\w*", path).group()  # type: ignore[union-attr]
        message = message.replace(" | null`", "`")  # `int | null`: TOML has no null, so say `int`
        raise ConfigError(f"{where(field)}{path[len(field):]}: {message}") from None


def _check_name(name: str, where: str) -> None:
    """Model names and aliases become file lookups and URL parts: no path pieces, no blanks."""
    bad = next((part for part in ("/", "\\", "..") if part in name), None)
    if not name:
        problem = "is empty"
    elif bad:
        problem = f"must not contain {bad!r}"
    elif any(ch.isspace() or not ch.isprintable() for ch in name):
        problem = "must not contain whitespace or control characters"
    elif name.count(":") > 1 or name.startswith(":") or name.endswith(":"):
        problem = "must be 'family' or 'family:variant'"
    else:
        return
    raise ConfigError(f"{where}: invalid model name {name!r}: {problem}")


def _check_entry(entry: msgspec.Struct, label: Where) -> None:
    """Integer ranges and cache types, shared by Settings and ModelSettings."""
    for name in entry.__struct_fields__:
        value = getattr(entry, name)
        low, high = _INT_RANGES.get(name, (None, None))
        if value is not None and low is not None and (value < low or (high is not None and value > high)):
            raise ConfigError(f"{label(name)}: expected {_range_text(name)}, got {value!r}")
        if value is not None and name in _LOWERCASE and value not in CACHE_TYPES:
            raise ConfigError(f"{label(name)}: expected one of {', '.join(CACHE_TYPES)}, got {value!r}")


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x.y.z)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _check(s: Settings, where: Where) -> None:
    """Everything the types alone do not say; messages name the source of the offending value."""
    _check_entry(s, where)
    if s.n_ubatch > s.n_batch:
        raise ConfigError(f"{where('n_ubatch')}: n_ubatch ({s.n_ubatch}) must not exceed n_batch "
                          f"({s.n_batch}, from {where('n_batch')})")
    for name, value in (("load_timeout", s.load_timeout), ("drain_timeout", s.drain_timeout)):
        if value <= 0:
            raise ConfigError(f"{where(name)}: expected a positive duration, got {value!r}")
    for name, size in (("memory_budget", s.memory_budget), ("max_body_bytes", s.max_body_bytes)):
        if size is not None and size < 1:
            raise ConfigError(f"{where(name)}: expected a positive size such as '8GiB', got {size!r}")
    if not s.host or any(ch.isspace() for ch in s.host):
        raise ConfigError(f"{where('host')}: expected a host name or address, got {s.host!r}")
    if not s.scheduler.strip():
        raise ConfigError(f"{where('scheduler')}: expected a policy name or 'module:Class', "
                          f"got {s.scheduler!r}")
    for i, key in enumerate(s.api_keys):
        if not key or any(ch.isspace() for ch in key):  # never echo a key: it may be a real secret
            raise ConfigError(f"{where('api_keys')}: key #{i + 1} is empty or contains whitespace")
    if any(not d for d in s.models_dirs):
        raise ConfigError(f"{where('models_dirs')}: a directory is an empty string")
    if s.default_model is not None:
        _check_name(s.default_model, where("default_model"))
    _check_names(s, where)
    _check_models(s, where)
    if not is_loopback(s.host) and not s.api_keys and not s.allow_public:
        raise ConfigError(
            f"{where('host')}: host {s.host!r} is not a loopback address and no api_keys are set, so anyone "
            "who can reach it could use the server; set api_keys (MULLAMA_API_KEYS) or pass --allow-public "
            "(MULLAMA_ALLOW_PUBLIC=1) to serve without keys")


def _check_names(s: Settings, where: Where) -> None:
    for alias, target in s.aliases.items():
        label = f"{where('aliases')}.{alias}"
        _check_name(alias, label)
        _check_name(target, label)
        if target == alias or target in s.aliases:
            raise ConfigError(f"{label}: alias target {target!r} must be a model or family, not an alias")
    for family, variant in s.default_variants.items():
        label = f"{where('default_variants')}.{family}"
        _check_name(f"{family}:{variant}", label)


def _check_models(s: Settings, where: Where) -> None:
    for key, entry in s.models.items():
        base = f"{where('models')}.{key}"
        _check_name(key, base)
        _check_entry(entry, lambda name: f"{base}.{name}")
        if entry.path is not None and not entry.path.strip():
            raise ConfigError(f"{base}.path: expected a file path, got an empty string")
        split = entry.tensor_split
        if split is not None and (any(x < 0 for x in split) or sum(split) <= 0):
            raise ConfigError(f"{base}.tensor_split: expected non-negative shares with a positive sum, "
                              f"got {list(split)}")
        target = s.aliases.get(key)
        if target is not None and target in s.models:
            raise ConfigError(f"{base}: {key!r} is an alias of {target!r}, which has its own [models] "
                              "entry; keep one of the two")
        name = target or key
        resolved = model_settings(s, name, name.split(":", 1)[0])
        if resolved.n_ubatch > resolved.n_batch:
            raise ConfigError(f"{base}: n_ubatch ({resolved.n_ubatch}) must not exceed n_batch "
                              f"({resolved.n_batch}) once server-wide values are applied")


def _expand_paths(s: Settings) -> Settings:
    models = {key: msgspec.structs.replace(entry, path=os.path.expanduser(entry.path)) if entry.path
              else entry for key, entry in s.models.items()}
    return msgspec.structs.replace(
        s, models_dirs=tuple(os.path.expanduser(d) for d in s.models_dirs),
        event_log=os.path.expanduser(s.event_log) if s.event_log else s.event_log, models=models)


# ---------------------------------------------------------------- public entry points


def load_settings(flags: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None,
                  config_path: str | Path | None = None) -> Settings:
    """Defaults ← TOML file (``config_path``, else ``$MULLAMA_CONFIG``) ← ``MULLAMA_*`` env ← ``flags``.

    ``flags`` maps field names to values, None meaning "not given" (argparse defaults must be None).
    Unknown ``MULLAMA_*`` variables are ignored: the runner and the tests use their own.
    Raises ConfigError naming the source and the field of the first bad value.
    """
    env = os.environ if env is None else env
    path = config_path if config_path is not None else (env.get("MULLAMA_CONFIG") or None)
    layers = [_file_layer(path, via_env=config_path is None)] if path else []
    layers += [_env_layer(env), _flag_layer(flags or {})]
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for values, where in layers:
        _normalize_layer(values, where)
        raw.update(values)
        origins.update(where)

    def where_of(name: str) -> str:
        return origins.get(name, f"{name} (default)")

    for key, entry in (raw["models"].items() if isinstance(raw.get("models"), Mapping) else ()):
        base = f"{where_of('models')}.{key}"
        _convert(entry, ModelSettings, lambda name, base=base: f"{base}.{name}" if name else base)
    settings = _expand_paths(_convert(raw, Settings, where_of))
    _check(settings, where_of)
    return settings


def _overrides(settings: Settings, key: str) -> list[ModelSettings]:
    """The [models] entries for ``key``: under its own name and under any alias of it."""
    found = [settings.models[key]] if key in settings.models else []
    found += [settings.models[alias] for alias, target in settings.aliases.items()
              if target == key and alias in settings.models]
    return found


def model_settings(settings: Settings, name: str, family: str) -> RunnerConfig:
    """``name``'s effective settings: "family:variant" overrides beat "family" overrides beat server-wide.

    ``name`` may be an alias. ``pinned``/``preload`` are true if any matching entry sets them.
    """
    name = settings.aliases.get(name, name)
    values: dict[str, Any] = {f: getattr(settings, f, None) for f in _RUNNER_FIELDS}
    values.update(tensor_split=(), require_full=False, pinned=False, preload=False)
    entries = _overrides(settings, family) + (_overrides(settings, name) if name != family else [])
    for entry in entries:
        for field in _RUNNER_FIELDS:
            value = getattr(entry, field)
            if field in ("pinned", "preload"):
                values[field] = values[field] or value
            elif value is not None:
                values[field] = value
    return RunnerConfig(**values)
