"""The machine's CPU during a run, sampled once a second: what the run itself used (the servers under test
and this client) and what every other process did, so that noise shows next to the results."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import psutil

from mullama.bench.report import percentile


class CpuSampler:
    """Samples between ``start()`` and ``stop()``; ``samples`` then holds
    {at (wall s), ours, other} in % of all cores. ``pids_of()``: the processes under test now (they change
    as runners start and stop); their children count too."""

    def __init__(self, pids_of: Callable[[], list[int]], interval: float = 1.0) -> None:
        self._pids_of, self.interval = pids_of, interval
        self.samples: list[dict[str, Any]] = []
        self._procs: dict[int, psutil.Process] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        psutil.cpu_percent(None)
        self._ours()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            machine = psutil.cpu_percent(None)
            ours = min(machine, self._ours())
            self.samples.append({"at": round(time.time(), 3), "ours": round(ours, 1),
                                 "other": round(max(0.0, machine - ours), 1)})

    def _ours(self) -> float:
        """CPU % (of all cores) of this process, the processes under test and their children since the last call."""
        roots = {os.getpid(), *self._pids_of()}
        pids = set(roots)
        for pid in roots:
            with contextlib.suppress(psutil.Error):
                pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        total = 0.0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)  # the first reading only starts the count
                    continue
                total += proc.cpu_percent(None)
            except psutil.Error:
                self._procs.pop(pid, None)
        return total / (psutil.cpu_count() or 1)

    def summary(self) -> dict[str, float | None]:
        ours = [s["ours"] for s in self.samples]
        other = [s["other"] for s in self.samples]
        return {"samples": len(self.samples), "ours_p50": percentile(ours, 50), "other_p50": percentile(other, 50),
                "other_p95": percentile(other, 95), "other_max": max(other, default=None)}
