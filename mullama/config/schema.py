"""The server's settings: one typed schema, read once as defaults ← TOML file ← MULLAMA_* env ← flags.

Every other module gets a frozen ``Settings`` (and, per model, a resolved ``RunnerConfig``) and never
looks at a file or the environment again, so a setting means the same thing everywhere and a bad one
fails at start with a message naming where it came from: ``MULLAMA_PORT: ...``, ``--port: ...`` or
``/etc/mullama.toml: models.smollm2.n_ctx: ...``. Reading is pure apart from the file and ``~``
expansion; the environment is a parameter so tests never touch ``os.environ``.

This module holds the schema, the checks the types alone do not make and the entry points; reading
each source into a normalised layer is ``sources.py``.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from mullama.config.adapters import check_adapters, expand_adapters
from mullama.config.network import check_workers, is_loopback
from mullama.config.presets import PresetSettings, check_presets
from mullama.config.resolve import model_settings
from mullama.config.sampling import SamplingDefaults, check_sampling
from mullama.config.speculative import SpeculativeSettings, check_speculative
from mullama.config.sources import (
    INT_RANGES,
    LOWERCASE,
    MAPPINGS,
    Schema,
    env_layer,
    file_layer,
    flag_layer,
    normalize_layer,
    range_text,
)
from mullama.config.tensors import check_model_overrides, check_resolved_overrides
from mullama.core.errors import ConfigError

FlashAttn = Literal["auto", "on", "off"]
SplitMode = Literal["none", "layer", "row"]
RopeScaling = Literal["model", "none", "linear", "yarn", "longrope"]
Pooling = Literal["mean", "cls", "last"]
Numa = Literal["off", "distribute", "isolate", "numactl"]
CpuAllotmentMode = Literal["spread", "off"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["console", "json"]
ReasoningFormat = Literal["none", "auto", "deepseek", "deepseek-legacy"]

#: KV-cache element types llama.cpp accepts for ``--cache-type-k/-v``.
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


class AdapterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One LoRA adapter of a model (``[[models.NAME.adapters]]``): llama-server's ``--lora-scaled PATH SCALE``."""

    path: str
    scale: float = 1.0      # what a request that does not name its adapters gets (0: loaded, off by default)
    name: str | None = None  # how requests and presets name it; default: the file name without .gguf


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
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    main_gpu: int | None = None
    split_mode: SplitMode | None = None
    kv_offload: bool | None = None
    swa_full: bool | None = None
    kv_unified: bool | None = None
    adapter_turn: int | None = None
    cache_ram: int | None = None
    rope_scaling: RopeScaling | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    yarn_orig_ctx: int | None = None
    pooling: Pooling | None = None
    keep_alive: float | None = None  # seconds; -1 forever, 0 unload when idle
    require_full: bool | None = None  # refuse to load unless fully on GPU
    ram_budget: int | None = None  # most host memory the model may take; the rest goes to GPUs or RPC workers
    rpc_workers: tuple[str, ...] | None = None  # "host:port" of RPC workers this model may spread over
    speculative: SpeculativeSettings | None = None  # n-gram speculative decoding (config/speculative.py)
    pinned: bool = False  # never evicted (a family entry pins every variant)
    preload: bool = False  # loaded at start
    sampling: SamplingDefaults | None = None  # request defaults (a variant's fields beat its family's)
    chat_template: str | None = None  # a Jinja file, or a llama.cpp built-in template's name (llama3, ...)
    override_kv: tuple[str, ...] | None = None  # GGUF metadata overrides: "KEY=TYPE:VALUE" (--override-kv)
    check_tensors: bool | None = None
    tensor_overrides: tuple[str, ...] | None = None  # "REGEX=DEVICE" (-ot): where matching weights live
    n_cpu_moe: int | None = None        # the MoE experts of the first N layers stay in RAM (--n-cpu-moe)
    cpu_moe: bool | None = None         # every MoE expert stays in RAM (--cpu-moe)
    numa: Numa | None = None
    context_shift: bool | None = None
    adapters: tuple[AdapterSettings, ...] | None = None  # LoRA adapters loaded with the model (--lora)


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
    cpu_allotment: CpuAllotmentMode = "spread"  # each runner its own cores and threads to match (hardware/cores.py)
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: FlashAttn = "auto"
    n_gpu_layers: int = -1
    use_mmap: bool = True                # map the GGUF file (llama-server's --no-mmap turns it off)
    use_mlock: bool = False              # lock the weights in RAM (--mlock)
    main_gpu: int = 0                    # the GPU for a model on one device, and row split's scratch (-mg)
    split_mode: SplitMode = "layer"      # how a model is split across GPUs (-sm)
    kv_offload: bool = True              # the KV cache goes to the GPU with its layers (--no-kv-offload: false)
    swa_full: bool = False               # full-size cache for sliding-window attention (--swa-full)
    kv_unified: bool = True              # the slots share one KV cache (-kvu); false: n_ctx / n_parallel each
    adapter_turn: int = 16               # decode steps a LoRA set runs while requests with other sets wait
    cache_ram: int = 8 << 30             # host memory for prefix caches out of the KV cache (0: none)
    rope_scaling: RopeScaling = "model"  # RoPE scaling; "model": what the GGUF says (--rope-scaling)
    rope_freq_base: float = 0.0          # 0: the model's (--rope-freq-base)
    rope_freq_scale: float = 0.0         # 0: the model's (--rope-freq-scale)
    yarn_orig_ctx: int = 0               # YaRN's original context; 0: the model's training context
    check_tensors: bool = False          # validate the weights' data while loading (--check-tensors)
    pooling: Pooling = "mean"            # how /embeddings pools a text's token vectors (--pooling)
    numa: Numa = "off"                   # NUMA placement of a runner's threads and memory (--numa)
    context_shift: bool = False          # a stream that fills its context drops its oldest half (--context-shift)
    keep_alive: float = 300.0
    max_loaded_models: int = 0
    memory_budget: int | None = None
    ram_budget: int | None = None         # most host memory one model may take (the rest: GPUs, RPC workers)
    rpc_workers: tuple[str, ...] = ()     # "host:port" of RPC workers models may spread over (docs/scale-out.md)
    speculative: SpeculativeSettings | None = None  # every model's speculative decoding (None: off)
    load_timeout: float = 300.0
    drain_timeout: float = 30.0
    stream_write_timeout: float = 30.0  # a streamed answer the client stops reading is cut after this
    stream_interval: float = 0.02       # a runner wakes Python for streamed tokens at most this often (0: each)
    header_timeout: float = 10.0        # a new connection must send its whole request head within this
    max_connections: int = 1000         # open client connections; the next get 503 (lowered to the fd limit)
    runner_probe_interval: float = 5.0  # a serving runner's /health is asked this often ...
    runner_probe_timeout: float = 10.0  # ... and two answers missing this long mark it frozen: killed, restarted
    runner_stall_timeout: float = 300.0  # a decode loop in one pass this long (its HTTP side answering) is stuck
    prefetch: str = "markov"
    prefetch_min_confidence: float = 0.6
    prefetch_idle: float = 0.5
    scheduler: str = "fifo"
    max_queue: int = 512
    max_queue_per_model: int = 128
    api_keys: tuple[str, ...] = ()
    allow_public: bool = False
    origins: tuple[str, ...] = ()        # browser Origins allowed besides the server's own ("*": any)
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides loopback ones (DNS-rebinding guard)
    max_body_bytes: int = 16 << 20
    max_tokens_limit: int = 32768
    max_messages: int = 2048
    max_stop: int = 16
    responses_store: int = 1000          # recent /v1/responses kept for previous_response_id (0: none)
    max_choices: int = 8                 # largest `n` (choices of one request, sampled from one prefill)
    reasoning_format: ReasoningFormat = "auto"  # how a reasoning model's thinking is returned (llama-server's)
    event_log: str | None = None
    hooks: tuple[str, ...] = ()          # "module:function" each called at start with the Hooks registry
    log_level: LogLevel = "info"
    log_format: LogFormat = "console"
    aliases: Mapping[str, str] = {}
    default_variants: Mapping[str, str] = {}
    models: Mapping[str, ModelSettings] = {}
    presets: Mapping[str, PresetSettings] = {}  # named base + system/template/defaults (presets.py)

    def __post_init__(self) -> None:
        # frozen=True stops rebinding a field; read-only views stop editing a dict in place
        for name in MAPPINGS:
            value = getattr(self, name)
            if not isinstance(value, types.MappingProxyType):
                msgspec.structs.force_setattr(self, name, types.MappingProxyType(dict(value)))

    def redacted(self) -> dict[str, Any]:
        """JSON-able settings for logs and ``/internal/config``: api_keys replaced by their count."""
        data: dict[str, Any] = {name: getattr(self, name) for name in self.__struct_fields__}
        data["api_keys"] = len(self.api_keys)
        data["aliases"], data["default_variants"] = dict(self.aliases), dict(self.default_variants)
        data["presets"] = dict(self.presets)
        data["models"] = {
            key: {f: v for f, v in msgspec.structs.asdict(entry).items()  # a False given (cpu_moe = false) shows
                  if v is not None and not (v is False and f in ("pinned", "preload"))}
            for key, entry in self.models.items()
        }
        return typing.cast(dict[str, Any], msgspec.json.decode(msgspec.json.encode(data)))


