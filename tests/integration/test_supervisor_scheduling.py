"""Scheduling with real runners: the queue view, run-time policy switches, priorities, deadlines,
queue bounds and preemption with exact resumption.

One ``mullama serve`` for the module with ``n_parallel = 1`` (so one long streaming request
holds the only slot and everything else visibly queues) and ``max_queue_per_model = 3``. Each
test sets the policy it needs through ``POST /internal/scheduler`` first, so none depends on
another's leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from supervisor_harness import Server, base_settings
from supervisor_harness import jsonl_records as _records
from supervisor_harness import metric_value as _metric

Q4 = "smollm2:q4_1"
MAX_QUEUE = 3
KNOWN_POLICIES = ("fifo", "round_robin", "priority", "preemptive")
LONG_PROMPT = "Count from one to one thousand, one number per line."


@pytest.fixture(scope="module")
def event_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scheduling-log") / "events.jsonl"


@pytest.fixture(scope="module")
def server(tmp_path_factory, event_log) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("scheduling"),
                 base_settings(n_parallel=1, scheduler="fifo", max_queue_per_model=MAX_QUEUE,
                               event_log=str(event_log)))
    try:
        status, _ = srv.call("POST", "/api/load", {"model": Q4})
        assert status == 200
        yield srv
    finally:
        srv.stop()


# ---------------------------------------------------------------------- helpers


def _client(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def _chat(text: str, *, n: int = 4, user: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": Q4, "messages": [{"role": "user", "content": text}], "max_tokens": n,
                            "temperature": 0}
    if user is not None:
        body["user"] = user
    return {**body, **extra}


async def _call(server: Server, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await asyncio.to_thread(server.call, method, path, body)


def _post_raw(server: Server, path: str, body: dict) -> tuple[int, dict[str, str], dict]:
    """POST returning the headers too (Retry-After)."""
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


async def _set_policy(server: Server, policy: str) -> None:
    status, body = await _call(server, "POST", "/internal/scheduler", {"policy": policy})
    assert status == 200, body
    assert (await _view(server))["policy"] == policy


async def _view(server: Server) -> dict:
    status, view = await _call(server, "GET", "/internal/scheduler")
    assert status == 200, view
    return view


async def _wait_queued(server: Server, n: int, limit_s: float = 60) -> dict:
    """The scheduler view once exactly ``n`` requests wait (bounded)."""
    deadline = time.monotonic() + limit_s
    while True:
        view = await _view(server)
        if len(view["queue"]) == n:
            return view
        assert time.monotonic() < deadline, f"the queue never reached {n}: {view}"
        await asyncio.sleep(0.05)


async def _wait_idle(server: Server, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        view = await _view(server)
        if not view["queue"] and not view["running"]:
            return
        assert time.monotonic() < deadline, f"the scheduler never went idle: {view}"
        await asyncio.sleep(0.05)


async def _logged(path: Path, until, limit_s: float = 30) -> list[dict]:
    """The event log once ``until(records)`` holds (the writer flushes at least every 0.5 s)."""
    deadline = time.monotonic() + limit_s
    while not until(records := _records(path)):
        assert time.monotonic() < deadline, "the event log never showed the expected events"
        await asyncio.sleep(0.2)
    return records


@contextlib.asynccontextmanager
async def _busy(server: Server) -> AsyncIterator[dict]:
    """A long streaming request holding the only slot; closed (the server cancels it) on exit."""
    client = _client(server)
    stream = await client.chat.completions.create(**_chat(LONG_PROMPT, n=400, user="busy", stream=True,
                                                          extra_body={"ignore_eos": True}))
    state: dict[str, Any] = {"chunks": 0, "id": None}
    started = asyncio.Event()

    async def drain() -> None:
        async for chunk in stream:
            state["id"] = chunk.id
            if chunk.choices and chunk.choices[0].delta.content:
                state["chunks"] += 1
                started.set()

    reader = asyncio.ensure_future(drain())
    try:
        await asyncio.wait_for(started.wait(), 120)
        view = await _view(server)
        assert [r["user"] for r in view["running"].get(Q4, [])] == ["user:busy"], view
        yield state
        assert not reader.done(), "the long request ended before the test was through; make it longer"
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await stream.close()
        await client.close()
    await _wait_idle(server)


def _error(body: dict) -> dict:
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    return err


# ---------------------------------------------------------------------- the queue view and policy switches


async def test_fifo_queue_view_then_a_switch_to_priority_carries_the_queue_over(server, event_log):
    await _set_policy(server, "fifo")
    client = _client(server)
    async with _busy(server) as busy:
        waiters = []
        for i in range(3):
            request = client.chat.completions.create(**_chat("Say yes.", user=f"q{i}"))
            waiters.append(asyncio.ensure_future(request))
            await _wait_queued(server, i + 1)
        view = await _view(server)
        assert view["policy"] == "fifo"
        assert [(r["position"], r["user"], r["model"], r["state"]) for r in view["queue"]] == [
            (0, "user:q0", Q4, "queued"), (1, "user:q1", Q4, "queued"), (2, "user:q2", Q4, "queued")]
        assert view["waiting"] == {Q4: 3}
        [running] = view["running"][Q4]
        assert running["id"] == busy["id"] and running["user"] == "user:busy"
        assert running["slot"] == 0
        assert view["n_parallel"][Q4] == 1
        assert await asyncio.to_thread(_metric, server, "mullama_requests_waiting", model=Q4) == 3
        assert await asyncio.to_thread(_metric, server, "mullama_requests_running", model=Q4) == 1

        status, body = await _call(server, "POST", "/internal/scheduler", {"policy": "priority"})
        assert status == 200, body
        assert body == {"policy": "priority", "previous": "fifo"}
        view = await _view(server)
        assert view["policy"] == "priority"
        assert [(r["position"], r["user"]) for r in view["queue"]] == [
            (0, "user:q0"), (1, "user:q1"), (2, "user:q2")]
        assert not any(w.done() for w in waiters)
    results = await asyncio.wait_for(asyncio.gather(*waiters), 120)
    assert all(r.choices[0].message.content and r.model == Q4 for r in results)
    def changed(rs: list[dict]) -> list[dict]:
        return [r for r in rs
                if r["event"] == "scheduler_changed" and (r["previous"], r["policy"]) == ("fifo", "priority")]

    records = await _logged(event_log, changed)
    assert changed(records)[-1]["carried_over"] == 3


@pytest.mark.parametrize("policy, expected", [
    ("Round-Robin", "round_robin"),
    ("PREEMPTIVE", "preemptive"),
    ("fifo", "fifo"),
])
async def test_policy_names_are_normalised(server, policy, expected):
    status, body = await _call(server, "POST", "/internal/scheduler", {"policy": policy})
    assert status == 200, body
    assert body["policy"] == expected
    assert (await _view(server))["policy"] == expected


@pytest.mark.parametrize("body, needle, lists_known", [
    ({"policy": "fifoo"}, "did you mean 'fifo'", True),
    ({"policy": "lottery"}, "unknown policy", True),
    # importing by path runs code: at run time only the configured custom policy may be named
    ({"policy": "a:b:c"}, "only built-in policies", True),
    ({"policy": "no_such_module_xyz:Policy"}, "only built-in policies", True),
    ({"policy": "os:system"}, "only built-in policies", True),
    ({"policy": ""}, "policy", False),
    ({}, "policy", False),
    ({"policy": 3}, "policy", False),
    ({"policy": "fifo", "extra": 1}, "extra", False),
    ([], "", False),
])
async def test_a_bad_policy_is_refused_and_nothing_changes(server, body, needle, lists_known):
    await _set_policy(server, "priority")
    status, resp = await _call(server, "POST", "/internal/scheduler", body)
    assert status == 400, resp
    err = _error(resp)
    assert err["type"] == "invalid_request_error"
    assert needle in err["message"]
    if lists_known:
        assert all(name in err["message"] for name in KNOWN_POLICIES), err["message"]
    assert (await _view(server))["policy"] == "priority"


async def test_a_malformed_json_body_is_a_400(server):
    req = urllib.request.Request(server.url + "/internal/scheduler", data=b"{policy", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        await asyncio.to_thread(urllib.request.urlopen, req, timeout=30)
    assert info.value.code == 400
    _error(json.loads(info.value.read()))


# ---------------------------------------------------------------------- priority and deadlines


async def test_priority_serves_the_higher_priority_first(server):
    await _set_policy(server, "priority")
    client = _client(server)
    done: list[str] = []

    async def one(tag: str, priority: int):
        result = await client.chat.completions.create(**_chat("Say ok.", user=tag,
                                                              extra_body={"priority": priority}))
        done.append(tag)
        return result

    async with _busy(server):
        low = asyncio.ensure_future(one("low", -5))
        await _wait_queued(server, 1)
        high = asyncio.ensure_future(one("high", 10))
        view = await _wait_queued(server, 2)
        assert [(r["user"], r["priority"], r["position"]) for r in view["queue"]] == [
            ("user:high", 10, 0), ("user:low", -5, 1)]
    results = await asyncio.wait_for(asyncio.gather(low, high), 120)
    assert done == ["high", "low"]
    assert all(r.choices[0].message.content for r in results)


async def test_a_deadline_that_cannot_be_met_is_a_408(server, event_log):
    await _set_policy(server, "fifo")
    before = (await _view(server))["counters"].get("deadline_expired", 0)
    errors_before = await asyncio.to_thread(_metric, server, "mullama_request_errors_total",
                                            model=Q4, type="deadline_exceeded") or 0
    async with _busy(server):
        status, _, body = await asyncio.to_thread(
            _post_raw, server, "/v1/chat/completions", _chat("Say late.", user="late", deadline_ms=300))
    assert status == 408, body
    err = _error(body)
    assert err["code"] == "deadline_exceeded"
    assert err["type"] == "timeout"
    assert "deadline" in err["message"]
    assert (await _view(server))["counters"]["deadline_expired"] == before + 1
    errors_after = await asyncio.to_thread(_metric, server, "mullama_request_errors_total",
                                           model=Q4, type="deadline_exceeded")
    assert errors_after == errors_before + 1
    records = await _logged(event_log, lambda rs: any(r["event"] == "deadline_expired" for r in rs))
    expired = [r for r in records if r["event"] == "deadline_expired"]
    assert expired[-1]["model"] == Q4 and expired[-1]["late_ms"] >= 0


async def test_a_deadline_that_can_be_met_is_served(server):
    await _set_policy(server, "fifo")
    body = _chat("Say on time.", extra_body={"deadline_ms": 60000})
    result = await _client(server).chat.completions.create(**body)
    assert result.choices[0].message.content


@pytest.mark.parametrize("field, value", [
    ("deadline_ms", 0), ("deadline_ms", -5), ("deadline_ms", "soon"),
    ("priority", 1001), ("priority", -1001), ("priority", "high"), ("priority", 1.5),
])
async def test_bad_priority_or_deadline_is_a_400(server, field, value):
    status, body = await _call(server, "POST", "/v1/chat/completions", _chat("Hi.", **{field: value}))
    assert status == 400, body
    err = _error(body)
    assert err["type"] == "invalid_request_error"
    assert field in (err["param"] or "") + err["message"]


# ---------------------------------------------------------------------- queue bounds


async def test_a_full_model_queue_answers_429_with_retry_after(server):
    await _set_policy(server, "fifo")
    client = _client(server)
    rejected_before = (await _view(server))["counters"].get("rejected", 0)
    async with _busy(server):
        waiters = []
        for i in range(MAX_QUEUE):
            request = client.chat.completions.create(**_chat("Say yes.", user=f"w{i}"))
            waiters.append(asyncio.ensure_future(request))
            await _wait_queued(server, i + 1)
        status, headers, body = await asyncio.to_thread(_post_raw, server, "/v1/chat/completions",
                                                        _chat("One too many.", user="over"))
        assert status == 429, body
        err = _error(body)
        assert err["code"] == "queue_full" and err["type"] == "rate_limit_error"
        assert int(headers["Retry-After"]) >= 1
        with pytest.raises(openai.RateLimitError):  # the SDK sees it as a rate limit too
            await client.chat.completions.create(**_chat("Two too many.", user="over"))
        assert len((await _view(server))["queue"]) == MAX_QUEUE  # the rejected ones never queued
    results = await asyncio.wait_for(asyncio.gather(*waiters), 120)
    assert all(r.choices[0].message.content for r in results)
    assert (await _view(server))["counters"]["rejected"] == rejected_before + 2


# ---------------------------------------------------------------------- preemption


LOW = _chat("Write a long story about a lighthouse keeper and a storm.", n=120, user="low", seed=1234,
            stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True, "priority": 0}, extra_headers={"X-Profile": "1"})


async def _stream_low(client: openai.AsyncOpenAI, progress: asyncio.Event | None = None,
                      after: int = 0) -> dict[str, Any]:
    """The low-priority request streamed: text, id, usage, profile; sets progress after `after` tokens."""
    text: list[str] = []
    out: dict[str, Any] = {"profile": None, "id": None, "usage": None}
    stream = await client.chat.completions.create(**LOW)
    async for chunk in stream:
        out["id"] = chunk.id
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
            if progress is not None and len(text) >= after:
                progress.set()
        if chunk.usage is not None:
            out["usage"] = chunk.usage
            out["profile"] = (chunk.model_extra or {}).get("profile")
    out["text"] = "".join(text)
    return out


async def test_preemption_pauses_the_low_request_and_resumes_it_exactly(server, event_log):
    await _set_policy(server, "preemptive")
    client = _client(server)
    solo = await _stream_low(client)
    assert solo["profile"]["preemptions"] == 0
    assert solo["usage"].completion_tokens == 120
    counters_before = (await _view(server))["counters"]
    metric_before = await asyncio.to_thread(_metric, server, "mullama_preemptions_total", model=Q4) or 0

    progress = asyncio.Event()
    low = asyncio.ensure_future(_stream_low(client, progress, after=10))
    await asyncio.wait_for(progress.wait(), 120)
    urgent = await client.chat.completions.create(**_chat("Say urgent.", n=8, user="urgent",
                                                          extra_body={"priority": 10}))
    assert urgent.choices[0].message.content
    assert not low.done(), "the low-priority request finished before the urgent one"
    paused = await asyncio.wait_for(low, 120)

    assert paused["text"] == solo["text"]
    assert paused["usage"].completion_tokens == 120
    assert paused["profile"]["preemptions"] == 1
    counters = (await _view(server))["counters"]
    assert counters["preemptions"] >= counters_before.get("preemptions", 0) + 1
    assert counters["resumed"] >= counters_before.get("resumed", 0) + 1
    assert counters.get("pause_failed", 0) == counters_before.get("pause_failed", 0)
    assert counters.get("resume_failed", 0) == counters_before.get("resume_failed", 0)
    metric = await asyncio.to_thread(_metric, server, "mullama_preemptions_total", model=Q4)
    assert metric is not None and metric >= metric_before + 1

    def complete(rs: list[dict]) -> bool:
        return any(r["event"] == "finished" and r.get("id") == paused["id"] for r in rs)

    records = await _logged(event_log, complete)
    mine = [r["event"] for r in records if r.get("id") == paused["id"]]
    assert mine == ["request_queued", "dispatched", "first_token", "preempted", "resumed", "finished"]
    preempted = next(r for r in records if r["event"] == "preempted" and r["id"] == paused["id"])
    resumed = next(r for r in records if r["event"] == "resumed" and r["id"] == paused["id"])
    assert preempted["by"] == urgent.id
    assert (preempted["priority"], preempted["by_priority"]) == (0, 10)
    assert resumed["preemptions"] == 1
    urgent_done = next(r for r in records if r["event"] == "finished" and r.get("id") == urgent.id)
    assert preempted["mono"] < urgent_done["mono"] <= resumed["mono"]  # the urgent one ran while it waited
