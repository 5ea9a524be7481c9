"""The cores this runner's threads run on (the supervisor's core allotment, hardware/cores.py).

Linux's affinity is per thread and a new thread inherits its creator's, so ``pin`` sets it for every
thread the process has: the Python threads that create ggml's thread pools pass it on to the pools.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import structlog

from mullama import _engine, wire
from mullama.core.errors import InvalidArgument

log = structlog.get_logger("mullama.runner")

# What the process was started with: a cpuset or `taskset` around the server bounds every allotment.
STARTED_WITH = frozenset(os.sched_getaffinity(0))


def pin(cores: Sequence[int]) -> tuple[int, ...]:
    """Every thread of this process onto ``cores`` ([]: every core it started with); the cores applied."""
    wanted = frozenset(cores) or STARTED_WITH
    if not wanted <= STARTED_WITH:
        raise InvalidArgument(f"cores {sorted(wanted - STARTED_WITH)} are not this runner's to use "
                              f"(it may run on {sorted(STARTED_WITH)})")
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), wanted)
        except (ProcessLookupError, FileNotFoundError):
            pass  # a thread that ended meanwhile
    return tuple(sorted(wanted))


async def apply(batcher: _engine.Batcher, allotment: wire.CpuAllotment) -> wire.CpuAllotment:
    """``POST /cpu``: new cores, then new thread pools between two decode steps (their threads inherit the
    affinity of the thread that makes them), then the cores once more for any thread made meanwhile."""
    cores = pin(allotment.cores)
    await asyncio.to_thread(batcher.set_threads, allotment.threads, allotment.threads_batch)
    pin(cores)
    log.info("cpu", cores=list(cores), threads=allotment.threads, threads_batch=allotment.threads_batch)
    return wire.CpuAllotment(cores=list(cores), threads=allotment.threads, threads_batch=allotment.threads_batch)
