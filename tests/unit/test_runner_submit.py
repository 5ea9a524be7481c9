"""A completion whose submit runs in a thread (a grammar to compile, a long prompt) and whose client
leaves meanwhile is not left running in the C++ loop (issue 16): it is cancelled there once handed in."""

from __future__ import annotations

import asyncio
import threading
import time

from mullama.runner.service import RunnerService


class SlowBatcher:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.submitted, self.cancelled = seconds, [], []
        self.lock = threading.Lock()

    def submit(self, rid, tokens, params, limit, group) -> None:
        time.sleep(self.seconds)  # compiling a big grammar, on the worker thread
        with self.lock:
            self.submitted.append(rid)

    def cancel(self, rid) -> bool:
        self.cancelled.append(rid)
        return True


async def test_a_submit_abandoned_while_in_its_thread_is_cancelled_once_handed_in() -> None:
    batcher = SlowBatcher(0.3)
    task = asyncio.ensure_future(RunnerService._submit_in_thread(batcher, "r1", [1, 2], None, 64, ""))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert batcher.cancelled == []  # not yet handed in: nothing to cancel yet
    for _ in range(100):
        if batcher.cancelled:
            break
        await asyncio.sleep(0.02)
    assert batcher.submitted == ["r1"] and batcher.cancelled == ["r1"]


async def test_a_submit_that_completes_is_not_cancelled() -> None:
    batcher = SlowBatcher(0.05)
    await RunnerService._submit_in_thread(batcher, "r2", [1], None, 64, "")
    await asyncio.sleep(0.05)
    assert batcher.submitted == ["r2"] and batcher.cancelled == []
