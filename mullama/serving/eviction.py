"""Which loaded model makes room for another: a pure decision over a snapshot, table-tested.

The lifecycle asks ``choose_victim`` for the next model to evict whenever a load does not fit (the
devices' free memory, the ``memory_budget`` or ``max_loaded_models``), evicts it, and plans again.
Only ready models can go; never a pinned one, one the caller protects (a hot-swap keeps the old
variant serving while the new one loads), or the model being loaded. Idle models go before busy
ones (a busy one drains first), and among those the least recently used goes first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """One model as eviction sees it."""

    name: str
    ready: bool          # loaded and serving (a model loading, draining or failed is not a candidate)
    pinned: bool
    in_flight: int       # requests holding a lease on it
    last_used: float     # monotonic seconds


def eviction_order(candidates: Iterable[Candidate], *, exclude: str = "",
                   protect: frozenset[str] = frozenset()) -> list[Candidate]:
    """The models that may be evicted, the first to go first."""
    allowed = [c for c in candidates if c.ready and not c.pinned and c.name != exclude and c.name not in protect]
    return sorted(allowed, key=lambda c: (c.in_flight > 0, c.last_used))


def choose_victim(candidates: Iterable[Candidate], *, exclude: str = "",
                  protect: frozenset[str] = frozenset()) -> str | None:
    """The name of the model to evict next, or None when no model may go."""
    order = eviction_order(candidates, exclude=exclude, protect=protect)
    return order[0].name if order else None
