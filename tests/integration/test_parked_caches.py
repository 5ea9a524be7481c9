"""Idle slots' prefix caches parked in host memory (``cache_ram``; ``Batcher::park_idle`` / ``unpark``).

In one shared KV cache every decode attends over every cell up to the last one in use, so caches left
there by idle slots slow the running streams. With ``cache_ram`` set, a request coming into a slot moves
every idle slot's cache to host memory; a later request that reuses one loads it back. The output must
be what it is without parking, and the prefix cache must still hit.
"""

from __future__ import annotations

import os
import select
import time
from types import SimpleNamespace

import pytest
from runner_harness import Client, greedy, load_model, running

from mullama import _engine, engine

A = "<|im_start|>user\nWrite a short poem about the sea and the ships on it.<|im_end|>\n<|im_start|>assistant\n"
B = "<|im_start|>user\nName three rivers of Europe and the cities on them.<|im_end|>\n<|im_start|>assistant\n"
C = "<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def loaded(smollm_path):
    with engine.Model(str(smollm_path)) as model, \
            engine.Context(model, engine.ContextParams(n_ctx=4096, n_threads=2, n_seq_max=3)) as ctx:
        yield model, ctx


class Loop:
    """One Batcher; ``run`` submits one request and waits for its final event."""

    def __init__(self, model: engine.Model, ctx: engine.Context, cache_ram: int) -> None:
        self.model, self.ctx = model, ctx
        self.batcher: _engine.Batcher | None = _engine.Batcher(model, ctx, 20.0)
        self.batcher.set_cache_ram(cache_ram)
        self.n = 0

    def run(self, text: str, max_tokens: int = 24) -> SimpleNamespace:
        self.n += 1
        params = engine.GenerateParams(max_tokens=max_tokens, sampling=engine.SamplingParams(temperature=0))
        self.batcher.submit(f"r{self.n}", self.model.tokenize(text, True, True), params)
        tokens: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([self.batcher.event_fd], [], [], 0.5)[0]:
                os.read(self.batcher.event_fd, 8)
            for ev in self.batcher.drain():
                tokens += ev.tokens
                if ev.done:
                    return SimpleNamespace(tokens=tokens, stats=ev.stats)
        raise AssertionError("the batcher did not finish")

    def slot(self, index: int) -> _engine.SlotInfo:
        return self.batcher.slots()[index]

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
            self.batcher = None  # its claim on the context goes with it


@pytest.fixture
def loop(loaded):
    made: list[Loop] = []

    def make(cache_ram: int = 1 << 30) -> Loop:
        made.append(Loop(*loaded, cache_ram))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_an_idle_cache_leaves_the_kv_cache_when_a_request_comes_in(loop):
    lp = loop()
    a = lp.run(A)
    assert not lp.slot(a.stats.slot).parked  # nothing came in since: it stays where it is
    b = lp.run(B)
    assert b.stats.slot != a.stats.slot
    assert lp.slot(a.stats.slot).parked and lp.slot(a.stats.slot).n_tokens > 0  # its tokens are known ...
    assert lp.ctx.kv_seq_pos_max(a.stats.slot) == -1  # ... its cells are free
    assert lp.ctx.kv_seq_pos_max(b.stats.slot) >= 0
    c = lp.batcher.counters()
    assert c.parks == 1 and c.parked_slots == 1 and c.parked_bytes > 0


def test_a_parked_cache_comes_back_for_the_request_that_reuses_it(loop):
    plain = loop(0)
    ref = plain.run(A)
    plain.close()
    lp = loop()
    first = lp.run(A)
    lp.run(B)
    again = lp.run(A)  # the same prompt: everything but its last token is reused
    assert again.stats.slot == first.stats.slot
    assert again.stats.cached_tokens == again.stats.prompt_tokens - 1
    assert again.tokens == first.tokens == ref.tokens
    assert lp.batcher.counters().unparks == 1
    # the conversation goes on: the prompt holds the whole answer, and all of it comes back
    longer = lp.run(A + lp.model.detokenize(first.tokens, False, False) + "<|im_end|>\n<|im_start|>user\nMore.<|im_end|>\n")
    assert longer.stats.cached_tokens > first.stats.prompt_tokens


def test_the_host_memory_limit_drops_the_least_recently_used_cache(loop):
    probe = loop()
    probe.run(A)
    probe.run(B)
    one = probe.batcher.counters().parked_bytes
    probe.close()
    lp = loop(int(one * 1.5))  # room for one parked cache
    a = lp.run(A)
    lp.run(B)
    lp.run(C)  # parks B's cache: A's, the older, goes
    assert [s.parked for s in lp.batcher.slots()].count(True) == 1
    assert lp.slot(a.stats.slot).n_tokens == 0
    c = lp.batcher.counters()
    assert c.parks == 2 and c.prefix_evictions >= 1
    again = lp.run(A)
    assert again.stats.cached_tokens < 8 and again.tokens == a.tokens  # evaluated again, same answer


def test_a_long_parked_cache_is_not_loaded_back_for_a_short_shared_start(loop):
    lp = loop()
    long_a = lp.run(A, max_tokens=64)
    lp.run(B)
    lp.run(C)  # every slot has a cache now; the next request takes the least recently used: A's
    d = lp.run("<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n")
    assert d.stats.slot == long_a.stats.slot
    assert lp.batcher.counters().unparks == 0  # a few template tokens are not worth loading 80 back
    assert d.stats.cached_tokens == 0 and d.stats.evicted_tokens > 64


def test_off_leaves_idle_caches_in_the_kv_cache(loop):
    lp = loop(0)
    a = lp.run(A)
    lp.run(B)
    assert not lp.slot(a.stats.slot).parked and lp.ctx.kv_seq_pos_max(a.stats.slot) >= 0
    assert lp.batcher.counters().parks == 0


# ---------------------------------------------------------------- through a runner


async def test_a_runner_parks_with_cache_ram_and_shows_it_in_its_kv_view(tmp_path):
    with running(tmp_path) as r:
        load_model(r, n_parallel=4, cache_ram=1 << 30)
        async with Client(r) as client:
            first = await client.complete(greedy(A, 8))
            await client.complete(greedy(B, 8))
            kv = await client.kv()
            parked = [s for s in kv["slots"] if s["parked"]]
            assert len(parked) == 1 and kv["parks"] == 1 and kv["parked_bytes"] > 0
            assert kv["cells_used"] == sum(s["n_tokens"] for s in kv["slots"] if not s["parked"])
            again = await client.complete(greedy(A, 8))
            assert again["tokens"] == first["tokens"] and again["stats"]["cached_tokens"] > 0
            assert (await client.kv())["unparks"] == 1
