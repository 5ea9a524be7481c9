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

from mullama.config import Settings, model_settings
from mullama.core import errors
from mullama.hardware.devices import Devices
from mullama.models.entry import ModelEntry
from mullama.serving.cache_ram import CacheRam
from mullama.serving.cores import Cores
from mullama.serving.loading import Launch, Loading, crash_backoff, load_params
from mullama.serving.runtime import Handle, Lease, Runtime, State
from mullama.serving.workers import Workers

Emit = Callable[..., None]

__all__ = ["Handle", "Launch", "Lease", "Lifecycle", "Runtime", "State", "crash_backoff", "load_params"]

log = structlog.get_logger("mullama.lifecycle")

BROKEN_EXIT_WAIT_S = 2.0


class Lifecycle(Loading):
    """Owns every model's ``Runtime``; used from one event loop."""

    def __init__(self, settings: Settings, launch: Launch, probe: Callable[[], Devices],
                 emit: Emit | None = None) -> None:
        self.settings = settings
        self._launch = launch
        self._probe = probe
        self._emit = emit or (lambda *a, **k: None)
        self.runtimes: dict[str, Runtime] = {}  # read it through get/all/serving/active outside serving/
        self._load_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.closing = False
        self.counters = collections.Counter()
        self.cores = Cores(settings, self._emit)
        self.cache_ram = CacheRam(settings, probe, self._emit)
        self.workers = Workers(settings)

    # ------------------------------------------------------------------ views

    def get(self, name: str) -> Runtime | None:
        return self.runtimes.get(name)

    def all(self) -> list[Runtime]:
        return list(self.runtimes.values())

    def serving(self) -> list[Runtime]:
        """Models ready with a live runner."""
        return [rt for rt in self.runtimes.values() if rt.serving]

    def active(self) -> list[Runtime]:
        """Models with a runner, or on their way in or out (what ``/api/ps`` lists)."""
        return [rt for rt in self.runtimes.values()
                if rt.handle is not None or rt.state in (State.LOADING, State.WARMING, State.READY, State.DRAINING)]

    def in_flight(self) -> int:
        """Requests holding a lease, over all models."""
        return sum(rt.in_flight for rt in self.runtimes.values())

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
                if rt.serving and rt.handle.client.broken:
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
        # the watcher runs on the exit's callbacks: give it its turn (it drops the handle and records the crash)
        with contextlib.suppress(TimeoutError):
            await rt.wait_until(lambda: rt.handle is not handle, timeout=1.0)

    def release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        rt = lease.runtime
        rt.in_flight -= 1
        if lease.handle is rt.handle and lease.handle.client.broken:
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

    def set_pinned(self, rt: Runtime, pinned: bool) -> None:
        """Pin (never evicted, no keep-alive expiry) or unpin a model at run time; an idle loaded model's
        keep-alive timer stops or starts again with it."""
        rt.pin = pinned
        self._emit("model_pinned", model=rt.name, pinned=pinned)
        if rt.serving and rt.in_flight == 0:
            self._schedule_expiry(rt)
        rt.changed()

    def _schedule_expiry(self, rt: Runtime) -> None:
        self._cancel_expiry(rt)
        if rt.pinned or rt.keep_alive < 0:
            rt.expires_at = None
            return
        rt.expires_at = time.time() + rt.keep_alive
        if rt.keep_alive == 0:
            self.spawn(self._expire(rt))
            return
        loop = asyncio.get_running_loop()
        rt.expiry = loop.call_later(rt.keep_alive, lambda: self.spawn(self._expire(rt)))

    def _cancel_expiry(self, rt: Runtime) -> None:
        if rt.expiry is not None:
            rt.expiry.cancel()
            rt.expiry = None
        rt.expires_at = None

    async def _expire(self, rt: Runtime) -> None:
        if rt.serving and rt.in_flight == 0 and rt.waiting == 0:
            await self.unload(rt, reason="keep_alive")

    def spawn(self, coro: Awaitable) -> asyncio.Task:
        """Run ``coro`` as a task the lifecycle owns (cancelled at shutdown)."""
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
            rt.load_task = self.spawn(self._load(rt, reason, protect))
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
            self.spawn(self._liveness(rt, rt.handle))
            self.spawn(self.cores.rebalance(self.active()))

    async def _liveness(self, rt: Runtime, handle: Handle) -> None:
        """While it serves, ask the runner's /health every ``runner_probe_interval``. Two answers missing
        for ``runner_probe_timeout`` mean the process is frozen (SIGSTOP, a hung process); an answer saying
        its decode loop has been in one pass for over ``runner_stall_timeout`` means the loop is stuck
        while its HTTP side still answers. Either way it is killed, so that its streams end with an error
        now and the next request starts a new one (``_watch`` records it)."""
        s = self.settings
        misses = 0
        while rt.handle is handle and not handle.exited.done():
            await asyncio.sleep(s.runner_probe_interval)
            if rt.handle is not handle or handle.exited.done() or handle.stopping:
                return
            why = ""
            try:
                health = await handle.client.health(timeout=s.runner_probe_timeout)
                misses = 0
                if health.loop_stalled_ms > s.runner_stall_timeout * 1000:
                    why = f"its decode loop made no progress for {health.loop_stalled_ms / 1000:.0f} s"
            except (errors.MullamaError, TimeoutError):
                misses += 1
                if misses >= 2:
                    why = f"no answer to /health for {s.runner_probe_timeout:g} s"
            if why and rt.handle is handle and not handle.exited.done():
                log.error("runner_unresponsive", model=rt.name, pid=handle.pid, reason=why, in_flight=rt.in_flight)
                self._emit("runner_unresponsive", model=rt.name, pid=handle.pid, reason=why, in_flight=rt.in_flight)
                handle.stalled = why
                await handle.kill()
                return

    async def _watch(self, rt: Runtime, handle: Handle) -> None:
        code = await handle.exited
        if (handle.stopping and not handle.stalled) or rt.handle is not handle:
            return
        rt.handle = None
        rt.changed()
        self._runner_left(rt)
        if rt.state in (State.LOADING, State.WARMING):
            return  # the load itself reports the failure
        self._cancel_expiry(rt)
        rt.crashes += 1
        recent = sum(1 for c in rt.loads if c.get("crash") and time.time() - c["at"] < 300) + 1
        rt.restart_at = time.monotonic() + crash_backoff(recent)
        rt.error = (f"the runner stopped responding ({handle.stalled}) and was killed" if handle.stalled
                    else f"runner exited with code {code} while serving")
        lost = rt.in_flight + rt.lost  # still held, plus those whose broken stream ended before we saw the exit
        rt.loads.append({"at": time.time(), "crash": True, "code": code, "in_flight": lost,
                         "stderr_tail": list(handle.tail)[-5:]})
        rt.transition(State.FAILED, error=rt.error, crash=True)
        self.counters["runner_crashes"] += 1
        gone = await self.workers.unreachable(rt.placement.rpc_servers) if rt.placement is not None else []
        if gone and rt.state is State.FAILED:  # ggml's RPC client aborts its process when a worker goes away
            rt.error = f"{rt.error}; RPC worker " + ", ".join(f"{w.endpoint} is unreachable ({w.error})" for w in gone)
        self._emit("runner_crashed", model=rt.name, code=code, in_flight=lost,
                   **({"rpc_unreachable": [w.endpoint for w in gone]} if gone else {}))

    async def _discard(self, rt: Runtime) -> None:
        handle, rt.handle = rt.handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                await handle.kill()
        rt.placement, rt.devices, rt.memory = None, [], 0
        self._runner_left(rt)

    def _runner_left(self, rt: Runtime) -> None:
        """A runner left: the others share its cores and its host memory for prefix caches."""
        rt.cpu = rt.cache_ram = None
        if not self.closing:
            self.spawn(self.cores.rebalance(self.active()))
            self.spawn(self.cache_ram.rebalance(self.loaded()))

    # ------------------------------------------------------------------ unloading

    @staticmethod
    async def _until_unloaded(rt: Runtime) -> None:
        await rt.wait_until(lambda: rt.state not in (State.DRAINING, State.UNLOADING))

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
        self._runner_left(rt)
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
