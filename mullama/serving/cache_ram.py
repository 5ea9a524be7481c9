"""The supervisor's side of the host memory the runners' prefix caches share (the rules are in
hardware/cache_ram.py): the limit a runner loads with, once the others have given up what the new model
needs, and every runner's limit again when one unloads or crashes (``POST /cache-ram`` on the runner:
parked caches beyond a lower limit go at once, their memory back to the system)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

import structlog

from mullama.config import Settings
from mullama.core import errors
from mullama.hardware.cache_ram import pool, share
from mullama.hardware.devices import Devices
from mullama.serving.runtime import Runtime, State

log = structlog.get_logger("mullama.cache_ram")

HOLDING = (State.READY, State.DRAINING)  # the states in which a runner's loop runs and may hold parked caches
SHARING = (State.LOADING, State.WARMING, *HOLDING)  # those that have a share (a loading one since for_load)


def holders(runtimes: Iterable[Runtime]) -> list[Runtime]:
    return [rt for rt in runtimes if rt.handle is not None and rt.state in HOLDING]


def _memory(rt: Runtime) -> int:
    return rt.memory or (rt.placement.total_bytes() if rt.placement is not None else 0)


class CacheRam:
    """Gives each runner its share of host memory for parked prefix caches."""

    def __init__(self, settings: Settings, probe: Callable[[], Devices], emit: Callable[..., None]) -> None:
        self.settings = settings
        self._probe = probe
        self._emit = emit
        self._lock = asyncio.Lock()

    async def held(self, runtimes: Iterable[Runtime]) -> dict[str, int]:
        """The bytes each runner that may hold parked caches holds now (0 from one that does not answer)."""
        async def one(rt: Runtime) -> int:
            assert rt.handle is not None
            try:
                return (await rt.handle.client.cache_ram()).held
            except errors.MullamaError:  # crashed or stopping: its own watcher reports that
                return 0
        there = holders(runtimes)
        return dict(zip((rt.name for rt in there), await asyncio.gather(*(one(rt) for rt in there)), strict=True))

    async def for_load(self, rt: Runtime, loaded: Sequence[Runtime]) -> int:
        """The limit ``rt`` (loading, planned: ``rt.placement``) loads with, beside the models ``loaded``
        (``rt`` among them); runners whose limit goes down shrink first, so the memory is free before ``rt``
        allocates."""
        async with self._lock:
            plan = await self._plan(loaded)
            await self._apply(plan, holders(loaded))
            rt.cache_ram = plan.get(rt.name, 0)
            return rt.cache_ram

    async def rebalance(self, loaded: Sequence[Runtime]) -> None:
        """Every ready runner's limit again, among the models ``loaded`` now (after one left)."""
        async with self._lock:
            if there := holders(loaded):
                await self._apply(await self._plan(loaded), there)

    async def _plan(self, loaded: Sequence[Runtime]) -> dict[str, int]:
        """Shares among the runners ready or loading (a loading one's share counts while it loads: a rebalance
        meanwhile must not hand it to the others); a loading model's host bytes are not yet taken."""
        s = self.settings
        sharing = [r for r in loaded if r.handle is not None and r.state in SHARING and r.placement is not None]
        incoming = sum(r.placement.cpu_bytes for r in sharing if r.state is State.LOADING and r.placement)
        budget_left = s.memory_budget - sum(_memory(r) for r in loaded) if s.memory_budget is not None else None
        total = pool(self._probe().host, held=sum((await self.held(sharing)).values()),
                     models_host=sum(r.placement.cpu_bytes for r in loaded if r.placement is not None),
                     incoming=incoming, budget_left=budget_left)
        return share(total, {r.name: r.config.cache_ram for r in sharing})

    async def _apply(self, plan: dict[str, int], runtimes: Sequence[Runtime]) -> None:
        """The new limits, those that go down first."""
        for rt in sorted(runtimes, key=lambda r: plan.get(r.name, 0) - (r.cache_ram or 0)):
            limit = plan.get(rt.name, 0)
            if rt.cache_ram == limit or rt.handle is None:
                continue
            try:
                got = await rt.handle.client.cache_ram(limit)
            except errors.MullamaError as exc:
                log.warning("cache_ram_failed", model=rt.name, error=str(exc))
                continue
            before, rt.cache_ram = rt.cache_ram, limit
            log.info("cache_ram_allotted", model=rt.name, limit=limit, held=got.held, before=before)
            self._emit("cache_ram_allotted", model=rt.name, limit=limit, held=got.held, before=before)
