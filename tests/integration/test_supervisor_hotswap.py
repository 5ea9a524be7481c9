"""Quantisation hot-swap and pinned preloads with real runners.

``POST /internal/models/smollm2/variant {"variant": "q8_0"}`` while four clients keep asking
for "smollm2": no request fails, the family moves from SmolLM2 Q4_1 to Q8_0, and requests that
name a variant exactly keep getting it. Once with memory for both variants (the new one loads
while the old one serves: "parallel"), once with a budget that holds one ("drain"). Each swap
test has its own server (the swap changes it); the error paths share one.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from supervisor_harness import Server, base_settings, q8_variant
from supervisor_harness import metric_value as _metric

FAMILY, Q4, Q8 = "smollm2", "smollm2:q4_1", "smollm2:q8_0"
ONE_MODEL_BUDGET = "420MiB"  # one SmolLM2 takes ~250-300 MiB here (weights + 2048-token KV + compute)
CLIENTS = 4
LONG_TOKENS = 300


@pytest.fixture(scope="module", autouse=True)
def _second_model():
    q8_variant()


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("hotswap-plain"), base_settings(prefetch="none"))
    try:
        yield srv
    finally:
        srv.stop()


def _client(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def _chat(model: str, text: str = "Name a colour.", n: int = 4) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": n,
            "temperature": 0}


def _switch(server: Server, variant: Any, family: str = FAMILY) -> tuple[int, Any]:
    return server.call("POST", f"/internal/models/{family}/variant", {"variant": variant})


@dataclass(frozen=True)
class Outcome:
    client: int         # -1: the long request
    started: float      # monotonic, client side
    ended: float
    model: str | None   # response.model; None on failure
    error: str | None
    tokens: int = 0


@dataclass(frozen=True)
class Swap:
    status: int
    record: Any
    outcomes: list[Outcome]   # the short requests
    long: Outcome             # the long request that was running across the switch
    sent: float               # monotonic: the switch request went out
    answered: float           # monotonic: its answer came back


async def _long_request(client: openai.AsyncOpenAI, streaming: asyncio.Event) -> Outcome:
    """A streamed LONG_TOKENS-token request for the family; ``streaming`` is set at its first token."""
    t0, models, tokens = time.monotonic(), set(), 0
    try:
        stream = await client.chat.completions.create(
            **_chat(FAMILY, "Count from one to one thousand.", n=LONG_TOKENS), stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        async for chunk in stream:
            models.add(chunk.model)
            if chunk.choices and chunk.choices[0].delta.content:
                streaming.set()
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    except openai.APIError as exc:
        return Outcome(-1, t0, time.monotonic(), None, f"{type(exc).__name__}: {exc}", tokens)
    [model] = models
    return Outcome(-1, t0, time.monotonic(), model, None, tokens)


async def _swap_under_load(server: Server, variant: str) -> Swap:
    """Switch the family's variant while one long request runs and ``CLIENTS`` clients loop short ones."""
    client = _client(server)
    stop, streaming = asyncio.Event(), asyncio.Event()
    outcomes: list[Outcome] = []

    async def worker(i: int) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = await client.chat.completions.create(**_chat(FAMILY, f"Name colour number {i}."))
                assert r.choices[0].message.content is not None
                outcomes.append(Outcome(i, t0, time.monotonic(), r.model, None, r.usage.completion_tokens))
            except openai.APIError as exc:
                outcomes.append(Outcome(i, t0, time.monotonic(), None, f"{type(exc).__name__}: {exc}"))

    async def served(n: int, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while len(outcomes) < n:
            assert time.monotonic() < deadline, f"the load generator stalled: {outcomes[-5:]}"
            await asyncio.sleep(0.05)

    long = asyncio.ensure_future(_long_request(client, streaming))
    workers = [asyncio.ensure_future(worker(i)) for i in range(CLIENTS)]
    try:
        await asyncio.wait_for(streaming.wait(), 120)
        await served(2 * CLIENTS, 120)
        sent = time.monotonic()
        status, record = await asyncio.to_thread(_switch, server, variant)
        answered = time.monotonic()
        await served(len(outcomes) + 2 * CLIENTS, 180)
        long_outcome = await asyncio.wait_for(long, 300)
    finally:
        stop.set()
        long.cancel()
        await asyncio.wait_for(asyncio.gather(*workers, long, return_exceptions=True), 120)
        await client.close()
    return Swap(status, record, outcomes, long_outcome, sent, answered)


def _check_swap(server: Server, swap: Swap, mode: str) -> None:
    assert swap.status == 200, swap.record
    assert [o.error for o in [*swap.outcomes, swap.long] if o.error] == []
    record = swap.record
    assert {k: record[k] for k in ("family", "variant", "model", "previous", "mode")} == {
        "family": FAMILY, "variant": "q8_0", "model": Q8, "previous": Q4, "mode": mode}
    assert record["swap_ms"] > 0
    # the long request started on Q4_1, ran across the switch and finished there, whole
    assert (swap.long.model, swap.long.tokens) == (Q4, LONG_TOKENS)
    assert swap.long.started < swap.sent < swap.long.ended
    before = [o.model for o in swap.outcomes if o.ended < swap.sent]
    after = [o.model for o in swap.outcomes if o.started > swap.answered]
    assert before and set(before) == {Q4}
    assert after and set(after) == {Q8}
    for i in range(CLIENTS):  # each client's requests are sequential: it moves over once, never back
        models = [o.model for o in sorted(swap.outcomes, key=lambda o: o.started) if o.client == i]
        assert models == sorted(models, key=lambda m: m == Q8), (i, models)
    status, view = server.call("GET", "/internal/models")
    assert status == 200
    assert view["variants"] == {FAMILY: "q8_0"}
    [row] = view["swaps"]
    assert {k: row[k] for k in ("family", "variant", "model", "previous", "mode")} == {
        "family": FAMILY, "variant": "q8_0", "model": Q8, "previous": Q4, "mode": mode}
    assert row["swap_ms"] == record["swap_ms"]
    assert view["counters"].get("swaps") == 1
    assert _metric(server, "mullama_model_swaps_total", model=Q8) == 1


@pytest.mark.parametrize("settings, mode", [
    ({}, "parallel"),  # memory for both: Q8_0 loads while Q4_1 serves
    ({"memory_budget": ONE_MODEL_BUDGET}, "drain"),  # one at a time: flip, drain Q4_1, load Q8_0
], ids=["parallel", "drain"])
async def test_a_variant_switch_under_load_fails_no_request(tmp_path, settings, mode):
    # a generous drain timeout: requests that outlive it are cancelled by design, and this box is slow
    # one thread per runner: in parallel mode two runners decode at once, and two 2-thread runners on the
    # 2-core CI box spin against each other (ggml's pool busy-waits) until everything crawls
    server = Server(tmp_path, base_settings(n_parallel=CLIENTS + 1, prefetch="none", drain_timeout="300s",
                                            threads=1, threads_batch=1,
                                            **settings))
    try:
        status, _ = await asyncio.to_thread(server.call, "POST", "/v1/chat/completions", _chat(FAMILY, n=2))
        assert status == 200
        swap = await _swap_under_load(server, "q8_0")
        if os.environ.get("MULLAMA_DEBUG_SWAP"):
            print("\n".join(line for line in server.lines if any(
                k in line for k in ("unload", "drain", "exited", "crash", "stream_failed", "swap", "runner_kill"))))
        _check_swap(server, swap, mode)

        # naming a variant exactly still reaches it, and the family name stays on Q8_0
        client = _client(server)
        explicit = await client.chat.completions.create(**_chat(Q4))
        assert explicit.model == Q4 and explicit.choices[0].message.content
        family = await client.chat.completions.create(**_chat(FAMILY))
        assert family.model == Q8
        latest = await client.chat.completions.create(**_chat(f"{FAMILY}:latest"))
        assert latest.model == Q8
        await client.close()
        status, ps = await asyncio.to_thread(server.call, "GET", "/api/ps")
        loaded = {m["name"] for m in ps["models"] if m["state"] == "ready"}
        assert loaded == ({Q8} if mode == "drain" else {Q4, Q8})  # drain: one fits; Q8_0 evicted Q4_1 again
    finally:
        server.stop()


# ---------------------------------------------------------------------- error paths and no-ops


def test_switching_to_the_serving_variant_is_unchanged(plain):
    status, view = plain.call("GET", "/internal/models")
    current = view["variants"].get(FAMILY, "q4_1")
    swaps = len(view["swaps"])
    status, record = _switch(plain, current)
    assert status == 200, record
    assert record["mode"] == "unchanged"
    assert record["model"] == record["previous"] == f"{FAMILY}:{current}"
    assert record["swap_ms"] == 0
    assert len(plain.call("GET", "/internal/models")[1]["swaps"]) == swaps  # a no-op is not a swap


@pytest.mark.parametrize("family, variant, status, code", [
    (FAMILY, "q3_k", 404, "model_not_found"),
    ("no-such-family", "q8_0", 404, "model_not_found"),
    (FAMILY, "", 400, None),
    (FAMILY, 8, 400, None),
])
def test_a_bad_variant_switch_is_refused(plain, family, variant, status, code):
    got, body = _switch(plain, variant, family)
    assert got == status, body
    err = body["error"]
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    assert plain.call("GET", "/internal/models")[1]["variants"].get(FAMILY) in (None, "q4_1", "q8_0")


@pytest.mark.parametrize("raw", [b"", b"{}", b"not json", b'{"variant": "q8_0", "extra": 1}'])
def test_a_malformed_switch_body_is_a_400(plain, raw):
    req = urllib.request.Request(plain.url + f"/internal/models/{FAMILY}/variant", data=raw, method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 400


# ---------------------------------------------------------------------- pinned preload


def test_a_pinned_preloaded_variant_serves_at_once_and_holds_the_budget(tmp_path):
    server = Server(tmp_path, base_settings(memory_budget=ONE_MODEL_BUDGET, prefetch="none",
                                            models={Q8: {"pinned": True, "preload": True}}))
    try:
        deadline = time.monotonic() + 120
        while True:  # no request: the preload alone brings it up
            status, ps = server.call("GET", "/api/ps")
            rows = {m["name"]: m for m in ps["models"]}
            if rows.get(Q8, {}).get("state") == "ready":
                break
            assert Q8 not in rows or rows[Q8]["state"] in ("loading", "warming"), ps
            assert time.monotonic() < deadline, f"the preload never finished: {ps}"
            time.sleep(0.2)
        pid = rows[Q8]["pid"]
        assert rows[Q8]["pinned"] is True
        assert set(rows) == {Q8}
        view = server.call("GET", "/internal/scheduler")[1]
        assert view["counters"].get("submitted", 0) == 0
        models = {m["name"]: m for m in server.call("GET", "/internal/models")[1]["models"]}
        assert [load["reason"] for load in models[Q8]["loads"]] == ["preload"]

        status, body = server.call("POST", "/v1/chat/completions", _chat(Q4))
        assert status == 507, body
        err = body["error"]
        assert err["code"] == "insufficient_memory"
        assert "budget" in err["message"] and "evict" in err["message"]  # held by the pinned Q8_0

        status, body = server.call("POST", "/v1/chat/completions", _chat(Q8))
        assert status == 200, body
        assert body["model"] == Q8 and body["choices"][0]["message"]["content"]
        rows = {m["name"]: m for m in server.call("GET", "/api/ps")[1]["models"]}
        assert rows[Q8]["state"] == "ready" and rows[Q8]["pid"] == pid
        assert rows.get(Q4, {}).get("state") != "ready"
    finally:
        server.stop()
