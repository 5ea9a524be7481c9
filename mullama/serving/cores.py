"""The supervisor's side of the core allotment (``Settings.cpu_allotment``; the rules are in
hardware/cores.py): what a runner is given when it loads, and what every ready runner is given
again when another one loads, unloads or crashes (``POST /cpu`` on the runner: new affinity for all
its threads, new decode thread pools between two decode steps)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence

import structlog

from mullama import wire
from mullama.config import RunnerConfig, Settings
from mullama.core import errors
from mullama.hardware.cores import Allotment, CoreDemand, allot
from mullama.hardware.placement import Placement
from mullama.serving.runtime import Runtime, State

log = structlog.get_logger("mullama.cores")


def demand(name: str, cfg: RunnerConfig, placement: Placement | None = None) -> CoreDemand:
    """A per-model ``threads`` is exact; the server-wide one caps the runner's share; a model planned
    with every layer off the CPU (and no weights tensor overrides keep on the host) is light."""
    light = placement is not None and placement.full_offload and not placement.pinned_cpu_bytes
    return CoreDemand(name, threads=cfg.threads if cfg.threads_explicit else 0,
                      cap=0 if cfg.threads_explicit else cfg.threads, light=light)


def threads_batch(cfg: RunnerConfig, a: Allotment) -> int:
    return cfg.threads_batch if cfg.threads_batch_explicit and cfg.threads_batch > 0 else a.threads


class Cores:
    """Hands out the cores the server may use (its own affinity: a cpuset or ``taskset`` bounds it)."""

    def __init__(self, settings: Settings, emit: Callable[..., None], cores: Sequence[int] | None = None) -> None:
        self.enabled = settings.cpu_allotment == "spread"
        self.cores = tuple(sorted(cores if cores is not None else os.sched_getaffinity(0)))
        self._emit = emit
        self._order: list[str] = []  # load order: the oldest runner keeps its block
        self._lock = asyncio.Lock()

    def _plan(self, runtimes: Iterable[Runtime]) -> dict[str, Allotment]:
        rank = {name: i for i, name in enumerate(self._order)}
        ordered = sorted(runtimes, key=lambda rt: rank.get(rt.name, len(rank)))
        return allot(self.cores, [demand(rt.name, rt.config, rt.placement) for rt in ordered])

    def for_load(self, rt: Runtime, others: Iterable[Runtime]) -> Allotment | None:
        """The allotment ``rt`` loads with, beside the runners that are there (None: allotment off)."""
        if not self.enabled:
            return None
        if rt.name in self._order:
            self._order.remove(rt.name)
        self._order.append(rt.name)
        return self._plan([*(o for o in others if o.name != rt.name), rt])[rt.name]

    async def rebalance(self, runtimes: Iterable[Runtime]) -> None:
        """Give every ready runner its allotment among the runners there now (those that changed)."""
        if not self.enabled:
            return
        async with self._lock:
            there = [rt for rt in runtimes if rt.handle is not None and rt.state in (
                State.LOADING, State.WARMING, State.READY, State.DRAINING)
                and not (rt.state is State.LOADING and rt.name not in self._order)]  # not yet given cores
            self._order = [n for n in self._order if any(rt.name == n for rt in there)]
            plan = self._plan(there)
            for rt in there:
                a = plan[rt.name]
                if rt.state is not State.READY or rt.cpu == a or rt.handle is None:
                    continue
                req = wire.CpuAllotment(cores=list(a.cores), threads=a.threads,
                                        threads_batch=threads_batch(rt.config, a))
                try:
                    await rt.handle.client.set_cpu(req)
                except errors.MullamaError as exc:  # it crashed or is stopping: its own watcher reports that
                    log.warning("cpu_allotment_failed", model=rt.name, error=str(exc))
                    continue
                before, rt.cpu = rt.cpu, a
                log.info("cores_allotted", model=rt.name, cores=list(a.cores), threads=a.threads)
                self._emit("cores_allotted", model=rt.name, cores=list(a.cores), threads=a.threads,
                           before=list(before.cores) if before else None)
