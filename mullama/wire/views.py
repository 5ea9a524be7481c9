"""The runner's views of itself: memory per device, LoRA adapters, slots and KV cache, counters
(``GET /kv``, ``/stats``, ``/adapters``). Re-exported by ``mullama.wire``.
"""

from __future__ import annotations

from mullama.wire.base import HealthStatus, _Wire


class DeviceMemory(_Wire, kw_only=True):
    device: str
    description: str
    type: str
    free: int
    total: int
    model: int
    context: int
    compute: int


class AdapterInfo(_Wire, kw_only=True):
    """A loaded adapter, as ``GET /adapters`` lists it."""

    id: int                       # stable while loaded; never reused by another adapter of the runner
    name: str
    path: str
    scale: float                  # its default scale
    alpha: float = 0.0            # from the file (adapter.lora.alpha)
    in_use: int = 0               # live requests that apply it


class SlotView(_Wire, kw_only=True):
    index: int
    state: str
    request_id: str | None
    n_tokens: int
    n_cached: int
    n_prompt: int
    n_generated: int
    adapters: str = ""          # the LoRA set (id:scale,...) its request runs with, or its cache was made with


class KvView(_Wire, kw_only=True):
    slots: list[SlotView]
    cells_used: int
    cells_total: int
    n_ctx_slot: int
    prefix_hits: int
    prefix_misses: int
    prefix_evictions: int
    cached_tokens: int
    active_adapters: str = ""   # the LoRA set the context applied at the last decode step
    adapter_switches: int = 0   # decode steps that changed it
    context_shifts: int = 0
    draft_steps: int = 0        # speculative decoding: stream-steps that verified a draft ...
    draft_tokens: int = 0       # ... the tokens drafted ...
    draft_accepted: int = 0     # ... and those accepted
    parks: int = 0              # prefix caches moved out of the KV cache to host memory (cache_ram) ...
    unparks: int = 0            # ... loaded back into a slot for a request that reused one ...
    parked_entries: int = 0     # ... held there now ...
    parked_bytes: int = 0       # ... and the host memory they take


class Counters(_Wire, kw_only=True):
    requests: int
    tokens_in: int
    tokens_out: int
    decode_steps: int
    avg_batch_size: float
    swaps_out: int
    kv_full: int
    rejected: int
    kv_preemptions: int = 0


class StatsView(_Wire, kw_only=True):
    status: HealthStatus
    pid: int
    rss_bytes: int
    devices: list[DeviceMemory]
    counters: Counters
    queued: int
    active: int
    n_parallel: int
