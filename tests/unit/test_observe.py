"""Observer: emit fan-out, subscribers, hooks, the event log, Prometheus metrics, X-Profile."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from mullama import protocol
from mullama.metrics import EVENT_COUNTERS, Metrics
from mullama.observe import EVENTS, Observer, build_profile

LIVENESS_S = 10.0  # an upper bound for "eventually", never a timing assertion


async def until(predicate, what: str = "condition") -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), LIVENESS_S)
    except TimeoutError:
        pytest.fail(f"{what} never happened")


@pytest.fixture
async def observer():
    obs = Observer(hook_timeout=0.05, process_metrics=False)
    await obs.start()
    yield obs
    await obs.stop(timeout=1.0)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# ---------------------------------------------------------------------- emit


async def test_emit_fans_out_to_every_consumer(tmp_path: Path) -> None:
    obs = Observer(event_log=tmp_path / "events.jsonl", process_metrics=False)
    seen: list[dict] = []
    obs.hooks.register("model_ready", seen.append)
    sub = obs.subscribe()
    await obs.start()
    obs.emit("model_ready", model="m", load_ms=1500.0)
    got = await sub.get(timeout=LIVENESS_S)
    await obs.stop()
    assert got["event"] == "model_ready" and got["model"] == "m" and got["load_ms"] == 1500.0
    assert seen == [got]
    assert obs.recent() == [got]
    assert [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()] == [got]
    assert sample(obs.metrics, "mullama_events_total", event="model_ready") == 1
    assert sample(obs.metrics, "mullama_load_duration_seconds_count", model="m") == 1
    assert sample(obs.metrics, "mullama_load_duration_seconds_sum", model="m") == 1.5


def test_record_envelope_and_reserved_fields() -> None:
    obs = Observer(process_metrics=False)
    obs.emit("dispatched", id="r1", kind="x")
    obs.emit("finished", event="spoofed", mono=-1, time="yesterday", id="r2")
    first, second = obs.recent()
    assert list(first)[:3] == ["event", "mono", "time"] and first["kind"] == "x"
    assert second["event"] == "finished" and second["id"] == "r2"
    assert second["mono"] >= first["mono"] >= 0
    when = dt.datetime.fromisoformat(second["time"])
    assert when.utcoffset() == dt.timedelta(0)


def test_emit_never_raises() -> None:
    obs = Observer(process_metrics=False)

    def broken(record: dict) -> None:
        raise RuntimeError("observer bug")

    obs.metrics.on_event = broken
    with structlog.testing.capture_logs() as logs:
        obs._log = structlog.get_logger("mullama.observe")  # bind under the capture
        obs.emit("finished", id="r")
    assert [e["event"] for e in logs] == ["emit_failed"]


async def test_emit_from_another_thread_lands_on_the_loop(observer: Observer) -> None:
    sub = observer.subscribe()
    thread = threading.Thread(target=observer.emit, args=("prefetch",), kwargs={"model": "m"})
    thread.start()
    thread.join()
    record = await sub.get(timeout=LIVENESS_S)
    assert record is not None and record["event"] == "prefetch"


@pytest.mark.parametrize(("emitted", "n", "expected"), [
    (5, 2, [3, 4]),
    (5, 100, [0, 1, 2, 3, 4]),
    (5, 0, []),
    (5, -3, []),
    (12, 100, list(range(4, 12))),   # ring of 8
])
def test_recent_is_a_bounded_ring(emitted: int, n: int, expected: list[int]) -> None:
    obs = Observer(recent=8, process_metrics=False)
    for i in range(emitted):
        obs.emit("finished", i=i)
    got = obs.recent(n)
    assert [r["i"] for r in got] == expected
    if got:
        got[0]["i"] = "changed"
        assert obs.recent(n)[0]["i"] == expected[0]  # copies


# ---------------------------------------------------------------------- subscribers


async def test_slow_subscriber_loses_the_oldest(observer: Observer) -> None:
    slow = observer.subscribe(maxsize=2)
    fast = observer.subscribe(maxsize=100)
    for i in range(5):
        observer.emit("first_token", i=i)   # returns at once: nobody reads yet
    assert slow.dropped == 3 and fast.dropped == 0
    assert [(await slow.get(0))["i"] for _ in range(2)] == [3, 4]
    assert await slow.get(timeout=0.01) is None  # nothing left: times out
    assert [(await fast.get(0))["i"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert sample(observer.metrics, "mullama_event_subscriber_dropped_total") == 3


async def test_subscription_iterates_until_closed(observer: Observer) -> None:
    sub = observer.subscribe()
    got: list[str] = []

    async def reader() -> None:
        async for record in sub:
            got.append(record["event"])
            if len(got) == 2:
                sub.close()

    task = asyncio.ensure_future(reader())
    observer.emit("request_queued")
    observer.emit("dispatched")
    await asyncio.wait_for(task, LIVENESS_S)
    observer.emit("finished")  # after close: not delivered, no error
    assert got == ["request_queued", "dispatched"]
    assert await sub.get(0) is None and sub.closed
    sub.close()  # idempotent


async def test_stop_ends_subscriptions() -> None:
    obs = Observer(process_metrics=False)
    await obs.start()
    sub = obs.subscribe()
    task = asyncio.ensure_future(anext(sub, None))
    await asyncio.sleep(0)
    await obs.stop()
    assert await asyncio.wait_for(task, LIVENESS_S) is None
    with obs.subscribe() as other:
        obs.emit("x")
        assert (await other.get(0))["event"] == "x"
    assert other.closed


@pytest.mark.parametrize("maxsize", [0, -1])
def test_subscription_size_must_be_positive(maxsize: int) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        Observer(process_metrics=False).subscribe(maxsize)


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


# ---------------------------------------------------------------------- event log


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


async def test_event_log_is_jsonl_appended_and_flushed_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.jsonl"   # the directory is created
    obs = Observer(event_log=path, process_metrics=False)
    obs.emit("model_loading", model="m")        # before start: kept
    await obs.start()
    for i in range(50):
        obs.emit("first_token", i=i, where=Path("/x"), text="é\n\"")
    obs.emit("finished", bad=Unprintable())
    await obs.stop()
    obs.emit("after_stop")                      # ignored by the log, no error
    again = Observer(event_log=path, process_metrics=False)
    await again.start()
    again.emit("model_ready", model="m")
    await again.stop()
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    expected = ["model_loading"] + ["first_token"] * 50 + ["finished", "model_ready"]
    assert [r["event"] for r in records] == expected
    monos = [r["mono"] for r in records]
    assert monos == sorted(monos)
    assert all(dt.datetime.fromisoformat(r["time"]).utcoffset() == dt.timedelta(0) for r in records)
    assert records[1]["where"] == "/x" and records[1]["text"] == "é\n\""
    assert "encode_error" in records[51] and "bad" not in records[51]
    assert obs.event_log.written == 52


def _file_parent(tmp_path: Path) -> Path:
    (tmp_path / "plain").write_text("")
    return tmp_path / "plain" / "events.jsonl"


@pytest.mark.parametrize("make_path", [_file_parent, lambda tmp: tmp],
                         ids=["parent-is-a-file", "is-a-directory"])
async def test_unopenable_event_log_is_logged_and_disabled(tmp_path: Path, make_path) -> None:
    with structlog.testing.capture_logs() as logs:
        obs = Observer(event_log=make_path(tmp_path), process_metrics=False)
        obs.emit("model_loading")
        await obs.start()
        obs.emit("model_ready")
        seen = obs.subscribe()
        obs.emit("finished")
        assert (await seen.get(0))["event"] == "finished"  # serving goes on
        await obs.stop()
    assert not obs.event_log_enabled and obs.event_log.error.startswith("open: ")
    assert [e["event"] for e in logs] == ["event_log_disabled"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_write_error_is_logged_once_and_disables_the_log() -> None:
    with structlog.testing.capture_logs() as logs:
        obs = Observer(event_log=Path("/dev/full"), process_metrics=False)
        await obs.start()
        obs.emit("model_loading")
        await until(lambda: obs.event_log.error is not None, "the failed write")
        obs.emit("model_ready")
        await obs.stop()
    assert obs.event_log.error.startswith("write: ") and not obs.event_log_enabled
    assert [e["event"] for e in logs] == ["event_log_disabled"]
    assert obs.recent()[-1]["event"] == "model_ready"


# ---------------------------------------------------------------------- metrics


def _stats(**over) -> protocol.CompletionStats:
    base = dict(prompt_tokens=10, cached_tokens=4, completion_tokens=5, queue_ms=0.5, prefill_ms=20.0,
                ttft_ms=21.0, decode_ms=40.0, total_ms=62.0, inter_token_ms_p50=10.0, inter_token_ms_p95=12.0,
                slot=1, pauses=0, swaps=0)
    return protocol.CompletionStats(**{**base, **over})


def _profile(**over) -> dict:
    return build_profile(stats=_stats(**over), model="m", scheduler="fifo", runner_pid=42, queue_ms=3.0,
                         load_ms=0.0, total_ms=70.0, preemptions=0)


METRICS = [  # (name as exposed, type, labels)
    ("mullama_time_to_first_token_seconds", "histogram", {"model"}),
    ("mullama_inter_token_latency_seconds", "histogram", {"model"}),
    ("mullama_request_duration_seconds", "histogram", {"model"}),
    ("mullama_queue_time_seconds", "histogram", {"model"}),
    ("mullama_load_duration_seconds", "histogram", {"model"}),
    ("mullama_requests_running", "gauge", {"model"}),
    ("mullama_requests_waiting", "gauge", {"model"}),
    ("mullama_kv_cache_usage_ratio", "gauge", {"model"}),
    ("mullama_model_memory_bytes", "gauge", {"model", "device"}),
    ("mullama_prompt_tokens_total", "counter", {"model"}),
    ("mullama_generation_tokens_total", "counter", {"model"}),
    ("mullama_prefix_cache_queries_total", "counter", {"model"}),
    ("mullama_prefix_cache_hits_total", "counter", {"model"}),
    ("mullama_preemptions_total", "counter", {"model"}),
    ("mullama_model_loads_total", "counter", {"model"}),
    ("mullama_model_load_failures_total", "counter", {"model"}),
    ("mullama_model_unloads_total", "counter", {"model"}),
    ("mullama_model_swaps_total", "counter", {"model"}),
    ("mullama_model_evictions_total", "counter", {"model"}),
    ("mullama_runner_restarts_total", "counter", {"model"}),
    ("mullama_requests_total", "counter", {"model", "finish_reason"}),
    ("mullama_request_errors_total", "counter", {"model", "type"}),
    ("mullama_events_total", "counter", {"event"}),
    ("mullama_hook_errors_total", "counter", {"reason"}),
    ("mullama_hook_events_dropped_total", "counter", set()),
    ("mullama_event_log_dropped_total", "counter", set()),
    ("mullama_event_subscriber_dropped_total", "counter", set()),
    ("mullama_build_info", "gauge", {"version"}),
]


def _families(metrics: Metrics) -> dict:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


async def test_render_has_every_metric_with_type_and_labels(observer: Observer) -> None:
    m = observer.metrics
    m.request_done("m", _profile(), "stop")
    m.request_failed("m", "no_fit")
    m.set_queue({"m": 1}, {"m": 2})
    m.set_kv("m", 0.25)
    m.set_memory("m", {"CUDA0": 1 << 30, "CPU": 1 << 20})
    for kind in ("model_loading", "model_ready", "model_failed", "model_unloaded", "model_evicted", "swap",
                 "runner_crashed", "preempted"):
        observer.emit(kind, model="m", load_ms=2000.0)
    observer.hooks.register("finished", lambda r: 1 / 0)
    observer.emit("finished")
    await until(lambda: observer.hooks.errors == 1, "the failing hook")
    families = _families(m)
    for name, kind, labels in METRICS:
        family = families.get(name.removesuffix("_total") if kind == "counter" else name)
        assert family is not None, f"{name} missing"
        assert family.type == kind, name
        assert family.samples, f"{name} has no samples"
        for s in family.samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)


def test_process_metrics_are_prefixed() -> None:
    names = set(_families(Metrics(process=True)))
    assert all(n.startswith("mullama_") for n in names)


def test_observers_do_not_share_series() -> None:
    a, b = Observer(process_metrics=False), Observer(process_metrics=False)
    a.metrics.request_failed("m", "no_fit")
    assert sample(a.metrics, "mullama_requests_total", model="m", finish_reason="error") == 1
    assert sample(b.metrics, "mullama_requests_total", model="m", finish_reason="error") is None


@pytest.mark.parametrize(("kind", "metric"), sorted(EVENT_COUNTERS.items()))
def test_each_counted_event_advances_its_counter(kind: str, metric: str) -> None:
    obs = Observer(process_metrics=False)
    obs.emit(kind, model="m")
    obs.emit(kind, model="m")
    obs.emit(kind)  # no model: counted under model=""
    name = getattr(obs.metrics, metric)._name + "_total"
    assert sample(obs.metrics, name, model="m") == 2
    assert sample(obs.metrics, name, model="") == 1


def test_load_histogram_comes_only_from_model_ready_with_load_ms() -> None:
    obs = Observer(process_metrics=False)
    obs.emit("model_ready", model="m")             # no load_ms: not observed
    obs.emit("model_ready", model="m", load_ms=-5)  # clamped to 0
    obs.emit("model_ready", model="m", load_ms="garbage")
    assert sample(obs.metrics, "mullama_load_duration_seconds_count", model="m") == 2
    assert sample(obs.metrics, "mullama_load_duration_seconds_sum", model="m") == 0


def test_request_done_feeds_counters_and_histograms() -> None:
    m = Metrics(process=False)
    m.request_done("m", _profile(), "stop")
    m.request_done("m", _profile(completion_tokens=1, decode_ms=0.0), "length")
    m.request_done("m", _profile(completion_tokens=0, ttft_ms=0.0, decode_ms=0.0), "error")
    assert sample(m, "mullama_prompt_tokens_total", model="m") == 30
    assert sample(m, "mullama_generation_tokens_total", model="m") == 6
    assert sample(m, "mullama_prefix_cache_queries_total", model="m") == 30
    assert sample(m, "mullama_prefix_cache_hits_total", model="m") == 12
    assert sample(m, "mullama_time_to_first_token_seconds_count", model="m") == 2   # not the 0-token one
    assert sample(m, "mullama_time_to_first_token_seconds_sum", model="m") == pytest.approx(0.042)
    assert sample(m, "mullama_inter_token_latency_seconds_count", model="m") == 1   # only >= 2 tokens
    assert sample(m, "mullama_inter_token_latency_seconds_sum", model="m") == pytest.approx(0.010)
    assert sample(m, "mullama_request_duration_seconds_count", model="m") == 3
    assert sample(m, "mullama_queue_time_seconds_sum", model="m") == pytest.approx(3 * 0.0035)
    assert sample(m, "mullama_requests_total", model="m", finish_reason="error") == 1
    assert sample(m, "mullama_request_errors_total", model="m", type="generation_failed") == 1


def test_errors_total_matches_error_requests() -> None:
    m = Metrics(process=False)
    m.request_failed("", "model_not_found")
    m.request_failed("m", "no_fit")
    m.request_done("m", {}, "error")  # a profile missing every field still counts
    families = _families(m)
    errors = sum(s.value for s in families["mullama_request_errors"].samples if s.name.endswith("_total"))
    failed = sum(s.value for s in families["mullama_requests"].samples
                 if s.name.endswith("_total") and s.labels["finish_reason"] == "error")
    assert errors == failed == 3


def test_set_queue_replaces_label_sets() -> None:
    m = Metrics(process=False)
    m.set_queue({"a": 2, "b": 1}, {"a": 5})
    m.set_queue({"b": 3}, {"c": 1})
    assert sample(m, "mullama_requests_running", model="a") is None
    assert sample(m, "mullama_requests_running", model="b") == 3
    assert sample(m, "mullama_requests_waiting", model="a") is None
    assert sample(m, "mullama_requests_waiting", model="c") == 1
    m.set_queue({}, {})
    assert not _families(m)["mullama_requests_running"].samples
    assert not _families(m)["mullama_requests_waiting"].samples


def test_set_memory_replaces_devices_and_forget_model_clears_gauges() -> None:
    m = Metrics(process=False)
    m.set_memory("a", {"CUDA0": 100, "CPU": 10})
    m.set_memory("a", {"CPU": 20})
    m.set_memory("b", {"CUDA0": 7})
    m.set_kv("a", 1.7)   # clamped
    m.set_kv("b", -1)
    m.set_queue({"a": 1, "b": 1}, {"a": 0})
    assert sample(m, "mullama_model_memory_bytes", model="a", device="CUDA0") is None
    assert sample(m, "mullama_model_memory_bytes", model="a", device="CPU") == 20
    assert sample(m, "mullama_kv_cache_usage_ratio", model="a") == 1.0
    assert sample(m, "mullama_kv_cache_usage_ratio", model="b") == 0.0
    m.request_failed("a", "no_fit")
    m.forget_model("a")
    m.forget_model("a")          # twice: no error
    m.forget_model("never-seen")
    gone = [("mullama_model_memory_bytes", {"device": "CPU"}), ("mullama_kv_cache_usage_ratio", {}),
            ("mullama_requests_running", {}), ("mullama_requests_waiting", {})]
    for name, labels in gone:
        assert sample(m, name, model="a", **labels) is None, name
    assert sample(m, "mullama_model_memory_bytes", model="b", device="CUDA0") == 7
    assert sample(m, "mullama_requests_running", model="b") == 1
    assert sample(m, "mullama_requests_total", model="a", finish_reason="error") == 1  # history stays
    m.set_queue({"a": 1}, {})    # a model that comes back is tracked again
    assert sample(m, "mullama_requests_running", model="a") == 1


# ---------------------------------------------------------------------- X-Profile


@pytest.mark.parametrize(("stats", "kwargs", "expected"), [
    # an ordinary request: 5 tokens, 4 gaps in 40 ms -> 100 tok/s
    ({}, {}, {"prompt_tokens": 10, "kv_cache_hit": 4, "kv_cache_miss": 6, "completion_tokens": 5,
              "queue_ms": 3.5, "prefill_ms": 20.0, "time_to_first_token_ms": 21.0, "decode_ms": 40.0,
              "tokens_per_second": 100.0, "inter_token_ms_p50": 10.0, "inter_token_ms_p95": 12.0,
              "total_ms": 70.0, "slot": 1}),
    # rounding to 3 decimals; tokens/s from the rounded decode time
    ({"decode_ms": 33.33333333, "ttft_ms": 1.23456, "prefill_ms": 0.0004}, {"total_ms": 2.0 / 3},
     {"decode_ms": 33.333, "tokens_per_second": round(4 / 0.033333, 3), "time_to_first_token_ms": 1.235,
      "prefill_ms": 0.0, "total_ms": 0.667}),
    # one token: no gaps, no rate
    ({"completion_tokens": 1, "decode_ms": 0.0, "inter_token_ms_p50": 0.0, "inter_token_ms_p95": 0.0}, {},
     {"tokens_per_second": 0.0, "inter_token_ms_p50": 0.0, "decode_ms": 0.0, "time_to_first_token_ms": 21.0}),
    # no token at all (cancelled in prefill, max_tokens=0): no time to first token
    ({"completion_tokens": 0, "decode_ms": 0.0}, {},
     {"tokens_per_second": 0.0, "time_to_first_token_ms": 0.0, "completion_tokens": 0}),
    # 2 tokens but a zero decode span (same step): no division by zero
    ({"completion_tokens": 2, "decode_ms": 0.0}, {}, {"tokens_per_second": 0.0}),
    # empty prompt
    ({"prompt_tokens": 0, "cached_tokens": 0}, {}, {"kv_cache_hit": 0, "kv_cache_miss": 0}),
    # whole prompt cached; inconsistent runner numbers are clamped so hit + miss == prompt
    ({"cached_tokens": 10}, {}, {"kv_cache_hit": 10, "kv_cache_miss": 0}),
    ({"cached_tokens": 15}, {}, {"kv_cache_hit": 10, "kv_cache_miss": 0}),
    ({"cached_tokens": -2, "queue_ms": -1.0}, {"queue_ms": -5.0, "load_ms": -1.0, "preemptions": -1},
     {"kv_cache_hit": 0, "kv_cache_miss": 10, "queue_ms": 0.0, "load_ms": 0.0, "preemptions": 0}),
    # supervisor spans pass through; kv evictions and preemptions are the caller's
    ({}, {"load_ms": 1234.56789, "kv_evicted": 3, "preemptions": 2, "runner_pid": None},
     {"load_ms": 1234.568, "kv_cache_evict": 3, "preemptions": 2, "runner_pid": None}),
])
def test_build_profile(stats: dict, kwargs: dict, expected: dict) -> None:
    args = dict(model="m", scheduler="fifo", runner_pid=42, queue_ms=3.0, load_ms=0.0, total_ms=70.0,
                preemptions=0)
    profile = build_profile(stats=_stats(**stats), **{**args, **kwargs})
    for key, value in expected.items():
        assert profile[key] == value, key
    assert profile["kv_cache_hit"] + profile["kv_cache_miss"] == profile["prompt_tokens"]
    assert profile["model"] == "m" and profile["scheduler"] == "fifo"
    for key, value in profile.items():
        if isinstance(value, float):
            assert value == round(value, 3) and value >= 0, key
    if profile["completion_tokens"] >= 2 and profile["decode_ms"] > 0:
        rate = (profile["completion_tokens"] - 1) / (profile["decode_ms"] / 1000)
        assert profile["tokens_per_second"] == round(rate, 3)
    assert json.loads(json.dumps(profile)) == profile


def test_profile_fields_are_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    for key in _profile():
        assert f"`{key}`" in doc, key
    for name, _, _ in METRICS:
        assert f"`{name}`" in doc, name
    for kind in EVENTS:
        assert f"`{kind}`" in doc, kind
