"""The records the lifecycle keeps per model: its state, its runner handle, its history.

``State`` is the per-model state machine's alphabet; ``Runtime`` is one
model's serving state (what ``/api/ps`` and ``/internal/models`` show);
``Lease`` is one request's hold on a ready runner; ``Handle`` is what the
lifecycle needs of a started runner (``RunnerProcess`` in production, a
recording fake in tests).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from mullama import wire
from mullama.config import RunnerConfig
from mullama.hardware.cores import Allotment
from mullama.hardware.placement import Placement
from mullama.models.entry import ModelEntry

HISTORY = 64


class State(StrEnum):
    DISCOVERED = "discovered"
    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    DRAINING = "draining"
    UNLOADING = "unloading"
    UNLOADED = "unloaded"
    FAILED = "failed"


class RunnerApi(Protocol):
    """What serving calls on one runner (``runners.client.RunnerClient``; a recording fake in tests)."""

    broken: bool                          # a completion stream broke off: the runner is most likely gone

    async def health(self, timeout: float = 5.0) -> wire.Health: ...
    async def load(self, params: wire.LoadParams, timeout: float | None = None) -> wire.LoadResult: ...
    async def completion(self, req: wire.CompletionRequest) -> Any: ...
    async def embedding(self, inputs: str | list[str]) -> wire.EmbeddingResult: ...
    async def count(self, req: wire.CompletionRequest) -> int: ...
    async def control(self, op: str, rid: str) -> bool: ...
    async def kv(self, timeout: float = 30.0) -> wire.KvView: ...
    async def stats(self) -> wire.StatsView: ...
    async def set_cpu(self, allotment: wire.CpuAllotment) -> wire.CpuAllotment: ...
    async def cache_ram(self, limit: int | None = None) -> wire.CacheRam: ...
    async def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...
    async def detokenize(self, tokens: list[int]) -> str: ...


class Handle(Protocol):
    """What the lifecycle needs of a started runner."""

    pid: int
    port: int
    exited: asyncio.Future[int]
    tail: collections.deque[str]
    stalled: str                          # why the lifecycle killed it (its load stopped moving, it froze); "": not

    @property
    def stopping(self) -> bool: ...
    @property
    def client(self) -> RunnerApi: ...
    async def stop(self, drain_timeout: float) -> int: ...
    async def kill(self) -> int: ...


@dataclass
class Runtime:
    """One model's serving state (what /api/ps and /internal/models show)."""

    entry: ModelEntry
    config: RunnerConfig
    state: State = State.DISCOVERED
    handle: Handle | None = None
    placement: Placement | None = None
    cpu: Allotment | None = None           # its cores and decode threads (serving/cores.py); None: not allotted
    cache_ram: int | None = None           # its limit for parked prefix caches (serving/cache_ram.py); None: none given
    devices: list[wire.DeviceMemory] = field(default_factory=list)
    memory: int = 0
    n_ctx: int = 0
    progress: float = 0.0
    in_flight: int = 0
    waiting: int = 0                       # requests waiting for this model's load
    drain_killed: int = 0                  # requests still running when the last drain timed out
    lost: int = 0                          # requests released after their runner's stream broke off
    keep_alive: float = 300.0
    last_used: float = 0.0                 # monotonic
    expires_at: float | None = None        # wall clock; None: never (or while in use)
    error: str | None = None
    pin: bool | None = None                # pinned or unpinned at run time; None: as configured
    crashes: int = 0
    restart_at: float = 0.0                # monotonic; a crashed runner restarts no earlier
    load_task: asyncio.Task | None = None
    expiry: asyncio.TimerHandle | None = None
    history: collections.deque = field(default_factory=lambda: collections.deque(maxlen=HISTORY))
    loads: collections.deque = field(default_factory=lambda: collections.deque(maxlen=HISTORY))
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def pinned(self) -> bool:
        """Never evicted, never expired: set at run time (``pin``), else as configured."""
        return self.config.pinned if self.pin is None else self.pin

    @property
    def serving(self) -> bool:
        return self.state is State.READY and self.handle is not None

    def transition(self, state: State, **detail: Any) -> None:
        self.state = state
        self.history.append({"state": str(state), "at": time.time(), "mono": time.monotonic(), **detail})
        self.changed()

    def changed(self) -> None:
        """Wake everyone in ``wait_until`` to look again (a transition does this itself)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Return once ``done()`` holds, looking again after each change; TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while not done():
                await self._changed.wait()


@dataclass
class Lease:
    """One request's hold on a ready runner; give it back with ``Lifecycle.release``."""

    runtime: Runtime
    handle: Handle
    load_wait_ms: float
    released: bool = False

    @property
    def client(self) -> RunnerApi:
        return self.handle.client
