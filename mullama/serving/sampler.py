"""The sampler behind ``GET /internal/stats``: once a second, what serving looks like, into a ``Series``.

It reads the scheduler's queue, each loaded model's memory, and each serving runner's token counters
(``GET /stats`` on the runner, half a second at most: a runner that does not answer in time is left
out of that sample and its tokens show up in the next one). One small request per runner per second;
nothing on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from mullama.observe.series import Series
from mullama.serving.lifecycle import Lifecycle
from mullama.serving.runtime import Runtime
from mullama.serving.scheduler import Scheduler

log = structlog.get_logger("mullama.sampler")

STATS_TIMEOUT_S = 0.5


async def _counters(rt: Runtime) -> tuple[int, int] | None:
    try:
        stats = await asyncio.wait_for(rt.handle.client.stats(), STATS_TIMEOUT_S)  # type: ignore[union-attr]
    except Exception:  # gone, frozen, restarting: no counters this time
        return None
    return stats.counters.tokens_in, stats.counters.tokens_out


class Sampler:
    def __init__(self, series: Series, lifecycle: Lifecycle, scheduler: Scheduler) -> None:
        self.series = series
        self.lifecycle = lifecycle
        self.scheduler = scheduler
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mullama-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def tick(self) -> dict:
        serving = self.lifecycle.serving()
        counts = await asyncio.gather(*(_counters(rt) for rt in serving))
        names = {rt.name for rt in serving}
        for rt in self.lifecycle.all():
            if rt.name not in names:
                self.series.forget(rt.name)
        return self.series.sample(
            time.time(), time.monotonic(),
            running=sum(self.scheduler.running().values()), waiting=sum(self.scheduler.waiting().values()),
            memory={rt.name: rt.memory for rt in self.lifecycle.all() if rt.handle is not None and rt.memory},
            counters={rt.name: c for rt, c in zip(serving, counts) if c is not None})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.series.interval)
            try:
                await self.tick()
            except Exception:  # a sampler bug must not stop serving, nor the next sample
                log.exception("sample_failed")
