"""Events of the supervisor: the ``Observer`` that fans them out to hooks, live subscribers and the event log.

One ``Observer`` per supervisor. ``emit(kind, **fields)`` is the only entry point for
events and is built to sit on the serving path: it builds one record, appends it to a
few bounded queues and returns; it never blocks and never raises. Everything slow
happens elsewhere:

- ``Hooks`` (``hooks.py``): user callbacks, delivered in order by one dispatcher task, each
  bounded by ``hook_timeout``; a failing or slow hook is logged and counted, never felt by serving.
- ``Subscription``: a live feed (GET /internal/events); a slow reader loses its oldest records.
- ``EventLog``: an opt-in JSONL file written by a background thread, flushed every 0.5 s.
- ``Metrics`` (``metrics.py``): Prometheus series, fed by events and by ``request_done``.
- ``Series`` (``series.py``): second-by-second samples for charts (``GET /internal/stats``).

``profiles.build_profile`` turns a runner's ``CompletionStats`` plus the supervisor's own timings
into the X-Profile object. docs/observability.md describes every field and event.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec
import structlog

from mullama.observe.hooks import Hooks, Record
from mullama.observe.metrics import Metrics
from mullama.observe.series import Series

__all__ = ["EVENTS", "EventLog", "Hooks", "Metrics", "Observer", "Subscription"]

EVENTS = ("request_queued", "dispatched", "first_token", "finished", "preempted", "resumed",
          "model_loading", "model_ready", "model_evicted", "runner_crashed")
RESERVED = ("event", "mono", "time")
RECENT = 1000                 # records kept for recent()
LOG_MAX_PENDING = 100_000     # records waiting for the event-log writer before the oldest are dropped
LOG_FLUSH_S = 0.5


class Subscription:
    """A live feed of records: ``async for record in sub``; ``sub.close()`` ends it.

    Bounded: when ``maxsize`` records wait, the oldest is dropped and counted in ``dropped``,
    so a slow reader never holds up ``emit``. Use from the observer's event loop.
    """

    def __init__(self, maxsize: int, on_close: Callable[[Subscription], None]) -> None:
        if maxsize < 1:
            raise ValueError(f"subscription maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.dropped = 0
        self.closed = False
        self._items: collections.deque[Record] = collections.deque()
        self._wake = asyncio.Event()
        self._on_close = on_close

    def put(self, record: Record) -> bool:
        """Queue a record; False when the oldest one had to make room."""
        if self.closed:
            return True
        kept = True
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
            kept = False
        self._items.append(record)
        self._wake.set()
        return kept

    async def get(self, timeout: float | None = None) -> Record | None:
        """The next record; None after ``timeout`` seconds without one, or once closed."""
        while not self._items:
            if self.closed:
                return None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        return None if self.closed else self._items.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Record:
        record = await self.get()
        if record is None:
            raise StopAsyncIteration
        return record

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._items.clear()
            self._wake.set()
            self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """Opt-in JSONL event log, one record per line, appended by a background thread.

    ``emit`` only appends to a deque; the thread encodes, writes and flushes every
    ``LOG_FLUSH_S`` seconds and once more on stop. A failing open or write is logged
    once and turns the log off; serving goes on.
    """

    def __init__(self, path: Path, metrics: Metrics) -> None:
        self.path = path
        self.error: str | None = None   # why the log was turned off, once it was
        self.closed = False
        self.written = 0
        self._metrics = metrics
        self._log = structlog.get_logger("mullama.observe")
        self._pending: collections.deque[Record] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    @property
    def enabled(self) -> bool:
        """Records are being accepted: not failed, not stopped (records emitted before start are kept)."""
        return self.error is None and not self.closed

    def append(self, record: Record) -> None:
        if not self.enabled:
            return
        if len(self._pending) >= LOG_MAX_PENDING:
            self._pending.popleft()
            self._metrics.event_log_dropped.inc()
        self._pending.append(record)

    def start(self) -> None:
        if self.error is not None or self._thread is not None:
            return
        self.closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 (the writer thread owns and closes it)
        except OSError as exc:
            self._disable("open", exc)
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mullama-event-log", daemon=True)
        self._thread.start()

    async def stop(self, timeout: float) -> None:
        """Write what is pending, flush and close; gives up waiting after ``timeout`` seconds."""
        self.closed = True
        thread, self._thread = self._thread, None
        if thread is None:
            self._pending.clear()
            return
        self._stop.set()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, timeout)
        if thread.is_alive():
            self._log.warning("event_log_stop_timeout", path=str(self.path), timeout_s=timeout)

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.wait(LOG_FLUSH_S)
                self._drain()
                if stopping or self.error is not None:
                    return
        finally:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    self._disable("close", exc)
                self._file = None

    def _drain(self) -> None:
        if not self._pending or self._file is None:
            return
        lines = []
        while self._pending:
            try:
                record = self._pending.popleft()
            except IndexError:
                break
            lines.append(self._line(record))
        try:
            self._file.write(b"".join(lines))
            self._file.flush()
        except OSError as exc:
            self._disable("write", exc)
            return
        self.written += len(lines)

    def _line(self, record: Record) -> bytes:
        try:
            return self._encoder.encode(record) + b"\n"
        except Exception as exc:  # a field whose str() raises: keep the envelope, say why the rest is missing
            head = {k: record.get(k) for k in RESERVED}
            return self._encoder.encode({**head, "encode_error": f"{type(exc).__name__}: {exc}"}) + b"\n"

    def _disable(self, op: str, exc: OSError) -> None:
        if self.error is None:
            self.error = f"{op}: {exc}"
            self._pending.clear()
            self._log.error("event_log_disabled", path=str(self.path), op=op, error=str(exc),
                            detail="event log turned off; serving goes on")


class Observer:
    """Events, hooks, subscribers, event log and metrics of one supervisor (see the module docstring)."""

    def __init__(self, *, event_log: Path | None = None, hook_timeout: float = 1.0, max_pending: int = 10000,
                 recent: int = RECENT, process_metrics: bool = True) -> None:
        self.metrics = Metrics(process=process_metrics)
        self.series = Series()
        self.hooks = Hooks(self.metrics, timeout=hook_timeout, max_pending=max_pending)
        self.event_log = EventLog(Path(event_log), self.metrics) if event_log is not None else None
        self.emitted = 0
        self._log = structlog.get_logger("mullama.observe")
        self._recent: collections.deque[Record] = collections.deque(maxlen=max(1, recent))
        self._subscribers: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None

    def request_done(self, model: str, profile: dict[str, Any], finish_reason: str) -> None:
        """A request that reached the runner's final message: metrics and the series (``Metrics.request_done``)."""
        self.metrics.request_done(model, profile, finish_reason)
        self.series.request_done(time.monotonic(), profile)

    @property
    def event_log_enabled(self) -> bool:
        return self.event_log is not None and self.event_log.enabled

    def emit(self, kind: str, /, **fields: Any) -> None:
        """Record one event: ring buffer, subscribers, hooks, event log, metrics. Never blocks, never raises.

        Fields named ``event``, ``mono`` or ``time`` are ignored (the envelope owns them). Safe from
        another thread once started: the fan-out then runs on the observer's loop.
        """
        try:
            mono = time.monotonic()
            wall = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            record: Record = {"event": kind, "mono": mono, "time": wall, **fields}
            if len(record) != 3 + len(fields):  # a field tried to replace the envelope
                record.update(event=kind, mono=mono, time=wall)
            if self._loop is not None and threading.get_ident() != self._thread_id:
                self._loop.call_soon_threadsafe(self._fan_out, record)
            else:
                self._fan_out(record)
        except Exception:  # an observer bug must not fail a request
            with contextlib.suppress(Exception):
                self._log.exception("emit_failed", kind=kind)

    def _fan_out(self, record: Record) -> None:
        self.emitted += 1
        self._recent.append(record)
        for sub in self._subscribers:
            if not sub.put(record):
                self.metrics.subscriber_dropped.inc()
        self.hooks.enqueue(record)
        if self.event_log is not None:
            self.event_log.append(record)
        self.metrics.on_event(record)

    async def start(self) -> None:
        """Start the hook dispatcher and the event-log writer (emits before this are kept and delivered)."""
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self.hooks.start()
        if self.event_log is not None:
            self.event_log.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver pending hooks, write and close the event log (``timeout`` s in all, then give up); end
        subscriptions. Events emitted afterwards still reach ``recent()`` and the metrics."""
        deadline = time.monotonic() + timeout
        await self.hooks.stop(timeout)
        if self.event_log is not None:
            await self.event_log.stop(max(0.1, deadline - time.monotonic()))
        for sub in list(self._subscribers):
            sub.close()
        self._loop = self._thread_id = None

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        """A live feed of every record emitted from now on (GET /internal/events)."""
        sub = Subscription(maxsize, self._subscribers.remove)
        self._subscribers.append(sub)
        return sub

    def recent(self, n: int = 100) -> list[Record]:
        """The last ``n`` records, oldest first (copies)."""
        if n <= 0:
            return []
        items = list(self._recent)[-n:]
        return [dict(r) for r in items]
