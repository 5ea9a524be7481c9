"""One-slot runners: a paused request swapped to host memory to make room, and
the wait-queue bound (--max-queue) answering 429."""

from __future__ import annotations

import asyncio

import pytest

from runner_harness import (  # noqa: F401  (client is a fixture)
    Client, assert_error, client, greedy, load_model, running, split_stream, stream_text, stream_tokens, wait_until,
)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    with running(tmp_path_factory.mktemp("runner-one-slot")) as r:
        load_model(r, n_parallel=1, n_ctx=2048)
        yield r


async def slot_of(client, rid: str) -> dict | None:
    kv = await client.kv()
    return next((s for s in kv["slots"] if s["request_id"] == rid), None)


async def test_paused_request_is_swapped_out_for_another_and_resumes_identically(client):
    body_a = greedy("List some fruits:", 40, ignore_eos=True)
    body_b = greedy("The tallest mountain on Earth is", 16, ignore_eos=True)
    ref_a = await client.complete(body_a)
    ref_b = await client.complete(body_b)
    swaps_before = (await client.stats())["counters"]["swaps_out"]

    rid = "A"
    seen = []
    async with client.open_stream({**body_a, "id": rid}) as records:
        async for rec in records:
            seen.append(rec)
            if len(seen) == 3:
                status, out = await client.control("pause", rid)
                assert status == 200 and out["ok"] is True

                async def paused():
                    s = await slot_of(client, rid)
                    return s is not None and s["state"] == "paused"

                await wait_until(paused, timeout=10, what="A paused in its slot")

                # B needs the only slot: A is saved to host memory, B runs to completion
                b = await asyncio.wait_for(client.complete(body_b), 120)
                assert b["finish_reason"] == "length"
                assert b["tokens"] == ref_b["tokens"]
                assert b["stats"]["swaps"] == 0 and b["stats"]["slot"] == 0
                assert await slot_of(client, rid) is None  # A is out of the slot ...
                stats = await client.stats()
                assert stats["active"] == 1 and stats["queued"] == 0  # ... but still alive
                assert stats["counters"]["swaps_out"] == swaps_before + 1

                status, out = await client.control("resume", rid)
                assert status == 200 and out["ok"] is True
    _, final = split_stream(seen)
    assert final["finish_reason"] == "length"
    assert final["stats"]["swaps"] >= 1 and final["stats"]["pauses"] == 1
    assert final["stats"]["completion_tokens"] == 40
    assert stream_tokens(seen) == ref_a["tokens"]
    assert stream_text(seen) == ref_a["content"]
    stats = await client.stats()
    assert stats["active"] == 0 and stats["queued"] == 0


async def test_cancel_of_a_swapped_out_request(client):
    rid = "swapped-then-cancelled"
    seen = []
    async with client.open_stream(greedy("Count to ten:", 300, ignore_eos=True, id=rid)) as records:
        async for rec in records:
            seen.append(rec)
            if len(seen) == 2:
                assert (await client.control("pause", rid))[0] == 200
                await wait_until(lambda: _state_is(client, rid, "paused"), timeout=10, what="paused")
                await client.complete(greedy("Hi", 4))  # swaps the paused request out
                assert await slot_of(client, rid) is None
                status, out = await client.control("cancel", rid)
                assert status == 200 and out["ok"] is True
    _, final = split_stream(seen)
    assert final["finish_reason"] == "cancelled"
    assert final["stats"]["swaps"] == 1
    # (the counters are a snapshot the loop refreshes after each step: poll, briefly)
    await wait_until(lambda: _counts(client, active=0, queued=0), timeout=5, what="no active request")


async def _state_is(client, rid: str, state: str) -> bool:
    s = await slot_of(client, rid)
    return s is not None and s["state"] == state


# ---------------------------------------------------------------- queue bound


@pytest.fixture
def queue1_runner(tmp_path):
    with running(tmp_path, "--max-queue", "1") as r:
        load_model(r, n_parallel=1, n_ctx=2048)
        yield r


