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
from mullama.hardware.cache_ram import RECHECK_S, pool, share, worth_sending
from mullama.hardware.devices import Devices
from mullama.serving.runtime import RunnerApi, Runtime, State

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
        async def one(client: RunnerApi) -> int:
            try:
                return (await client.cache_ram()).held
            except errors.MullamaError:  # crashed or stopping: its own watcher reports that
                return 0
        there = [(rt.name, rt.handle.client) for rt in holders(runtimes) if rt.handle is not None]
        return dict(zip((name for name, _ in there), await asyncio.gather(*(one(c) for _, c in there)), strict=True))

    async def for_load(self, rt: Runtime, loaded: Sequence[Runtime]) -> int:
        """The limit ``rt`` (loading, planned: ``rt.placement``) loads with, beside the models ``loaded``
        (``rt`` among them). Runners whose limit goes down shrink first, so the memory is free before ``rt``
        allocates: the plan counted what they hold as free (``loading._devices``), so one that is still there
        and did not give it back fails the load (NoFit) rather than let it allocate into that memory."""
        async with self._lock:
            rt.cache_ram = None  # planned again (an alloc retried with another placement): its share is new
            held = await self.held(loaded)
            plan = await self._plan(loaded, held)
            kept = [r for r in await self._apply(plan, holders(loaded))
                    if r.handle is not None and held.get(r.name, 0) > plan.get(r.name, 0)]
            if kept:
                raise errors.NoFit(f"{rt.name} needs host memory that {', '.join(r.name for r in kept)} still "
                                   "holds in parked prefix caches (its runner did not answer POST /cache-ram)")
            rt.cache_ram = plan.get(rt.name, 0)
            return rt.cache_ram

    async def rebalance(self, loaded: Sequence[Runtime]) -> None:
        """Every ready runner's limit again, among the models ``loaded`` now (after one left)."""
        async with self._lock:
            if there := holders(loaded):
                await self._apply(await self._plan(loaded, await self.held(loaded)), there)

    async def run(self, loaded_of: Callable[[], Sequence[Runtime]]) -> None:
        """Between loads and unloads, every ``RECHECK_S`` s: the shares again, for memory another program took
        or freed (a task of the app's life)."""
        while True:
            await asyncio.sleep(RECHECK_S)
            try:
                await self.recheck(loaded_of())
            except Exception as exc:  # noqa: BLE001 - a probe gone wrong must not end the task: the next turn tries
                log.warning("cache_ram_recheck_failed", error=f"{type(exc).__name__}: {exc}")

    async def recheck(self, loaded: Sequence[Runtime]) -> None:
        """The shares among the models ``loaded`` now; only the changes ``worth_sending`` are sent."""
        async with self._lock:
            if not (there := holders(loaded)):
                return
            held = await self.held(loaded)
            plan = await self._plan(loaded, held)
            await self._apply(plan, [r for r in there if worth_sending(r.cache_ram, plan.get(r.name, 0),
                                                                        held.get(r.name, 0))])

    async def _plan(self, loaded: Sequence[Runtime], held: dict[str, int]) -> dict[str, int]:
        """Shares among the runners ready or loading. A loading one keeps the share it loads with (a rebalance
        meanwhile must neither hand it to the others nor change what it was sent), and its host bytes are not
        yet taken. ``held``: what the ready ones hold (asked before the memory is looked at: caches parked
        meanwhile would otherwise count twice)."""
        s = self.settings
        sharing = [r for r in loaded if r.handle is not None and r.state in SHARING and r.placement is not None]
        fixed = {r.name: r.cache_ram for r in sharing if r.state not in HOLDING and r.cache_ram is not None}
        incoming = sum(r.placement.cpu_bytes for r in sharing if r.state is State.LOADING and r.placement)
        budget_left = s.memory_budget - sum(_memory(r) for r in loaded) if s.memory_budget is not None else None
        total = pool(self._probe().host, held=sum(held.values()),
                     models_host=sum(r.placement.cpu_bytes for r in loaded if r.placement is not None),
                     incoming=incoming, budget_left=budget_left)
        return {**share(total - sum(fixed.values()), {r.name: r.config.cache_ram for r in sharing
                                                      if r.name not in fixed}), **fixed}

    async def _apply(self, plan: dict[str, int], runtimes: Sequence[Runtime]) -> list[Runtime]:
        """The new limits: those that go down first, all at once, then those that go up. Returns the runners
        that did not take theirs."""
        change = [r for r in runtimes if r.handle is not None and r.cache_ram != plan.get(r.name, 0)]
        down = [r for r in change if plan.get(r.name, 0) < (r.cache_ram if r.cache_ram is not None else 1 << 62)]
        failed: list[Runtime] = []
        for group in (down, [r for r in change if r not in down]):
            for rt, ok in zip(group, await asyncio.gather(*(self._set(rt, plan.get(rt.name, 0)) for rt in group)),
                              strict=True):
                if not ok:
                    failed.append(rt)
        return failed

    async def _set(self, rt: Runtime, limit: int) -> bool:
        if rt.handle is None:
            return False
        try:
            got = await rt.handle.client.cache_ram(limit)
        except errors.MullamaError as exc:
            log.warning("cache_ram_failed", model=rt.name, error=str(exc))
            return False
        before, rt.cache_ram = rt.cache_ram, got.limit  # what the runner applied
        log.info("cache_ram_allotted", model=rt.name, limit=got.limit, held=got.held, before=before)
        self._emit("cache_ram_allotted", model=rt.name, limit=got.limit, held=got.held, before=before)
        return True
