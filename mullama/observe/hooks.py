"""User callbacks on supervisor events: ``Hooks`` (the registry and its dispatcher task) and the
worker thread that runs sync hooks.

``Observer.emit`` (``observe.py``) hands each record to ``Hooks.enqueue``, which only appends to a
bounded queue; one dispatcher task delivers records in order, each hook bounded by a timeout, so a
failing or slow hook is logged and counted, never felt by serving. Also holds ``Record``, the event
record type every observer part shares. Re-exported from ``mullama.observe``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import importlib
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from mullama.observe.metrics import Metrics

Record = dict[str, Any]
Hook = Callable[[Record], Any | Awaitable[Any]]


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _quiet(fut: asyncio.Future) -> None:
    """Retrieve an abandoned hook's outcome: no "exception was never retrieved" noise."""
    if not fut.cancelled():
        fut.exception()


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


class _SyncWorker:
    """One daemon thread that runs sync hooks in order. Not a ThreadPoolExecutor: its threads are
    joined at interpreter exit, so a hook stuck forever would hang the supervisor's shutdown."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="mullama-hook", daemon=True).start()

    def submit(self, fn: Hook, record: Record) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fut, fn, record))
        return fut

    def close(self) -> None:
        self._jobs.put(None)  # the thread ends after the hook it is running, if any

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fut, fn, record = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(record))
                except BaseException as exc:  # handed to the dispatcher, which logs and counts it
                    fut.set_exception(exc)


class Hooks:
    """User callbacks on events: ``unregister = hooks.register("model_ready", fn)``; event "*" means all.

    ``fn(record)`` gets its own copy of the record. Async callbacks run on the event loop, sync
    ones in one worker thread (so they stay in order); either is abandoned after ``timeout``
    seconds (logged, counted in ``mullama_hook_errors_total{reason="timeout"}``) and dispatch goes
    on. A sync hook that times out keeps its thread; later sync hooks get a fresh one.
    Exceptions are logged and counted (``reason="exception"``), never propagated.
    """

    def __init__(self, metrics: Metrics, *, timeout: float = 1.0, max_pending: int = 10000) -> None:
        if timeout <= 0:
            raise ValueError(f"hook_timeout must be > 0, got {timeout}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.timeout = timeout
        self.max_pending = max_pending
        self.dropped = 0
        self.errors = 0
        self._metrics = metrics
        self._log = structlog.get_logger("mullama.hooks")
        self._hooks: list[tuple[str, Hook]] = []        # registration order
        self._wanted: collections.Counter[str] = collections.Counter()
        self._pending: collections.deque[Record] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._worker: _SyncWorker | None = None
        self._stray: set[asyncio.Task] = set()           # timed-out async hooks, cancelled, not awaited

    def register(self, event: str, callback: Hook) -> Callable[[], None]:
        """Call ``callback(record)`` on every ``event`` (a kind, or "*"); returns the unregister function."""
        if not isinstance(event, str) or not event:
            raise ValueError(f"hook event must be a non-empty string, got {event!r}")
        if not callable(callback):
            raise TypeError(f"hook callback must be callable, got {type(callback).__name__}")
        entry = (event, callback)
        self._hooks.append(entry)
        self._wanted[event] += 1

        def unregister() -> None:
            for i, e in enumerate(self._hooks):
                if e is entry:
                    del self._hooks[i]
                    self._wanted[event] -= 1
                    return

        return unregister

    def wants(self, kind: str) -> bool:
        return self._wanted[kind] > 0 or self._wanted["*"] > 0

    def enqueue(self, record: Record) -> None:
        if self._closing or not self.wants(record["event"]):
            return
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
            self._metrics.hook_dropped.inc()
            if self.dropped == 1:
                self._log.warning("hook_events_dropped", max_pending=self.max_pending,
                                  detail="hooks are slower than events arrive; the oldest are dropped")
        self._pending.append(record)
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._wake = asyncio.Event()  # a fresh one: a restart may be on another event loop
            self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mullama-hooks")

    async def stop(self, timeout: float) -> None:
        """Deliver what is pending for up to ``timeout`` seconds, then stop."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._pending.clear()
        for stray in list(self._stray):
            stray.cancel()
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    async def _run(self) -> None:
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            record = self._pending.popleft()
            kind = record["event"]
            for event, callback in list(self._hooks):
                if event == kind or event == "*":
                    await self._call(callback, record)

    async def _call(self, callback: Hook, record: Record) -> None:
        kind = record["event"]
        try:
            if _is_async(callback):
                result = callback(dict(record))
            else:
                if self._worker is None:
                    self._worker = _SyncWorker()
                fut = asyncio.wrap_future(self._worker.submit(callback, dict(record)))
                done, _ = await asyncio.wait({fut}, timeout=self.timeout)
                if not done:
                    # the thread is stuck in the hook: leave it, give later sync hooks a new one
                    self._worker.close()
                    self._worker = None
                    fut.add_done_callback(_quiet)
                    self._failed("timeout", kind, callback, f"took longer than {self.timeout:g} s")
                    return
                result = fut.result()
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                try:
                    done, _ = await asyncio.wait({task}, timeout=self.timeout)
                except asyncio.CancelledError:  # stop() gave up on the dispatcher: take the hook with it
                    task.cancel()
                    raise
                if not done:
                    task.cancel()
                    self._stray.add(task)
                    task.add_done_callback(self._stray_done)
                    self._failed("timeout", kind, callback, f"took longer than {self.timeout:g} s")
                    return
                task.result()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed("exception", kind, callback, f"{type(exc).__name__}: {exc}")

    def _stray_done(self, task: asyncio.Task) -> None:
        self._stray.discard(task)
        _quiet(task)

    def _failed(self, reason: str, kind: str, callback: Hook, error: str) -> None:
        self.errors += 1
        self._metrics.hook_errors.labels(reason).inc()
        self._log.warning("hook_failed", kind=kind, hook=_name(callback), reason=reason, error=error)


def install_hooks(spec: str, hooks: Hooks) -> None:
    """Import ``module:function`` (the ``hooks`` setting) and call it with the registry: it registers its
    callbacks. A broken hook module is reported and skipped; serving goes on."""
    module_name, _, attr = spec.partition(":")
    try:
        setup = getattr(importlib.import_module(module_name), attr)
        setup(hooks)
    except Exception as exc:
        _app_log.error("hooks_failed", spec=spec, error=f"{type(exc).__name__}: {exc}")
        return
    _app_log.info("hooks_installed", spec=spec)


_app_log = structlog.get_logger("mullama.app")  # where these lines were always logged