# ---------------------------------------------------------------- field metadata

#: The names ``load_settings`` accepts as flags (and as top-level TOML keys).
SETTING_NAMES: frozenset[str] = frozenset(Settings.__struct_fields__)
_SCHEMA = Schema(Settings, ModelSettings)

Where = Callable[[str], str]


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
        low, high = INT_RANGES.get(name, (None, None))
        if value is not None and low is not None and (value < low or (high is not None and value > high)):
            raise ConfigError(f"{label(name)}: expected {range_text(name)}, got {value!r}")
        if value is not None and name in LOWERCASE and value not in CACHE_TYPES:
            raise ConfigError(f"{label(name)}: expected one of {', '.join(CACHE_TYPES)}, got {value!r}")
        if value is not None and name in ("rope_freq_base", "rope_freq_scale") and not 0 <= value < float("inf"):
            raise ConfigError(f"{label(name)}: expected a number >= 0 (0: the model's), got {value!r}")


def _check(s: Settings, where: Where) -> None:
    """Everything the types alone do not say; messages name the source of the offending value."""
    _check_entry(s, where)
    if s.n_ubatch > s.n_batch:
        raise ConfigError(f"{where('n_ubatch')}: n_ubatch ({s.n_ubatch}) must not exceed n_batch "
                          f"({s.n_batch}, from {where('n_batch')})")
    for name, value in (("load_timeout", s.load_timeout), ("drain_timeout", s.drain_timeout),
                        ("stream_write_timeout", s.stream_write_timeout), ("header_timeout", s.header_timeout),
                        ("runner_probe_interval", s.runner_probe_interval),
                        ("runner_probe_timeout", s.runner_probe_timeout),
                        ("runner_stall_timeout", s.runner_stall_timeout)):
        if value <= 0:
            raise ConfigError(f"{where(name)}: expected a positive duration, got {value!r}")
    if not 0 <= s.stream_interval <= 1:
        raise ConfigError(f"{where('stream_interval')}: expected 0 to 1s, got {s.stream_interval!r}")
    for name, size in (("memory_budget", s.memory_budget), ("max_body_bytes", s.max_body_bytes)):
        if size is not None and size < 1:
            raise ConfigError(f"{where(name)}: expected a positive size such as '8GiB', got {size!r}")
    if not s.host or any(ch.isspace() for ch in s.host):
        raise ConfigError(f"{where('host')}: expected a host name or address, got {s.host!r}")
    if not s.scheduler.strip():
        raise ConfigError(f"{where('scheduler')}: expected a policy name or 'module:Class', "
                          f"got {s.scheduler!r}")
    _check_prefetch(s, where)
    check_workers(s.rpc_workers, where("rpc_workers"))
    check_speculative(s.speculative, where("speculative"))
    for spec in s.hooks:
        module, _, attr = spec.partition(":")
        if not module or not attr:
            raise ConfigError(f"{where('hooks')}: {spec!r} is not 'module:function'")
    for i, key in enumerate(s.api_keys):
        if not key or any(ch.isspace() for ch in key):  # never echo a key: it may be a real secret
            raise ConfigError(f"{where('api_keys')}: key #{i + 1} is empty or contains whitespace")
    if any(not d for d in s.models_dirs):
        raise ConfigError(f"{where('models_dirs')}: a directory is an empty string")
    if s.default_model is not None:
        _check_name(s.default_model, where("default_model"))
    _check_names(s, where)
    _check_models(s, where)
    check_presets(s.presets, s.aliases, where("presets"), s.max_tokens_limit)
    if not is_loopback(s.host) and not s.api_keys and not s.allow_public:
        raise ConfigError(
            f"{where('host')}: host {s.host!r} is not a loopback address and no api_keys are set, so anyone "
            "who can reach it could use the server; set api_keys (MULLAMA_API_KEYS) or pass --allow-public "
            "(MULLAMA_ALLOW_PUBLIC=1) to serve without keys")


