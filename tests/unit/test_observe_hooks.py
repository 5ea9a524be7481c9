"""Observer: hooks (sync and async, timeouts, errors, registration)."""

from __future__ import annotations

import asyncio
import threading

import observe_checks
import pytest
import structlog
from observe_checks import LIVENESS_S, sample, until

from mullama.observe.events import Observer

observer = observe_checks.observer  # the fixture: a started Observer


# ---------------------------------------------------------------------- hooks


async def test_sync_and_async_hooks_run_in_order(observer: Observer) -> None:
    calls: list[tuple[str, str]] = []

    def sync_a(record: dict) -> None:
        calls.append(("a", record["event"]))

    async def async_b(record: dict) -> None:
        await asyncio.sleep(0)
        calls.append(("b", record["event"]))

    class SyncC:
        def __call__(self, record: dict) -> None:
            calls.append(("c", record["event"]))

    observer.hooks.register("model_loading", sync_a)
    observer.hooks.register("*", async_b)
    observer.hooks.register("model_loading", SyncC())
    for kind in ("model_loading", "model_unloaded", "model_loading"):
        observer.emit(kind, model="m")
    await until(lambda: len(calls) == 7, "seven hook calls")
    assert calls == [("a", "model_loading"), ("b", "model_loading"), ("c", "model_loading"),
                     ("b", "model_unloaded"),
                     ("a", "model_loading"), ("b", "model_loading"), ("c", "model_loading")]
    assert observer.hooks.errors == 0


async def test_async_callable_object_is_awaited(observer: Observer) -> None:
    seen: list[str] = []

    class Hook:
        async def __call__(self, record: dict) -> None:
            seen.append(record["event"])

    observer.hooks.register("resumed", Hook())
    observer.emit("resumed")
    await until(lambda: seen == ["resumed"], "the async callable ran")
    assert observer.hooks.errors == 0


async def test_sync_hook_returning_an_awaitable_is_awaited(observer: Observer) -> None:
    seen: list[str] = []

    async def later(record: dict) -> None:
        seen.append(record["event"])

    observer.hooks.register("resumed", lambda r: later(r))
    observer.emit("resumed")
    await until(lambda: seen == ["resumed"], "the returned coroutine ran")


async def test_stop_is_bounded_when_hooks_are_stuck() -> None:
    obs = Observer(hook_timeout=3600, process_metrics=False)
    started = asyncio.Event()

    async def stuck(record: dict) -> None:
        started.set()
        await asyncio.sleep(3600)

    obs.hooks.register("*", stuck)
    await obs.start()
    for _ in range(3):
        obs.emit("dispatched")
    await asyncio.wait_for(started.wait(), LIVENESS_S)
    await asyncio.wait_for(obs.stop(timeout=0.05), LIVENESS_S)
    obs.emit("dispatched")  # after stop: not queued for hooks, no error
    assert obs.recent()[-1]["event"] == "dispatched"


async def test_slow_async_hook_is_abandoned_and_later_events_flow(observer: Observer) -> None:
    later: list[int] = []
    started = asyncio.Event()

    async def stuck(record: dict) -> None:
        started.set()
        await asyncio.sleep(3600)

    observer.hooks.register("first_token", stuck)
    observer.hooks.register("first_token", lambda r: later.append(r["i"]))
    with structlog.testing.capture_logs() as logs:
        observer.hooks._log = structlog.get_logger("mullama.hooks")
        observer.emit("first_token", i=1)
        observer.emit("first_token", i=2)
        assert later == [] and not started.is_set()  # emit only enqueued
        await until(lambda: later == [1, 2], "later hooks and events despite the stuck one")
    assert observer.hooks.errors == 2
    assert sample(observer.metrics, "mullama_hook_errors_total", reason="timeout") == 2
    assert [(e["event"], e["reason"]) for e in logs] == [("hook_failed", "timeout")] * 2


