"""A shared KV cache that fills up (issue 16): a newcomer never truncates a running request.

Two slots share one 512-cell cache. A request whose prompt does not fit next to the running ones waits in
the queue; when running streams grow into each other, the one admitted last gives way (its state saved to
host memory) and resumes where it was once there is room. Both get every token they asked for; only a
request that fills the cache alone ends with ``context_full``.
"""

from __future__ import annotations

import asyncio

import pytest
from runner_harness import (  # noqa: F401  (client is a fixture)
    client,
    greedy,
    load_model,
    running,
    split_stream,
    stream_tokens,
    wait_until,
)

N_CTX = 512


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    with running(tmp_path_factory.mktemp("runner-kv-full")) as r:
        load_model(r, n_parallel=2, n_ctx=N_CTX)
        yield r


async def _tokens(client, n: int, text: str) -> list[int]:
    toks = (await client.ok("POST", "/tokenize", {"content": text * 400}))["tokens"]
    return toks[:n]


def _body(tokens: list[int], max_tokens: int, rid: str) -> dict:
    return {"tokens": tokens, "max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True, "id": rid,
            "repeat_limit": 0}


async def _run_after_first_tokens(client, first: dict, second: dict, *, after: int = 3,
                                  while_both: object = None) -> tuple[list[dict], list[dict]]:
    """Stream ``first``; once it has ``after`` tokens, stream ``second`` alongside it."""
    seen: list[dict] = []
    started = asyncio.Event()
    other: list[asyncio.Task] = []

    async def first_stream() -> list[dict]:
        async with client.open_stream(first) as records:
            async for rec in records:
                seen.append(rec)
                if len(stream_tokens(seen)) >= after and not started.is_set():
                    started.set()
                    other.append(asyncio.create_task(client.stream(second)))
                    if while_both is not None:
                        await while_both()
        return seen

    a = await asyncio.wait_for(first_stream(), 300)
    b = await asyncio.wait_for(other[0], 300)
    return a, b


async def test_streams_that_grow_into_each_other_both_finish_whole(client):
    before = (await client.stats())["counters"]
    a_body = _body(await _tokens(client, 60, "The river "), 380, "kv-a")        # 440 cells at the end
    b_body = _body(await _tokens(client, 100, "A quiet hill "), 200, "kv-b")    # 300 cells at the end
    a, b = await _run_after_first_tokens(client, a_body, b_body)
    _, fa = split_stream(a)
    _, fb = split_stream(b)
    # the request that was running first is never cut short by the newcomer ...
    assert fa["finish_reason"] == "length" and fa["stats"]["completion_tokens"] == 380, fa
    assert fa["stats"]["kv_preemptions"] == 0
    # ... the newcomer gave way and resumed where it was (test_runner_slots checks that a swapped-out
    # request resumes token for token): it gets every token it asked for
    assert fb["finish_reason"] == "length" and fb["stats"]["completion_tokens"] == 200, fb
    assert fb["stats"]["kv_preemptions"] >= 1 and fb["stats"]["swaps"] >= 1
    assert len(stream_tokens(b)) == 200
    after = (await client.stats())["counters"]
    assert after["kv_full"] > before["kv_full"]
    assert after["kv_preemptions"] - before["kv_preemptions"] == fb["stats"]["kv_preemptions"]
    stats = await client.stats()
    assert stats["active"] == 0 and stats["queued"] == 0


async def test_a_prompt_that_does_not_fit_beside_a_running_stream_waits_for_it(client):
    before = (await client.stats())["counters"]
    a_body = _body(await _tokens(client, 60, "Once upon a time "), 300, "wait-a")
    b_body = _body(await _tokens(client, 440, "In a far land "), 40, "wait-b")  # 64 + 441 + margins > 512
    waited: list[dict] = []

    async def b_is_queued() -> None:
        async def queued() -> bool:
            stats = await client.stats()
            return stats["queued"] == 1 and stats["active"] == 1 and stats
        waited.append(await wait_until(queued, timeout=30, what="the big prompt to wait in the queue"))

    a, b = await _run_after_first_tokens(client, a_body, b_body, while_both=b_is_queued)
    assert waited, "the second request never showed as queued"
    _, fa = split_stream(a)
    _, fb = split_stream(b)
    assert fa["finish_reason"] == "length" and fa["stats"]["completion_tokens"] == 300, fa
    assert fb["finish_reason"] == "length" and fb["stats"]["completion_tokens"] == 40, fb
    assert fb["stats"]["queue_ms"] > fa["stats"]["decode_ms"] * 0.5  # it waited for most of A's decode
    after = (await client.stats())["counters"]
    # it waited: nobody was swapped out (idle prefix caches left by other tests may have been dropped)
    assert after["kv_preemptions"] == before["kv_preemptions"]
    assert fa["stats"]["kv_preemptions"] == fb["stats"]["kv_preemptions"] == 0


async def test_a_request_alone_still_ends_with_context_full(client):
    out = await client.complete(_body(await _tokens(client, N_CTX - 40, "Hello there "), 100, "alone"))
    assert out["finish_reason"] == "context_full"
    assert out["stats"]["prompt_tokens"] + out["stats"]["completion_tokens"] >= N_CTX - 1
