"""Per-model lifecycle: load (fit -> plan -> alloc -> commit), serve, keep-alive, evict, crash, unload.

States (``State``), every transition timestamped in the model's history::

    discovered -> loading -> warming -> ready -> draining -> unloading -> unloaded
                     \\__________\\_______________________________________-> failed

One load runs at a time (``_load_lock``): planning, eviction and the memory
accounting stay simple and no two loads race for the same free memory.
Requests for a model that is loading wait on its load task; none is dropped.
A request holds a ``Lease`` while it runs (the scheduler decides how many run
at once); when the last lease ends the keep-alive timer starts.

The runner is reached only through a ``Handle`` (the app's ``launch`` returns a
``RunnerProcess`` with its ``RunnerClient`` attached); unit tests pass a
recording fake ``launch``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable

import structlog

from mullama import errors
from mullama import protocol as wire
from mullama.catalog import ModelEntry
from mullama.config import RunnerConfig, Settings, model_settings
from mullama.devices import Devices
from mullama.placement import Placement, cost_from_fit, plan
from mullama.runtime import Handle, Lease, Runtime, State

Launch = Callable[[str], Awaitable[Handle]]
Emit = Callable[..., None]

__all__ = ["Handle", "Launch", "Lease", "Lifecycle", "Runtime", "State", "crash_backoff", "load_params"]

log = structlog.get_logger("mullama.lifecycle")

MAX_ALLOC_ATTEMPTS = 5
HEALTH_POLL_S = 0.25
BROKEN_EXIT_WAIT_S = 2.0


def load_params(entry: ModelEntry, cfg: RunnerConfig, op: wire.LoadOp, placement: Placement | None,
                n_gpu_layers: int | None = None) -> wire.LoadParams:
    ngl = placement.n_gpu_layers if placement is not None else (n_gpu_layers if n_gpu_layers is not None else 0)
    return wire.LoadParams(
        op=op, model=str(entry.path), n_ctx=cfg.n_ctx, n_parallel=cfg.n_parallel, n_batch=cfg.n_batch,
        n_ubatch=cfg.n_ubatch, n_threads=cfg.threads, n_threads_batch=cfg.threads_batch, n_gpu_layers=ngl,
        tensor_split=list(placement.tensor_split) if placement is not None else [], flash_attn=cfg.flash_attn,
        type_k=cfg.cache_type_k, type_v=cfg.cache_type_v)


def crash_backoff(recent_crashes: int) -> float:
    """Seconds before a crashed runner may restart: 0, 1, 2, 4 ... capped at 30."""
    return 0.0 if recent_crashes <= 1 else min(30.0, 2.0 ** (recent_crashes - 2))


def next_placement(current: Placement, n_layer: int, seen: set[tuple]) -> int | None:
    """After a failed alloc: fewer GPU layers (a tenth of the model at a time); None when nothing is left to try."""
    if current.n_gpu_layers <= 0:
        return None
    ngl = max(0, current.n_gpu_layers - max(1, n_layer // 10))
    return None if (ngl, ()) in seen else ngl


class Lifecycle:
    """Owns every model's ``Runtime``; used from one event loop."""

    def __init__(self, settings: Settings, launch: Launch, probe: Callable[[], Devices],
                 emit: Emit | None = None) -> None:
        self.settings = settings
        self._launch = launch
        self._probe = probe
        self._emit = emit or (lambda *a, **k: None)
        self.runtimes: dict[str, Runtime] = {}
        self._load_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.closing = False
        self.counters = collections.Counter()

    # ------------------------------------------------------------------ requests

    def runtime(self, entry: ModelEntry) -> Runtime:
        rt = self.runtimes.get(entry.name)
        if rt is None or rt.entry.path != entry.path:
            cfg = model_settings(self.settings, entry.name, entry.family)
            rt = Runtime(entry=entry, config=cfg, keep_alive=cfg.keep_alive)
            rt.idle.set()
            rt.transition(State.DISCOVERED)
            self.runtimes[entry.name] = rt
        return rt

    async def acquire(self, entry: ModelEntry, *, keep_alive: float | None = None) -> Lease:
        """Wait until the model is ready, loading (and evicting) as needed. Slots are the scheduler's business."""
        if self.closing:
            raise errors.ShuttingDown("the server is shutting down")
        rt = self.runtime(entry)
        rt.keep_alive = rt.config.keep_alive if keep_alive is None else keep_alive  # per use, as in Ollama
        t0 = time.perf_counter()
        load_wait = 0.0
        rt.waiting += 1  # a model someone waits for is not idle: no keep-alive unload in between
        try:
            while True:
                if rt.serving and getattr(rt.handle.client, "broken", False) is True:
                    await self._until_exit_seen(rt, rt.handle)  # its streams broke: do not hand it out again
                if rt.serving:
                    break
                t_load = time.perf_counter()
                await self.ensure_loaded(rt, reason="request")
                load_wait += time.perf_counter() - t_load
        finally:
            rt.waiting -= 1
            if rt.waiting == 0 and rt.in_flight == 0 and rt.serving and sys.exc_info()[0] is not None:
                self._schedule_expiry(rt)  # the last waiter gave up: the model is idle after all
        rt.in_flight += 1
        rt.idle.clear()
        self._cancel_expiry(rt)
        rt.last_used = time.monotonic()
        log.debug("lease", model=rt.name, in_flight=rt.in_flight, wait_ms=round((time.perf_counter() - t0) * 1e3, 2))
        return Lease(runtime=rt, handle=rt.handle, load_wait_ms=load_wait * 1000)

    async def _until_exit_seen(self, rt: Runtime, handle: Handle) -> None:
        """A runner whose stream broke off is dying or dead: wait (bounded) until its exit is recorded.

        The streams of a killed runner fail as soon as its sockets close; the exit watcher sees the
        process end a little later. A request in between must wait for the restart, not get the
        corpse. If the runner is still alive after ``BROKEN_EXIT_WAIT_S`` the break had another
        cause: it serves again.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(handle.exited), BROKEN_EXIT_WAIT_S)
        if not handle.exited.done():  # alive after all: the break had another cause; it serves again
            handle.client.broken = False
            rt.lost = 0
            return
        for _ in range(100):  # the watcher runs on the exit's callbacks; give it its turn
            if rt.handle is not handle:
                return
            await asyncio.sleep(0.01)

    def release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        rt = lease.runtime
        rt.in_flight -= 1
        if lease.handle is rt.handle and getattr(lease.handle.client, "broken", False) is True:
            rt.lost += 1  # its stream broke: the runner died under it (counted in the crash record)
        rt.last_used = time.monotonic()
        if rt.in_flight == 0:
            rt.idle.set()
            if rt.serving:
                self._schedule_expiry(rt)

    # ------------------------------------------------------------------ keep-alive

    def set_keep_alive(self, rt: Runtime, seconds: float) -> None:
        """A new keep-alive for a model; an idle loaded model's timer restarts with it (0: unload now)."""
        rt.keep_alive = seconds
        if rt.serving and rt.in_flight == 0:
            self._schedule_expiry(rt)

    def _schedule_expiry(self, rt: Runtime) -> None:
        self._cancel_expiry(rt)
        if rt.config.pinned or rt.keep_alive < 0:
            rt.expires_at = None
            return
        rt.expires_at = time.time() + rt.keep_alive
        if rt.keep_alive == 0:
            self._spawn(self._expire(rt))
            return
        loop = asyncio.get_running_loop()
        rt.expiry = loop.call_later(rt.keep_alive, lambda: self._spawn(self._expire(rt)))

    def _cancel_expiry(self, rt: Runtime) -> None:
        if rt.expiry is not None:
            rt.expiry.cancel()
            rt.expiry = None
        rt.expires_at = None

    async def _expire(self, rt: Runtime) -> None:
        if rt.serving and rt.in_flight == 0 and rt.waiting == 0:
            await self.unload(rt, reason="keep_alive")

    def _spawn(self, coro: Awaitable) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ loading

    async def ensure_loaded(self, rt: Runtime, reason: str = "request", protect: frozenset[str] = frozenset()) -> None:
        """Start (or join) the model's load; raise its error if it fails. Cancelling the waiter leaves the load.

        ``protect``: models this load must not evict (a hot-swap keeps the old variant serving; a
        prefetch that is not confident enough only uses free memory) -- NoFit instead.
        """
        if rt.serving:
            return
        if rt.load_task is None or rt.load_task.done():
            rt.load_task = self._spawn(self._load(rt, reason, protect))
        await asyncio.shield(rt.load_task)

    async def _load(self, rt: Runtime, reason: str, protect: frozenset[str] = frozenset()) -> None:
        async with self._load_lock:
            await self._until_unloaded(rt)  # a model that is draining finishes leaving before it loads again
            if rt.serving:
                return
            if self.closing:
                raise errors.ShuttingDown("the server is shutting down")
            delay = rt.restart_at - time.monotonic()
            if delay > 0:
                log.info("restart_backoff", model=rt.name, seconds=round(delay, 2))
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            rt.transition(State.LOADING, reason=reason)
            rt.progress, rt.error, rt.drain_killed = 0.0, None, 0
            self.counters["loads"] += 1
            self._emit("model_loading", model=rt.name, reason=reason)
            try:
                await self._load_runner(rt, protect)
            except BaseException as exc:
                await self._discard(rt)
                if protect and isinstance(exc, errors.NoFit):
                    # a swap or prefetch that found no room beside the models it must keep: not a failure
                    rt.transition(State.UNLOADED, reason=f"{reason}: no room", detail=str(exc))
                    rt.loads.append({"at": time.time(), "reason": reason, "ok": False, "skipped": True,
                                     "error": str(exc), "load_ms": round((time.perf_counter() - t0) * 1000, 1)})
                    self._emit("model_load_skipped", model=rt.name, reason=reason, detail=str(exc))
                    raise
                rt.error = str(exc) or type(exc).__name__
                rt.transition(State.FAILED, error=rt.error)
                rt.loads.append({"at": time.time(), "reason": reason, "ok": False, "error": rt.error,
                                 "load_ms": round((time.perf_counter() - t0) * 1000, 1)})
                self.counters["load_failures"] += 1
                self._emit("model_failed", model=rt.name, error=rt.error)
                log.warning("load_failed", model=rt.name, error=rt.error)
                if isinstance(exc, errors.MullamaError) or not isinstance(exc, Exception):
                    raise
                raise errors.LoadFailed(f"loading {rt.name} failed: {exc}") from exc
            load_ms = (time.perf_counter() - t0) * 1000
            rt.transition(State.READY, load_ms=round(load_ms, 1))
            rt.loads.append({"at": time.time(), "reason": reason, "ok": True, "load_ms": round(load_ms, 1),
                             "processor": rt.placement.processor() if rt.placement else "", "memory": rt.memory})
            rt.last_used = time.monotonic()
            self._emit("model_ready", model=rt.name, load_ms=load_ms, reason=reason)
            log.info("model_ready", model=rt.name, load_ms=round(load_ms, 1), memory=rt.memory,
                     processor=rt.placement.processor() if rt.placement else "")
            if rt.in_flight == 0 and rt.waiting == 0:
                self._schedule_expiry(rt)

    async def _load_runner(self, rt: Runtime, protect: frozenset[str]) -> None:
        entry, cfg = rt.entry, rt.config
        if entry.header is None:
            raise errors.ModelUnavailable(f"{entry.name}: {entry.error or 'no GGUF header'}")
        handle = await self._launch(entry.name)
        rt.handle, rt.lost = handle, 0
        self._spawn(self._watch(rt, handle))
        monitor = self._spawn(self._monitor(rt, handle))
        try:
            gpus = len(self._probe().gpus)
            fit = await handle.client.load(load_params(entry, cfg, "fit", None, -1 if gpus else 0))
            header = entry.header
            output = header.output_bytes
            if output * 100 < header.input_bytes:  # tied embeddings: the output head is the embedding matrix again
                output += header.input_bytes
            cost = cost_from_fit(header.n_layer, header.layer_bytes, output, header.input_bytes, fit.devices)
            placement = await self._make_room(rt, cost, protect)
            seen: set[tuple] = set()
            for attempt in range(1, MAX_ALLOC_ATTEMPTS + 1):
                seen.add((placement.n_gpu_layers, placement.tensor_split))
                try:
                    await handle.client.load(load_params(entry, cfg, "alloc", placement))
                    break
                except errors.OutOfMemory as exc:
                    ngl = next_placement(placement, header.n_layer, seen)
                    log.warning("alloc_failed", model=rt.name, attempt=attempt, n_gpu_layers=placement.n_gpu_layers,
                                error=str(exc), retry_with=ngl)
                    with contextlib.suppress(errors.MullamaError):
                        await handle.client.load(load_params(entry, cfg, "close", None))
                    if ngl is None or attempt == MAX_ALLOC_ATTEMPTS:
                        raise errors.NoFit(f"{rt.name}: allocation failed with {placement.n_gpu_layers} GPU layers "
                                           f"and no smaller plan is left: {exc}") from None
                    placement = plan(cost, self._probe(), n_gpu_layers=ngl, model=rt.name)
            rt.placement = placement
            rt.transition(State.WARMING)  # commit: page the weights in, warm up, start the batching loop
            self._emit("model_warming", model=rt.name)
            result = await handle.client.load(load_params(entry, cfg, "commit", placement))
        except errors.RunnerCrashed as exc:
            if handle.stalled:
                raise errors.LoadStalled(
                    f"loading {rt.name} made no progress for {self.settings.load_timeout:g} s; "
                    "the runner was stopped") from None
            tail = " | ".join(list(handle.tail)[-3:])
            raise errors.LoadFailed(f"the runner for {rt.name} died while loading: {exc}; last log: {tail}") from None
        finally:
            monitor.cancel()
        rt.devices = list(result.devices)
        rt.memory = sum(d.model + d.context + d.compute for d in result.devices) or placement.total_bytes()
        rt.n_ctx = result.n_ctx
        rt.progress = 1.0

    async def _monitor(self, rt: Runtime, handle: Handle) -> None:
        """Follow the runner's load progress; no change for ``load_timeout`` -> kill it (a stalled load)."""
        last, since = None, time.monotonic()
        while True:
            await asyncio.sleep(HEALTH_POLL_S)
            try:
                h = await handle.client.health(timeout=max(5.0, HEALTH_POLL_S * 4))
                mark = (h.status, h.phase, h.progress)
            except errors.MullamaError:
                mark = last  # a busy runner answering slowly is not progress, nor proof of a stall
            if mark != last:
                last, since = mark, time.monotonic()
                if mark is not None:
                    rt.progress = mark[2]
            elif time.monotonic() - since > self.settings.load_timeout:
                log.error("load_stalled", model=rt.name, timeout_s=self.settings.load_timeout, last=str(last))
                handle.stalled = True
                await handle.kill()
                return

    async def _watch(self, rt: Runtime, handle: Handle) -> None:
        code = await handle.exited
        if handle.stopping or rt.handle is not handle:
            return
        rt.handle = None
        if rt.state in (State.LOADING, State.WARMING):
            return  # the load itself reports the failure
        self._cancel_expiry(rt)
        rt.crashes += 1
        recent = sum(1 for c in rt.loads if c.get("crash") and time.time() - c["at"] < 300) + 1
        rt.restart_at = time.monotonic() + crash_backoff(recent)
        rt.error = f"runner exited with code {code} while serving"
        lost = rt.in_flight + rt.lost  # still held, plus those whose broken stream ended before we saw the exit
        rt.loads.append({"at": time.time(), "crash": True, "code": code, "in_flight": lost,
                         "stderr_tail": list(handle.tail)[-5:]})
        rt.transition(State.FAILED, error=rt.error, crash=True)
        self.counters["runner_crashes"] += 1
        self._emit("runner_crashed", model=rt.name, code=code, in_flight=lost)

    async def _discard(self, rt: Runtime) -> None:
        handle, rt.handle = rt.handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                await handle.kill()
        rt.placement, rt.devices, rt.memory = None, [], 0

    # ------------------------------------------------------------------ memory

    def loaded(self) -> list[Runtime]:
        return [rt for rt in self.runtimes.values() if rt.handle is not None or rt.state is State.READY]

    def used_memory(self, exclude: Runtime | None = None) -> int:
        return sum(rt.memory for rt in self.loaded() if rt is not exclude)

    def pick_victim(self, exclude: Runtime, protect: frozenset[str] = frozenset()) -> Runtime | None:
        """Least recently used loaded model that is not pinned (nor protected); idle ones before busy ones."""
        candidates = [rt for rt in self.runtimes.values()
                      if rt is not exclude and rt.state is State.READY and not rt.config.pinned
                      and rt.name not in protect]
        if not candidates:
            return None
        return min(candidates, key=lambda rt: (rt.in_flight > 0, rt.last_used))

    async def _make_room(self, rt: Runtime, cost, protect: frozenset[str] = frozenset()) -> Placement:
        s, cfg = self.settings, rt.config
        while True:
            victim = self.pick_victim(rt, protect)
            if s.max_loaded_models and len([r for r in self.loaded() if r is not rt]) >= s.max_loaded_models:
                if victim is None:
                    raise errors.NoFit(f"{rt.name}: {s.max_loaded_models} models are loaded (max_loaded_models) "
                                       "and none can be evicted (pinned or protected)")
                await self._evict(victim, rt, "max_loaded_models")
                continue
            try:
                placement = plan(cost, self._probe(), n_gpu_layers=cfg.n_gpu_layers, tensor_split=cfg.tensor_split,
                                 require_full=cfg.require_full, model=rt.name)
            except errors.NoFit:
                if victim is None:
                    if await self._wait_for_unloads(rt):
                        continue
                    raise
                await self._evict(victim, rt, "memory")
                continue
            if s.memory_budget is not None:
                need, used = placement.total_bytes(), self.used_memory(exclude=rt)
                if need > s.memory_budget:
                    from mullama.units import format_size
                    raise errors.NoFit(f"{rt.name} needs {format_size(need)}, more than the whole memory budget "
                                       f"({format_size(s.memory_budget)})")
                if used + need > s.memory_budget:
                    if victim is None and await self._wait_for_unloads(rt):
                        continue
                    if victim is None:
                        raise errors.NoFit(f"{rt.name} needs {need} bytes; {used} of the {s.memory_budget}-byte "
                                           "budget are held by models that cannot be evicted")
                    await self._evict(victim, rt, "memory_budget")
                    continue
            return placement

    async def _wait_for_unloads(self, rt: Runtime) -> bool:
        """Wait while another model drains or unloads (its memory is about to be free); False if none does."""
        leaving = [r for r in self.runtimes.values()
                   if r is not rt and r.state in (State.DRAINING, State.UNLOADING)]
        if not leaving:
            return False
        log.info("waiting_for_unload", model=rt.name, leaving=[r.name for r in leaving])
        deadline = time.monotonic() + self.settings.drain_timeout + 30.0
        while any(r.state in (State.DRAINING, State.UNLOADING) for r in leaving):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _evict(self, victim: Runtime, for_rt: Runtime, why: str) -> None:
        log.info("evict", model=victim.name, for_model=for_rt.name, why=why, in_flight=victim.in_flight)
        self.counters["evictions"] += 1
        self._emit("model_evicted", model=victim.name, for_model=for_rt.name, reason=why)
        await self.unload(victim, reason=f"evicted:{why}")

    # ------------------------------------------------------------------ unloading

    @staticmethod
    async def _until_unloaded(rt: Runtime) -> None:
        while rt.state in (State.DRAINING, State.UNLOADING):
            await asyncio.sleep(0.05)

    async def unload(self, rt: Runtime, *, reason: str = "request", drain_timeout: float | None = None) -> None:
        """Drain (wait for in-flight requests, cancel them after the drain timeout), then stop the runner."""
        if rt.state in (State.DRAINING, State.UNLOADING):
            await self._until_unloaded(rt)  # someone else is unloading it already
            return
        if rt.handle is None and rt.state is not State.READY:
            return
        self._cancel_expiry(rt)
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        t0 = time.perf_counter()
        rt.transition(State.DRAINING, reason=reason, in_flight=rt.in_flight)
        try:
            await asyncio.wait_for(rt.idle.wait(), timeout)
        except TimeoutError:
            log.warning("drain_timeout", model=rt.name, in_flight=rt.in_flight)
        rt.transition(State.UNLOADING, reason=reason)
        handle, rt.handle = rt.handle, None
        if handle is not None:
            if rt.in_flight:
                rt.drain_killed = rt.in_flight
                await handle.kill()  # the drain timed out: the remaining streams end with an error
            else:
                await handle.stop(5.0)
        rt.placement, rt.devices, rt.memory, rt.progress = None, [], 0, 0.0
        rt.transition(State.UNLOADED, reason=reason, unload_ms=round((time.perf_counter() - t0) * 1000, 1))
        self.counters["unloads"] += 1
        self._emit("model_unloaded", model=rt.name, reason=reason)

    async def shutdown(self) -> None:
        """Refuse new work, let running requests finish (drain timeout), stop every runner."""
        self.closing = True
        for rt in self.runtimes.values():
            self._cancel_expiry(rt)
        await asyncio.gather(*(self.unload(rt, reason="shutdown") for rt in list(self.runtimes.values())),
                             return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
