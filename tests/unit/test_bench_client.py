"""The benchmark client against an in-process fake OpenAI server: measurements, errors, cancellation."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from mullama.bench import client
from mullama.bench.trace import Phase, RequestSpec


def spec(
    i: int = 0,
    *,
    model: str = "ok",
    cancel_after_ms: float | None = None,
    arrival_s: float = 0.0,
    priority: int | None = None,
) -> RequestSpec:
    return RequestSpec(
        index=i,
        arrival_s=arrival_s,
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        ignore_eos=True,
        temperature=0.0,
        prompt_words=1,
        cancel_after_ms=cancel_after_ms,
        priority=priority,
    )


BODIES = web.AppKey("bodies", list)


def _chunk(content: str | None = None, finish: str | None = None, **extra) -> bytes:
    delta = {"content": content} if content is not None else {}
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[BODIES].append((body, dict(request.headers)))
    model = body["model"]
    if model == "http-error":
        return web.json_response({"error": {"message": "no such model", "type": "x"}}, status=404)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    if model == "slow-headers":
        await asyncio.sleep(1)
    await resp.prepare(request)
    await resp.write(_chunk(""))  # role chunk, no content
    for i, word in enumerate(["a", "b", "c"]):
        await asyncio.sleep(0.02)
        if model == "stream-error" and i == 1:
            await resp.write(b'data: {"error": {"message": "runner crashed", "type": "runner_crashed"}}\n\n')
            return resp
        if model == "slow-stream" and i == 1:
            await asyncio.sleep(1)
        await resp.write(_chunk(word))
    await resp.write(_chunk(finish="length"))
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}
    extra = {"profile": {"kv_cache_hit": 5, "preemptions": 0}} if request.headers.get("X-Profile") else {}
    await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage, **extra}).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


@pytest.fixture
async def fake():
    app = web.Application()
    app[BODIES] = []
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app
    await runner.cleanup()


async def test_measures_a_stream(fake) -> None:
    url, app = fake
    async with client.session() as s:
        r = await client.send(s, url, spec(priority=3))
        plain = await client.send(s, url + "/", spec(priority=3), profile=False, extensions=False)
    assert r["ok"] and r["error"] is None and r["status"] == 200 and r["finish_reason"] == "length"
    assert r["chunks"] == 3 and r["completion_tokens"] == 3 and r["prompt_tokens"] == 9
    assert r["ttft_ms"] >= 15 and r["e2e_ms"] >= r["ttft_ms"] and len(r["gaps_ms"]) == 2
    assert all(g >= 10 for g in r["gaps_ms"])
    assert r["profile"] == {"kv_cache_hit": 5, "preemptions": 0} and r["cached_tokens"] == 5
    assert plain["profile"] is None and plain["cached_tokens"] == 4
    (b1, h1), (b2, h2) = app[BODIES]
    assert h1.get("X-Profile") == "1" and "X-Profile" not in h2
    assert b1["priority"] == 3 and "priority" not in b2
    assert (
        b1["stream"] is True and b1["stream_options"] == {"include_usage": True} and b1["ignore_eos"] is True
    )


@pytest.mark.parametrize(
    ("model", "kw", "want"),
    [
        ("http-error", {}, "HTTP 404: no such model"),
        ("stream-error", {}, "stream error: runner crashed"),
        ("slow-stream", {"timeout_s": 0.5}, "timeout after 0.5 s"),
    ],
)
async def test_errors_are_records(fake, model, kw, want) -> None:
    url, _ = fake
    async with client.session() as s:
        r = await client.send(s, url, spec(model=model), **kw)
    assert not r["ok"] and not r["cancelled"] and r["error"] == want
    assert r["e2e_ms"] is not None


async def test_unreachable_server_is_a_record() -> None:
    async with client.session() as s:
        r = await client.send(s, "http://127.0.0.1:9", spec())
    assert not r["ok"] and r["error"].startswith("ClientConnectorError")


@pytest.mark.parametrize("model", ["slow-headers", "slow-stream"])
async def test_cancel_after(fake, model) -> None:
    """The client gives up after cancel_after_ms, also while the server has not answered yet."""
    url, _ = fake
    async with client.session() as s:
        r = await client.send(s, url, spec(model=model, cancel_after_ms=300))
    assert r["cancelled"] and not r["ok"] and r["error"] is None
    assert 250 < r["e2e_ms"] < 1500


async def test_run_phase_closed_and_open(fake) -> None:
    url, _ = fake
    done = []
    async with client.session() as s:
        closed = Phase(
            label="c=2", mode="closed", concurrency=2, rate=None, requests=[spec(i) for i in range(5)]
        )
        recs, wall = await client.run_phase(s, url, closed, on_done=done.append)
        assert sorted(r["index"] for r in recs) == list(range(5)) and len(done) == 5
        assert all(r["ok"] for r in recs) and wall > 0
        opened = Phase(
            label="p",
            mode="poisson",
            concurrency=None,
            rate=None,
            requests=[spec(i, arrival_s=0.1 * i) for i in range(4)],
        )
        recs, wall = await client.run_phase(s, url, opened)
    assert wall >= 0.3
    for r in recs:
        assert r["sent_s"] >= r["scheduled_s"] - 0.005 and r["end_s"] >= r["sent_s"]
