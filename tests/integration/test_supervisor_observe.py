"""Observability with real runners: X-Profile, /metrics, /internal/{events,models,kv}, the event log.

One ``mullama serve`` for the module (starts are slow on a 2-core box), over SmolLM2
Q4_1 (bundled) and its Q8_0 variant, with ``scheduler = "round_robin"`` (so a profile that
reports the default policy would be caught) and an event log. Tests that need a cold model
unload it first; nothing depends on test order.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from supervisor_harness import REPO_ROOT, Server, base_settings, q8_variant
from supervisor_harness import jsonl_records as _records

Q4, Q8 = "smollm2:q4_1", "smollm2:q8_0"
POLICY = "round_robin"
N_PARALLEL = 2
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
PROFILE = {"X-Profile": "1"}


def _documented_profile_fields() -> list[str]:
    """The field names of the X-Profile table in docs/observability.md (the table is the contract)."""
    text = (REPO_ROOT / "docs" / "observability.md").read_text()
    section = text.split("## X-Profile", 1)[1].split("How the numbers relate", 1)[0]
    fields: list[str] = []
    for line in section.splitlines():
        cell = re.match(r"\| ((?:`\w+`(?:, )?)+) \|", line)
        if cell:
            fields += re.findall(r"`(\w+)`", cell.group(1))
    return fields


PROFILE_FIELDS = _documented_profile_fields()


@pytest.fixture(scope="module")
def event_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("observe-log") / "events.jsonl"


@pytest.fixture(scope="module")
def server(tmp_path_factory, event_log) -> Iterator[Server]:
    q8_variant()
    srv = Server(tmp_path_factory.mktemp("observe"),
                 base_settings(n_parallel=N_PARALLEL, scheduler=POLICY, event_log=str(event_log),
                               prefetch="none"))
    try:
        yield srv
    finally:
        srv.stop()


# ---------------------------------------------------------------------- helpers


def _body(path: str, text: str, *, model: str = Q4, n: int = 8, stream: bool = False, **extra: Any) -> dict:
    body: dict[str, Any] = {"model": model, "max_tokens": n, "temperature": 0, "ignore_eos": True,
                            "stream": stream, **extra}
    if path == CHAT:
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return body


def _sse(server: Server, path: str, body: dict, headers: dict[str, str] | None = None) -> list[dict]:
    """Every ``data:`` object of a streamed response, up to ``[DONE]`` (which must come)."""
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    chunks: list[dict] = []
    with urllib.request.urlopen(req, timeout=300) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return chunks
            chunks.append(json.loads(data))
    raise AssertionError(f"the stream ended without [DONE]: {chunks[-3:]}")


def _generate(server: Server, path: str, body: dict, headers: dict[str, str] | None = None) -> dict:
    """A response (a streamed one folded into the same shape): id, model, text, usage, profile, keys."""
    if not body.get("stream"):
        status, resp = server.call("POST", path, body, headers=headers)
        assert status == 200, resp
        choice = resp["choices"][0]
        text = choice["message"]["content"] if path == CHAT else choice["text"]
        return {"id": resp["id"], "model": resp["model"], "text": text, "usage": resp["usage"],
                "profile": resp.get("profile"), "keys": set(resp)}
    chunks = _sse(server, path, body, headers)
    final = chunks[-1]
    assert final["choices"] == [] and final["usage"], final  # the usage chunk comes last
    text = "".join((c["choices"][0].get("delta", {}).get("content") or "") if path == CHAT
                   else c["choices"][0]["text"] for c in chunks if c["choices"])
    assert all("profile" not in c for c in chunks[:-1])  # only the final usage chunk carries it
    return {"id": final["id"], "model": final["model"], "text": text, "usage": final["usage"],
            "profile": final.get("profile"), "keys": set(final)}


def _pid(server: Server, model: str) -> int:
    status, ps = server.call("GET", "/api/ps")
    assert status == 200
    pids = [m["pid"] for m in ps["models"] if m["name"] == model]
    assert len(pids) == 1, ps
    return pids[0]


def _metrics(server: Server) -> dict[str, Any]:
    """GET /metrics parsed by prometheus_client: family name (counters without ``_total``) -> family."""
    req = urllib.request.Request(server.url + "/metrics")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _sample(families: dict[str, Any], sample: str, **labels: str) -> float | None:
    for family in families.values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return s.value
    return None


def _nonce() -> str:
    return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------------- X-Profile


def test_the_documented_profile_table_is_found():
    assert len(PROFILE_FIELDS) == len(set(PROFILE_FIELDS)) >= 19
    must = {"model", "scheduler", "runner_pid", "slot", "kv_cache_hit", "total_ms", "preemptions"}
    assert must <= set(PROFILE_FIELDS)


@pytest.mark.parametrize("path, stream, include_usage", [
    (CHAT, False, False),
    (CHAT, True, False),    # the profile alone makes the final usage chunk appear
    (CHAT, True, True),
    (COMPLETIONS, False, False),
    (COMPLETIONS, True, True),
])
def test_x_profile_has_every_documented_field_and_agrees_with_usage(server, path, stream, include_usage):
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    got = _generate(server, path, _body(path, f"Name a colour. {_nonce()}", stream=stream, **extra), PROFILE)
    profile, usage = got["profile"], got["usage"]
    assert isinstance(profile, dict), got
    assert [f for f in PROFILE_FIELDS if f not in profile] == []
    assert profile["model"] == got["model"] == Q4
    assert profile["scheduler"] == POLICY
    assert profile["runner_pid"] == _pid(server, Q4)
    assert profile["slot"] in range(N_PARALLEL)
    assert profile["prompt_tokens"] == usage["prompt_tokens"] > 0
    assert profile["completion_tokens"] == usage["completion_tokens"] == 8
    assert profile["kv_cache_hit"] + profile["kv_cache_miss"] == profile["prompt_tokens"]
    assert profile["kv_cache_hit"] == usage["prompt_tokens_details"]["cached_tokens"]
    assert profile["total_ms"] >= profile["time_to_first_token_ms"] > 0
    assert profile["preemptions"] == 0
    for name in ("prompt_tokens", "completion_tokens", "kv_cache_hit", "kv_cache_miss", "kv_cache_evict",
                 "preemptions", "slot"):
        assert type(profile[name]) is int, name
    for name in ("queue_ms", "load_ms", "prefill_ms", "time_to_first_token_ms", "decode_ms",
                 "tokens_per_second", "inter_token_ms_p50", "inter_token_ms_p95", "total_ms"):
        assert isinstance(profile[name], (int, float)) and profile[name] >= 0, name
    assert profile["tokens_per_second"] > 0  # 8 tokens: 7 gaps
    assert profile["inter_token_ms_p95"] >= profile["inter_token_ms_p50"] > 0


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
def test_a_repeated_prompt_is_served_from_the_prefix_cache(server, path):
    body = _body(path, f"Tell me about the sea. {_nonce()} Answer in one line.", n=4)
    first = _generate(server, path, body, PROFILE)["profile"]
    second = _generate(server, path, body, PROFILE)["profile"]
    assert second["prompt_tokens"] == first["prompt_tokens"]
    assert second["kv_cache_hit"] > 0
    assert second["kv_cache_hit"] > first["kv_cache_hit"]  # the nonce makes the first one's tail new
    assert second["kv_cache_hit"] + second["kv_cache_miss"] == second["prompt_tokens"]


@pytest.mark.parametrize("header", [None, {"X-Profile": "0"}, {"X-Profile": "no"}])
@pytest.mark.parametrize("path, stream", [(CHAT, False), (CHAT, True), (COMPLETIONS, False)])
def test_no_profile_without_the_header(server, path, stream, header):
    extra = {"stream_options": {"include_usage": True}} if stream else {}
    got = _generate(server, path, _body(path, "Say hi.", n=2, stream=stream, **extra), header)
    assert got["profile"] is None
    assert "profile" not in got["keys"]


# ---------------------------------------------------------------------- /metrics


def test_metrics_parse_and_count_the_requests_made(server):
    # a first request so the model is loaded and every series exists before the baseline
    _generate(server, CHAT, _body(CHAT, "Warm up.", n=2))
    before = _metrics(server)
    usages = [_generate(server, CHAT, _body(CHAT, f"Count to {i}. {_nonce()}", n=3))["usage"]
              for i in range(3)]
    after = _metrics(server)

    ttft = after["mullama_time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    count = _sample(after, "mullama_time_to_first_token_seconds_count", model=Q4)
    assert count is not None and count >= 4
    assert count - _sample(before, "mullama_time_to_first_token_seconds_count", model=Q4) == 3

    assert after["mullama_prompt_tokens"].type == "counter"
    prompt_delta = (_sample(after, "mullama_prompt_tokens_total", model=Q4)
                    - _sample(before, "mullama_prompt_tokens_total", model=Q4))
    assert prompt_delta == sum(u["prompt_tokens"] for u in usages)
    generated_delta = (_sample(after, "mullama_generation_tokens_total", model=Q4)
                       - _sample(before, "mullama_generation_tokens_total", model=Q4))
    assert generated_delta == 9

    for gauge in ("mullama_requests_running", "mullama_requests_waiting", "mullama_kv_cache_usage_ratio"):
        assert after[gauge].type == "gauge", gauge
    ratio = _sample(after, "mullama_kv_cache_usage_ratio", model=Q4)
    assert ratio is not None and 0.0 < ratio <= 1.0
    assert after["mullama_model_loads"].type == "counter"
    assert _sample(after, "mullama_model_loads_total", model=Q4) >= 1
    assert _sample(after, "mullama_requests_total", model=Q4, finish_reason="length") >= 4
    assert [f for f in after if f.endswith("_created")] == []


def test_the_running_gauge_shows_a_request_in_flight(server):
    body = _body(CHAT, "Count from one to one thousand.", n=400, stream=True)
    req = urllib.request.Request(server.url + CHAT, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        contents = 0
        for raw in resp:  # wait until tokens flow: the request holds a slot
            if b'"content"' in raw:
                contents += 1
                if contents >= 3:
                    break
        running = _sample(_metrics(server), "mullama_requests_running", model=Q4)
        resp.close()  # the client goes away: the server cancels the generation
    assert running == 1
    deadline = time.monotonic() + 30
    while _sample(_metrics(server), "mullama_requests_running", model=Q4) is not None:
        assert time.monotonic() < deadline, "the running gauge kept a cancelled request"
        time.sleep(0.2)


# ---------------------------------------------------------------------- /internal/events


async def _sse_records(resp: aiohttp.ClientResponse, until, limit_s: float) -> list[dict]:
    """Records from an open /internal/events stream until ``until(record)`` is true."""
    records: list[dict] = []
    kind = None

    async def read() -> None:
        nonlocal kind
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                record = json.loads(line[6:])
                assert record["event"] == kind  # the SSE event name is the record's kind
                records.append(record)
                if until(record):
                    return

    await asyncio.wait_for(read(), limit_s)
    return records


async def test_live_events_follow_one_request_on_a_cold_model(server):
    status, _ = await asyncio.to_thread(server.call, "POST", "/api/unload", {"model": Q8})
    assert status == 200
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(server.url + "/internal/events") as events:
        assert events.status == 200
        assert events.headers["Content-Type"].startswith("text/event-stream")
        assert (await events.content.readline()).startswith(b":")  # subscribed from here on
        body = _body(CHAT, "Name a fruit.", model=Q8, n=4)
        post = asyncio.ensure_future(session.post(server.url + CHAT, json=body))
        records = await _sse_records(events, lambda r: r["event"] == "finished" and r.get("model") == Q8, 300)
        async with await post as resp:
            assert resp.status == 200
            body = await resp.json()
    rid = body["id"]
    mine = [r for r in records if r.get("id") == rid]
    assert [r["event"] for r in mine] == ["request_queued", "dispatched", "first_token", "finished"]
    queued, dispatched, first, finished = mine
    assert queued["model"] == dispatched["model"] == finished["model"] == Q8
    assert isinstance(queued["priority"], int) and queued["user"]
    assert dispatched["queue_ms"] >= 0
    assert finished["finish_reason"] == "length"
    assert finished["prompt_tokens"] == body["usage"]["prompt_tokens"]
    assert finished["completion_tokens"] == body["usage"]["completion_tokens"] == 4
    kinds = [r["event"] for r in records]
    loading = [r for r in records if r["event"] == "model_loading" and r["model"] == Q8]
    ready = [r for r in records if r["event"] == "model_ready" and r["model"] == Q8]
    assert len(loading) == len(ready) == 1, kinds
    assert loading[0]["reason"] == ready[0]["reason"] == "request"
    assert ready[0]["load_ms"] > 0
    position = {id(r): i for i, r in enumerate(records)}
    assert position[id(loading[0])] < position[id(ready[0])] < position[id(first)]
    monos = [r["mono"] for r in records]
    assert monos == sorted(monos)
    assert all(isinstance(r["time"], str) and r["time"].endswith("+00:00") for r in records)


async def test_the_events_backlog_replays_recent_records(server):
    rid = (await asyncio.to_thread(_generate, server, CHAT, _body(CHAT, "Hello.", n=2)))["id"]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(server.url + "/internal/events", params={"backlog": "50"}) as events:
        assert events.status == 200
        await events.content.readline()
        records = await _sse_records(events, lambda r: r["event"] == "finished" and r.get("id") == rid, 60)
    assert [r["event"] for r in records if r.get("id") == rid] == [
        "request_queued", "dispatched", "first_token", "finished"]


# ---------------------------------------------------------------------- /internal/models and /internal/kv


def test_internal_models_shows_states_loads_and_memory_of_a_loaded_model(server):
    _generate(server, CHAT, _body(CHAT, "Hi.", n=2))
    status, view = server.call("GET", "/internal/models")
    assert status == 200
    rows = {m["name"]: m for m in view["models"]}
    row = rows[Q4]
    assert row["state"] == "ready" and row["family"] == "smollm2" and row["variant"] == "q4_1"
    assert row["pid"] == _pid(server, Q4)
    states = [h["state"] for h in row["history"]]
    assert states[-1] == "ready"
    assert states.index("loading") < states.index("warming") < states.index("ready")
    for h in row["history"]:
        assert isinstance(h["at"], float) and isinstance(h["mono"], float)
    assert [h["mono"] for h in row["history"]] == sorted(h["mono"] for h in row["history"])
    assert [h["at"] for h in row["history"]] == sorted(h["at"] for h in row["history"])
    ok = [load for load in row["loads"] if load.get("ok")]
    assert ok and all(load["load_ms"] > 0 and load["reason"] for load in ok)
    assert row["memory"] > 0
    assert row["devices"], row
    for device in row["devices"]:
        assert device["device"] and device["type"]
        assert device["model"] > 0 and device["context"] > 0 and device["compute"] >= 0
    assert sum(d["model"] + d["context"] + d["compute"] for d in row["devices"]) > 0
    assert isinstance(view["counters"], dict) and view["counters"].get("loads", 0) >= 1
    assert isinstance(view["swaps"], list)


@pytest.mark.parametrize("name", [Q4, "smollm2", "SmolLM2:Q4_1"])
def test_internal_kv_shows_slots_and_counters_of_a_loaded_model(server, name):
    _generate(server, CHAT, _body(CHAT, "Hi.", n=2))
    status, kv = server.call("GET", f"/internal/kv/{name}")
    assert status == 200, kv
    assert kv["model"] == Q4
    assert [s["index"] for s in kv["slots"]] == list(range(N_PARALLEL))
    for slot in kv["slots"]:
        assert isinstance(slot["state"], str)
        for key in ("n_tokens", "n_cached", "n_prompt", "n_generated"):
            assert slot[key] >= 0
    assert 0 < kv["cells_used"] <= kv["cells_total"]
    assert kv["usage_ratio"] == round(kv["cells_used"] / kv["cells_total"], 4)
    assert kv["n_ctx_slot"] > 0
    for key in ("prefix_hits", "prefix_misses", "prefix_evictions", "cached_tokens"):
        assert type(kv[key]) is int and kv[key] >= 0, key


@pytest.mark.parametrize("name, status, code", [
    (Q8, 503, "unavailable"),                     # known but not loaded
    ("no-such-model", 404, "model_not_found"),
    ("smollm2:q3_k", 404, "model_not_found"),     # a known family, an unknown variant
])
def test_internal_kv_refuses_models_it_cannot_show(server, name, status, code):
    if name == Q8:
        assert server.call("POST", "/api/unload", {"model": Q8})[0] == 200
    got, body = server.call("GET", f"/internal/kv/{name}")
    assert got == status, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]


# ---------------------------------------------------------------------- event log


def test_the_event_log_holds_a_request_in_order(server, event_log):
    got = _generate(server, CHAT, _body(CHAT, f"Name a tree. {_nonce()}", n=3))
    deadline = time.monotonic() + 30  # the writer flushes at least every 0.5 s
    while not any(r.get("id") == got["id"] and r["event"] == "finished" for r in _records(event_log)):
        assert time.monotonic() < deadline, "the finished event never reached the event log"
        time.sleep(0.2)
    records = _records(event_log)
    for r in records:
        assert list(r)[:3] == ["event", "mono", "time"]  # the envelope first
    monos = [r["mono"] for r in records]
    assert monos == sorted(monos) and monos[0] < monos[-1]
    mine = [r["event"] for r in records if r.get("id") == got["id"]]
    assert mine == ["request_queued", "dispatched", "first_token", "finished"]
    assert any(r["event"] == "model_ready" and r["model"] == Q4 for r in records)
