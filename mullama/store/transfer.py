"""One file being downloaded, shared by every pull that needs it: progress to each listener, throttled
``pull_progress`` events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mullama.store import download

Emit = Callable[..., None]
PROGRESS_S = 0.1   # at most this often to each caller (the final value always)
EVENT_S = 0.5      # at most this often as a pull_progress event


class Transfer:
    """One file being downloaded; every pull that needs it listens to it."""

    def __init__(self, job: download.FileJob, model: str, emit: Emit | None) -> None:
        self.job, self.model, self.emit = job, model, emit
        self.completed = 0
        self.listeners: set[Callable[[int, int], None]] = set()
        self.task: asyncio.Task[str] | None = None
        self._told = self._evented = 0.0

    def on_bytes(self, n: int) -> None:
        self.completed = n
        now = time.monotonic()
        final = n >= self.job.size
        if final or now - self._told >= PROGRESS_S:
            self._told = now
            for listener in list(self.listeners):
                listener(n, self.job.size)
        if self.emit is not None and (final or now - self._evented >= EVENT_S):
            self._evented = now
            self.emit("pull_progress", model=self.model, file=self.job.dest.name,
                      digest=f"sha256:{self.job.sha256}" if self.job.sha256 else None,
                      completed=n, total=self.job.size)
