"""Fault tolerance with real processes: a hundred clients that walk away mid-stream (or while queued)
free every slot and in-flight count. Shared helpers in ``faults_harness.py``.

Each test starts its own ``mullama serve`` (``supervisor_harness.Server``) in its own
process group; runners join that group, so "no orphans" means: nothing of the group is left
once the supervisor is gone, and no zombie sits under a live supervisor. Waits are generous
polls, never sleeps.
"""

from __future__ import annotations

import asyncio
import random

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
