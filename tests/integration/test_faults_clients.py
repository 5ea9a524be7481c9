"""Fault tolerance with real processes: a hundred clients that walk away mid-stream (or while queued)
free every slot and in-flight count. Shared helpers in ``faults_harness.py``.

Each test starts its own ``mullama serve`` (``supervisor_harness.Server``) in its own
process group; runners join that group, so "no orphans" means: nothing of the group is left
once the supervisor is gone, and no zombie sits under a live supervisor. Waits are generous
polls, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time

import aiohttp
from faults_harness import (
    ONE_THREAD,
    Q4,
    _chat,
    _group,
    _ps,
    _second_model,  # noqa: F401  (a fixture)
    _until,
)
from supervisor_harness import Server, base_settings


async def _walk_away(session: aiohttp.ClientSession, url: str, model: str, after_first: bool,
                     delay: float) -> str:
    """Start a stream; drop the connection after its first token, or after ``delay`` s (maybe still queued)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 500, "stream": True, "ignore_eos": True}
    try:
        async with asyncio.timeout(None if after_first else delay):
            async with session.post(url, json=body) as resp:
                if resp.status != 200:
                    return f"status {resp.status}"
                async for line in resp.content:
                    if line.startswith(b"data: ") and b'"content"' in line and after_first:
                        resp.close()  # hang up mid-stream
                        return "after_first"
                return "finished"
    except TimeoutError:
        return "after_delay"


async def test_100_clients_hanging_up_mid_stream_free_every_slot(tmp_path):
    server = Server(tmp_path, base_settings(n_parallel=8, **ONE_THREAD))
    try:
        status, _ = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))
        assert status == 200
        rng = random.Random(6)
        url = server.url + "/v1/chat/completions"
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            outcomes = await asyncio.wait_for(asyncio.gather(*(
                _walk_away(session, url, Q4, after_first=i % 3 != 0, delay=rng.uniform(0.05, 1.5))
                for i in range(100))), 180)
        counts = {k: outcomes.count(k) for k in set(outcomes)}
        print(f"100 clients: {counts}")
        assert set(outcomes) <= {"after_first", "after_delay"}, counts

        def settled() -> bool:
            view = server.call("GET", "/internal/scheduler")[1]
            kv = server.call("GET", f"/internal/kv/{Q4}")[1]
            ps = _ps(server)
            return (not view["running"] and not view["queue"] and ps[0]["in_flight"] == 0
                    and all(s["request_id"] is None for s in kv["slots"]))

        await _until(settled, 20, "every slot and in-flight count to be freed", step=0.2)
        status, body = server.call("POST", "/v1/chat/completions", _chat(Q4, n=4))
        assert status == 200 and body["choices"][0]["message"]["content"]
        assert not server.events("unhandled")
        assert len(_group(server)) == 1
    finally:
        server.stop()


def test_a_client_that_stops_reading_is_cut_off_and_frees_its_slot(tmp_path):
    """A streaming client that keeps its socket open but reads nothing (issue 16: it held its slot for 330 s
    and starved a one-slot model) is cut off after stream_write_timeout: the connection is aborted, the
    runner stops generating for it, the slot serves the next request, and the event says why."""
    server = Server(tmp_path, base_settings(n_parallel=1, stream_write_timeout="2s"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))[0] == 200  # loaded
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        body = json.dumps({"model": Q4, "messages": [{"role": "user", "content": "Tell me a long story."}],
                           "max_tokens": 3000, "stream": True, "ignore_eos": True, "temperature": 0}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (server.port, len(body), body))  # ... and never read the answer
        deadline = time.monotonic() + 120  # ~48 KiB unread: a few hundred tokens, then 2 s
        while not server.events("client_stalled") and time.monotonic() < deadline:
            time.sleep(0.2)
        [stalled] = server.events("client_stalled")
        assert stalled["model"] == Q4 and stalled["timeout_s"] == 2
        t0 = time.monotonic()
        status, out = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2), timeout=60)
        assert status == 200 and out["choices"][0]["message"]["content"]
        assert time.monotonic() - t0 < 30  # the one slot was free again, not held by the silent client
        view = server.call("GET", "/internal/scheduler")[1]
        assert not view["running"] and not view["queue"]
        [finished] = [e for e in server.events("finished") if e["id"] == stalled["id"]] or [None]
        assert finished is None  # it never finished: it was cancelled, not generated to the end
        assert not server.events("unhandled")
    finally:
        sock.close()
        server.stop()



async def test_embeddings_are_scheduled_visible_and_stop_when_their_client_leaves(tmp_path):
    """Embeddings go through the scheduler like completions (issue 16: they bypassed it, and 1000 inputs
    kept the runner busy for 400 s after their client left): a big one holds the model's one slot and is
    shown in /internal/scheduler, a second one queues behind it, and when the first one's client hangs up
    the slot goes to the next request at once and the runner stops its work at the next chunk."""
    server = Server(tmp_path, base_settings(n_parallel=1))
    try:
        assert server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))[0] == 200
        text = "The quick brown fox jumps over the lazy dog. " * 4
        big = {"model": Q4, "input": [f"{i} {text}" for i in range(200)]}
        session = aiohttp.ClientSession()
        request = asyncio.ensure_future(session.post(server.url + "/v1/embeddings", json=big))

        def rows(part: str) -> list[dict]:
            view = server.call("GET", "/internal/scheduler")[1]
            found = view["queue"] if part == "queue" else [r for rs in view["running"].values() for r in rs]
            return [r for r in found if r["id"].startswith("embd-")]

        await _until(lambda: bool(rows("running")), 30, "the embedding to run in the scheduler", step=0.1)
        second = asyncio.ensure_future(asyncio.to_thread(
            server.call, "POST", "/v1/embeddings", {"model": Q4, "input": "one more"}, timeout=300))
        await _until(lambda: bool(rows("queue")), 30, "a second embedding to queue behind it", step=0.1)
        request.cancel()
        await session.close()  # the first client hangs up
        status, out = await asyncio.wait_for(second, 120)
        assert status == 200 and len(out["data"]) == 1
        await _until(lambda: bool(server.events("embedding_cancelled")), 120,
                     "the runner to stop the abandoned embedding", step=0.2)
        assert server.events("embedding_cancelled")[0]["stopped_early"] is True
        assert not rows("running") and not rows("queue")
        assert not server.events("unhandled")
    finally:
        server.stop()