def _check_prefetch(s: Settings, where: Where) -> None:
    """The predictor itself is resolved when the app starts (``prefetch.make_predictor``)."""
    if not s.prefetch.strip():
        raise ConfigError(f"{where('prefetch')}: expected 'none', a predictor name or "
                          f"'package.module:Class', got {s.prefetch!r}")
    if not 0 < s.prefetch_min_confidence <= 1:  # NaN fails this too
        raise ConfigError(f"{where('prefetch_min_confidence')}: expected a number in (0, 1], "
                          f"got {s.prefetch_min_confidence!r}")
    if s.prefetch_idle < 0:  # parse_duration reads any negative as "forever", which means nothing here
        raise ConfigError(f"{where('prefetch_idle')}: expected a duration >= 0, got a negative one")


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


_KV_OVERRIDE = re.compile(r"^[^=\s]{1,127}=(int|float|bool|str):.*$")


def _check_models(s: Settings, where: Where) -> None:
    for key, entry in s.models.items():
        base = f"{where('models')}.{key}"
        _check_name(key, base)
        _check_entry(entry, lambda name: f"{base}.{name}")
        if entry.path is not None and not entry.path.strip():
            raise ConfigError(f"{base}.path: expected a file path, got an empty string")
        if entry.sampling is not None:
            check_sampling(entry.sampling, f"{base}.sampling")
        for i, kv in enumerate(entry.override_kv or ()):
            if not _KV_OVERRIDE.match(kv):
                raise ConfigError(f"{base}.override_kv[{i}]: expected KEY=TYPE:VALUE with TYPE int, float, bool or "
                                  f"str (e.g. \"tokenizer.ggml.add_bos_token=bool:false\"), got {kv!r}")
        template = entry.chat_template
        if template is not None and (not template.strip() or (("/" in template or template.endswith(".jinja"))
                                                              and not os.path.isfile(template))):
            raise ConfigError(f"{base}.chat_template: expected a Jinja file that exists or a built-in template's "
                              f"name, got {template!r}")
        check_model_overrides(entry, base)
        check_adapters(entry.adapters, base)
        check_workers(entry.rpc_workers, f"{base}.rpc_workers")
        check_speculative(entry.speculative, f"{base}.speculative")
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
        check_resolved_overrides(resolved, base)


def _expand_paths(s: Settings) -> Settings:
    models = {key: msgspec.structs.replace(
        entry, path=os.path.expanduser(entry.path) if entry.path else entry.path,
        chat_template=os.path.expanduser(entry.chat_template) if entry.chat_template else entry.chat_template,
        adapters=expand_adapters(entry.adapters))
        for key, entry in s.models.items()}
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
    layers = [file_layer(_SCHEMA, path, via_env=config_path is None)] if path else []
    layers += [env_layer(_SCHEMA, env), flag_layer(_SCHEMA, flags or {})]
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for values, where in layers:
        normalize_layer(_SCHEMA, values, where)
        raw.update(values)
        origins.update(where)

    def where_of(name: str) -> str:
        return origins.get(name, f"{name} (default)")

    for table, cls in (("models", ModelSettings), ("presets", PresetSettings)):  # errors name the entry
        for key, entry in (raw[table].items() if isinstance(raw.get(table), Mapping) else ()):
            base = f"{where_of(table)}.{key}"
            _convert(entry, cls, lambda name, base=base: f"{base}.{name}" if name else base)
    settings = _expand_paths(_convert(raw, Settings, where_of))
    _check(settings, where_of)
    return settings
