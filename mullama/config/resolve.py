"""A model's effective settings (``RunnerConfig``): its ``[models]`` entries over the server-wide values.

``settings`` is a ``schema.Settings`` (not imported here: the schema checks entries with this resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mullama.config.speculative import SpeculativeSettings, effective


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
    use_mmap: bool
    use_mlock: bool
    main_gpu: int
    split_mode: str
    kv_offload: bool
    swa_full: bool
    kv_unified: bool
    adapter_turn: int
    cache_ram: int  # bytes of host memory for prefix caches out of the KV cache; 0: none
    rope_scaling: str
    rope_freq_base: float
    rope_freq_scale: float
    yarn_orig_ctx: int
    pooling: str
    keep_alive: float
    require_full: bool
    ram_budget: int  # bytes of host memory the model may take; 0: what is free
    rpc_workers: tuple[str, ...]  # RPC workers (host:port) its layers may spread over
    speculative: SpeculativeSettings  # types () : off; draft_model an absolute path
    pinned: bool
    preload: bool
    sampling: tuple[tuple[str, Any], ...]  # (field, default) pairs for requests that leave them out
    chat_template: str  # a Jinja file or a built-in name; "": the GGUF's own
    check_tensors: bool
    override_kv: tuple[str, ...]  # GGUF metadata overrides, KEY=TYPE:VALUE
    tensor_overrides: tuple[str, ...]  # REGEX=DEVICE, as given (n_cpu_moe/cpu_moe not expanded)
    n_cpu_moe: int
    cpu_moe: bool
    numa: str
    context_shift: bool
    adapters: tuple[Any, ...]  # schema.AdapterSettings, loaded with the model
    # A [models] entry set threads / threads_batch: exact counts, not the cap of a share of the cores.
    threads_explicit: bool = False
    threads_batch_explicit: bool = False


_DERIVED = ("threads_explicit", "threads_batch_explicit")
_RUNNER_FIELDS = tuple(f for f in RunnerConfig.__dataclass_fields__ if f not in _DERIVED)


def _overrides(settings: Any, key: str) -> list[Any]:
    """The [models] entries for ``key``: under its own name and under any alias of it."""
    found = [settings.models[key]] if key in settings.models else []
    found += [settings.models[alias] for alias, target in settings.aliases.items()
              if target == key and alias in settings.models]
    return found


def model_settings(settings: Any, name: str, family: str) -> RunnerConfig:
    """``name``'s effective settings: "family:variant" overrides beat "family" overrides beat server-wide.

    ``name`` may be an alias. ``pinned``/``preload`` are true if any matching entry sets them.
    """
    name = settings.aliases.get(name, name)
    values: dict[str, Any] = {f: getattr(settings, f, None) for f in _RUNNER_FIELDS}
    values.update(tensor_split=(), require_full=False, pinned=False, preload=False, chat_template="", override_kv=(),
                  tensor_overrides=(), n_cpu_moe=0, cpu_moe=False, adapters=())
    sampling: dict[str, Any] = {}
    entries = _overrides(settings, family) + (_overrides(settings, name) if name != family else [])
    for entry in entries:
        for field in _RUNNER_FIELDS:
            value = getattr(entry, field)
            if field in ("pinned", "preload"):
                values[field] = values[field] or value
            elif field == "sampling":
                sampling.update(value.given() if value is not None else {})
            elif value is not None:
                values[field] = value
    values["sampling"] = tuple(sampling.items())
    values["ram_budget"] = values["ram_budget"] or 0
    values["speculative"] = effective(values["speculative"])
    values["threads_explicit"] = any(e.threads is not None for e in entries)
    values["threads_batch_explicit"] = any(e.threads_batch is not None for e in entries)
    return RunnerConfig(**values)
