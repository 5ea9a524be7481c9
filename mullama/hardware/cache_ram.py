"""How the runners share host memory for their parked prefix caches (``cache_ram``): pure rules, table-tested.

A runner moves idle slots' prefix caches out of the shared KV cache into host memory, up to its model's
``cache_ram`` (8 GiB by default, as llama-server's ``--cache-ram 8192``). llama-server serves one model per
process; mullama runs one runner per model, so three runners at the default could claim 24 GiB. The
supervisor therefore gives each runner a limit out of a **pool**:

* what is free now, in RAM only (a cache in swap is slower than evaluating the prompt again), plus what the
  caches hold now (a runner gives it back at once when its limit goes down);
* but never more than the RAM left beside every loaded model's planned host bytes (mapped weights count
  as "available" to the kernel, yet they are in use);
* less a model about to load (the caches make room before it allocates, so a model is not evicted for
  them; only a runner that does not give its caches' memory back fails that load), a reserve of a tenth of the RAM (at least 1 GiB), and never past what ``memory_budget``
  leaves.

The pool is shared max-min fairly: a runner that wants less than an equal share gets what it wants, and
the others split the rest equally. Loads and unloads share it out again at once; between them the
supervisor looks every ``RECHECK_S`` seconds (memory another program takes or frees) and sends only the
changes ``worth_sending`` says are.
"""

from __future__ import annotations

from collections.abc import Mapping

from mullama.hardware.devices import Host

GiB = 1 << 30
MiB = 1 << 20
MIN_RESERVE = GiB
RECHECK_S = 10.0        # between loads and unloads, how often the shares are worked out again
MIN_CHANGE = 64 * MiB   # ... and the least change sent then (or an eighth of the limit, whichever is more)


def reserve(ram_total: int) -> int:
    """RAM no cache may take: a tenth of it, at least 1 GiB."""
    return max(MIN_RESERVE, ram_total // 10)


def pool(host: Host, *, held: int, models_host: int, incoming: int = 0, budget_left: int | None = None) -> int:
    """Bytes the runners' caches may hold in all.

    ``held``: what they hold now; ``models_host``: the loaded models' planned host bytes (``incoming``
    included); ``incoming``: the host bytes of a model about to allocate (not yet in ``ram_available``);
    ``budget_left``: what ``memory_budget`` leaves beside every loaded model (None: no budget).
    """
    free = min(host.ram_available + held - incoming, host.ram_total - models_host) - reserve(host.ram_total)
    if budget_left is not None:
        free = min(free, budget_left)
    return max(0, free)


def share(total: int, wants: Mapping[str, int]) -> dict[str, int]:
    """Each runner's limit: its ``cache_ram`` (``wants``; 0 wants none) or an equal share of what the runners
    that want less leave, whichever is smaller. The limits add up to no more than ``total``."""
    out: dict[str, int] = {}
    left = max(0, total)
    ordered = sorted(wants.items(), key=lambda kv: (kv[1], kv[0]))
    for i, (name, want) in enumerate(ordered):
        out[name] = min(max(0, want), left // (len(ordered) - i))
        left -= out[name]
    return out


def worth_sending(current: int | None, new: int, held: int) -> bool:
    """Between loads: a new limit is sent when the caches hold more than it (they must shrink now), or when it
    moves by more than ``MIN_CHANGE`` or an eighth of the current one (the RAM free moves a little all the
    time; the reserve covers what is not sent)."""
    if current is None or new < held:
        return current != new
    return abs(new - current) > max(MIN_CHANGE, current // 8)