async def test_full_queue_answers_429_and_frees_up(queue1_runner):
    long = greedy("Tell me a very long story:", 500, ignore_eos=True)
    async with Client(queue1_runner) as c:
        async with c.open_stream({**long, "id": "in-slot"}) as a:
            await asyncio.wait_for(anext(a), 120)  # A holds the slot
            await wait_until(lambda: _counts(c, active=1, queued=0), timeout=10, what="A in the slot")
            async with c.open_stream({**long, "id": "queued"}) as b:
                await wait_until(lambda: _counts(c, active=1, queued=1), timeout=10, what="B queued")

                status, out = await c.post("/completion", greedy("One more", 4, stream=False))
                assert_error(status, out, 429, "queue_full")
                status, out = await c.post("/completion", greedy("One more", 4, stream=True))
                assert_error(status, out, 429, "queue_full")
                stats = await c.stats()
                assert stats["counters"]["rejected"] == 2
                assert stats["active"] == 1 and stats["queued"] == 1

                # cancel the queued one, then the running one: both streams end "cancelled"
                assert (await c.control("cancel", "queued"))[0] == 200
                b_records = [rec async for rec in b]
                _, b_final = split_stream(b_records)
                assert b_final["finish_reason"] == "cancelled" and b_final["stats"]["completion_tokens"] == 0
            assert (await c.control("cancel", "in-slot"))[0] == 200
            a_rest = [rec async for rec in a]
            assert a_rest[-1]["finish_reason"] == "cancelled"

        # room again
        out = await c.complete(greedy("One more", 4))
        assert out["stats"]["completion_tokens"] == 4
        stats = await c.stats()
        assert stats["active"] == 0 and stats["queued"] == 0 and stats["counters"]["rejected"] == 2


async def _counts(client, *, active: int, queued: int) -> bool:
    stats = await client.stats()
    return stats["active"] == active and stats["queued"] == queued


async def test_queue_bound_holds_while_the_first_request_is_in_prefill(queue1_runner):
    """Slot 1 + queue 1 = 2 requests at most, also while the first one's prompt is being decoded.

    A has a long prompt, so its first decode step (admitted, prompt in the batch)
    takes a while; B and C arrive during it. C must be refused.
    """
    async with Client(queue1_runner) as c:
        toks = (await c.ok("POST", "/tokenize", {"content": "hello " * 1200}))["tokens"][:1000]
        long = {"max_tokens": 500, "ignore_eos": True, "temperature": 0.0}
        async with c.open_stream({**long, "tokens": toks, "id": "A"}):
            async with c.open_stream({**long, "prompt": "Story:", "id": "B"}):
                # streamed: the status comes as soon as C is queued or refused
                async with c.session.post("/completion", json={**long, "prompt": "Other:", "id": "C"}) as resp:
                    status = resp.status
                    stats = await c.stats()
                    out = await resp.json() if status != 200 else None
                for rid in ("A", "B", "C"):
                    await c.control("cancel", rid)
        assert status == 429, (
            f"3 requests accepted with 1 slot and --max-queue 1 (C got {status}); "
            f"stats then: active {stats['active']}, queued {stats['queued']}")
        assert_error(status, out, 429, "queue_full")


async def test_stats_count_the_cached_tokens_a_request_threw_away(client):
    first = await client.complete(greedy("Tell me about the moon.", 8, ignore_eos=True))
    again = await client.complete(greedy("Tell me about the moon.", 8, ignore_eos=True))
    other = await client.complete(greedy("Completely different words here.", 4, ignore_eos=True))

    def held(prev: dict) -> int:  # the one slot keeps the previous prompt and its output (the last token unevaluated)
        return prev["stats"]["prompt_tokens"] + prev["stats"]["completion_tokens"] - 1

    assert again["stats"]["cached_tokens"] == first["stats"]["prompt_tokens"] - 1
    assert again["stats"]["evicted_tokens"] == held(first) - again["stats"]["cached_tokens"]
    assert other["stats"]["evicted_tokens"] == held(again) - other["stats"]["cached_tokens"]