async def test_slow_sync_hook_does_not_hold_later_sync_hooks(observer: Observer) -> None:
    release = threading.Event()
    later: list[int] = []
    observer.hooks.register("finished", lambda r: release.wait(LIVENESS_S))
    observer.hooks.register("*", lambda r: later.append(r["i"]))
    try:
        observer.emit("finished", i=1)
        observer.emit("finished", i=2)
        await until(lambda: later == [1, 2], "sync hooks on a fresh thread")
        assert not release.is_set()  # the first hook is still stuck in its thread
        assert sample(observer.metrics, "mullama_hook_errors_total", reason="timeout") == 2
    finally:
        release.set()


async def test_raising_hook_is_counted_and_others_still_run(observer: Observer) -> None:
    seen: list[str] = []

    def bad(record: dict) -> None:
        raise ValueError("hook bug")

    async def bad_async(record: dict) -> None:
        raise KeyError("async hook bug")

    observer.hooks.register("*", bad)
    observer.hooks.register("*", bad_async)
    observer.hooks.register("*", lambda r: seen.append(r["event"]))
    with structlog.testing.capture_logs() as logs:
        observer.hooks._log = structlog.get_logger("mullama.hooks")
        observer.emit("runner_crashed", model="m", code=-9)
        observer.emit("model_evicted", model="m")
        await until(lambda: len(seen) == 2, "the good hook for both events")
    assert seen == ["runner_crashed", "model_evicted"]
    assert sample(observer.metrics, "mullama_hook_errors_total", reason="exception") == 4
    errors = [e["error"] for e in logs if e["event"] == "hook_failed"]
    assert errors[:2] == ["ValueError: hook bug", "KeyError: 'async hook bug'"]


async def test_hooks_get_their_own_copy(observer: Observer) -> None:
    seen: list[dict] = []

    def meddle(record: dict) -> None:
        record["model"] = "changed"

    observer.hooks.register("*", meddle)
    observer.hooks.register("*", seen.append)
    observer.emit("model_ready", model="m")
    await until(lambda: len(seen) == 1, "the second hook")
    assert seen[0]["model"] == "m" and observer.recent()[0]["model"] == "m"


async def test_unregister_and_wildcard(observer: Observer) -> None:
    exact: list[str] = []
    every: list[str] = []
    done: list[str] = []
    off = observer.hooks.register("preempted", lambda r: exact.append(r["event"]))
    observer.hooks.register("*", lambda r: every.append(r["event"]))
    observer.emit("preempted")
    observer.emit("scheduler_changed", scheduler="fifo")
    observer.hooks.register("sentinel", lambda r: done.append("1"))
    observer.emit("sentinel")
    await until(lambda: done, "first round")
    off()
    off()  # idempotent
    observer.emit("preempted")
    observer.emit("sentinel")
    await until(lambda: len(done) == 2, "second round")
    assert exact == ["preempted"]
    assert every == ["preempted", "scheduler_changed", "sentinel", "preempted", "sentinel"]
    assert observer.hooks.wants("preempted")  # still wanted by "*"


async def test_too_many_pending_events_drop_the_oldest() -> None:
    obs = Observer(max_pending=3, process_metrics=False)
    seen: list[int] = []
    obs.hooks.register("request_queued", lambda r: seen.append(r["i"]))
    for i in range(5):
        obs.emit("request_queued", i=i)   # not started: they wait
    obs.emit("unwatched")                  # no hook wants it: not queued at all
    await obs.start()
    await obs.stop()                       # delivers what is pending
    assert seen == [2, 3, 4]
    assert obs.hooks.dropped == 2
    assert sample(obs.metrics, "mullama_hook_events_dropped_total") == 2


@pytest.mark.parametrize(("event", "callback", "error"), [
    ("", print, ValueError),
    (None, print, ValueError),
    ("finished", "not callable", TypeError),
])
def test_register_rejects_bad_arguments(event, callback, error) -> None:
    with pytest.raises(error):
        Observer(process_metrics=False).hooks.register(event, callback)


@pytest.mark.parametrize("kwargs", [{"hook_timeout": 0}, {"hook_timeout": -1.0}, {"max_pending": 0}])
def test_observer_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Observer(**kwargs)
