"""Which CPU cores each runner's decode threads run on, and how many threads it runs.

Pure: cores and demands in, allotments out. The supervisor owns the machine's cores (``Settings.
cpu_allotment``, docs/configuration.md): ggml's thread pool busy-waits between the steps of a
decode, so two runners that each run a thread per core on the same cores do not share them,
they fight: on two cores, two runners of two threads each made regular 3-second gaps between
tokens. An allotment gives each runner its own cores while there are enough, and threads to match.

Rules:

* ``demands`` come oldest first; an allotment is a contiguous block of cores, handed out in that
  order, so the runner that was there first keeps its cores when another arrives.
* A demand with ``threads`` (a per-model ``threads`` setting) gets exactly that many threads, on
  as many free cores as there are (never fewer than one core; when none is free it shares the
  first cores, as asked).
* A ``light`` demand (a model whose every layer runs off the CPU: on a GPU or an RPC worker) gets one
  thread on one free core: the CPU only embeds the input and samples, and a thread per core would spin
  on cores the CPU-bound runners need. With no core free it shares the first one.
* The others split the free cores evenly (the older ones get the remainder), each capped at
  ``cap`` threads (the server-wide ``threads``; 0: no cap).
* More runners than free cores: one thread each, on the free cores round robin (all cores when
  none is free) — sharing cannot be avoided then, but one thread per runner never spins on a
  barrier waiting for a thread that is not running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CoreDemand:
    name: str
    threads: int = 0  # exactly this many threads (a per-model setting); 0: a fair share
    cap: int = 0      # at most this many threads (the server-wide setting); 0: no cap
    light: bool = False  # its layers all run off the CPU (GPU, RPC): one thread is enough


@dataclass(frozen=True)
class Allotment:
    cores: tuple[int, ...]
    threads: int


def allot(cores: Sequence[int], demands: Sequence[CoreDemand]) -> dict[str, Allotment]:
    """Each demand's cores and thread count (see the module's rules)."""
    all_cores = sorted(set(cores))
    if not all_cores:
        raise ValueError("no cores to allot")
    free = list(all_cores)
    out: dict[str, Allotment] = {}
    for d in (d for d in demands if d.threads > 0):
        take, free = free[:d.threads], free[d.threads:]
        out[d.name] = Allotment(tuple(take or all_cores[:d.threads]), d.threads)
    for d in (d for d in demands if d.threads <= 0 and d.light):
        take, free = free[:1], free[1:]
        out[d.name] = Allotment(tuple(take or all_cores[:1]), 1)
    fair = [d for d in demands if d.threads <= 0 and not d.light]
    if not fair:
        return out
    if len(free) < len(fair):
        pool = free or all_cores
        for i, d in enumerate(fair):
            out[d.name] = Allotment((pool[i % len(pool)],), 1)
        return out
    share, extra = divmod(len(free), len(fair))
    start = 0
    for i, d in enumerate(fair):
        size = share + (1 if i < extra else 0)
        block = tuple(free[start:start + size])
        start += size
        out[d.name] = Allotment(block, min(len(block), d.cap) if d.cap > 0 else len(block))
    return out
