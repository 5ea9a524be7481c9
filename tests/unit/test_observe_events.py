"""Observer: emit fan-out, subscribers, the event log."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path

import observe_checks
import pytest
import structlog
from observe_checks import LIVENESS_S, sample, until

from mullama.observe.events import Observer

observer = observe_checks.observer  # the fixture: a started Observer


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
