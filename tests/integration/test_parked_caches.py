"""Prefix caches parked in host memory (``cache_ram``; ``Batcher::park`` / ``park_idle`` / ``take_parked``).

In one shared KV cache every decode attends over every cell up to the last one in use, so caches left
there by idle slots slow the running streams. With ``cache_ram`` set, a request coming into a slot moves
every other idle slot's cache to host memory, and its slot's own where it would overwrite it; a later
request whose prompt starts with a parked cache loads it back into whatever slot it gets. The output
must be what it is without parking, the prefix cache must still hit, and it holds more prompts than
there are slots.

Why the answers can be compared token for token: llama.cpp's numbers for a token depend a little on where
its sequence's cells sit in the shared cache (docs/engine.md). A parked cache is loaded after every idle
cache has left, so at one stream it lands from cell 0, in order, where its first run had it.
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
        return self.run_all([text], max_tokens)[0]

    def run_all(self, texts: list[str], max_tokens: int = 24) -> list[SimpleNamespace]:
        """All at once; the answers in order."""
        params = engine.GenerateParams(max_tokens=max_tokens, sampling=engine.SamplingParams(temperature=0))
        ids = []
        for text in texts:
            self.n += 1
            ids.append(f"r{self.n}")
            self.batcher.submit(ids[-1], self.model.tokenize(text, True, True), params)
        tokens: dict[str, list[int]] = {rid: [] for rid in ids}
        done: dict[str, SimpleNamespace] = {}
        deadline = time.monotonic() + 60
        while len(done) < len(ids):
            assert time.monotonic() < deadline, "the batcher did not finish"
            if select.select([self.batcher.event_fd], [], [], 0.5)[0]:
                os.read(self.batcher.event_fd, 8)
            for ev in self.batcher.drain():
                tokens[ev.id] += ev.tokens
                if ev.done:
                    done[ev.id] = SimpleNamespace(tokens=tokens[ev.id], stats=ev.stats)
        return [done[rid] for rid in ids]

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
    assert lp.slot(a.stats.slot).n_tokens > 0  # nothing came in since: it stays where it is
    b = lp.run(B)
    assert lp.slot(a.stats.slot).n_tokens == 0 and lp.ctx.kv_seq_pos_max(a.stats.slot) == -1  # its cells are free
    assert lp.ctx.kv_seq_pos_max(b.stats.slot) >= 0
    c = lp.batcher.counters()
    assert c.parks == 1 and c.parked_entries == 1 and c.parked_bytes > 0


def test_a_parked_cache_comes_back_for_the_request_that_reuses_it(loop):
    plain = loop(0)
    ref = plain.run(A)
    plain.close()
    lp = loop()
    first = lp.run(A)
    lp.run(B)
    again = lp.run(A)  # the same prompt: everything but its last token is reused
    assert again.stats.cached_tokens == again.stats.prompt_tokens - 1
    assert again.tokens == first.tokens == ref.tokens
    c = lp.batcher.counters()
    assert c.unparks == 1 and c.parked_entries == 2  # B's went out; A's stays for its answer's tokens
    # the conversation goes on: the prompt holds the whole answer, and all of it comes back
    longer = lp.run(A + lp.model.detokenize(first.tokens, False, False) + "<|im_end|>\n<|im_start|>user\nMore.<|im_end|>\n")
    assert longer.stats.cached_tokens > first.stats.prompt_tokens


def test_a_slot_s_cache_the_next_request_mostly_reuses_stays_where_it_is(loop):
    """No copy out and back for a prompt repeated or a conversation that goes on: only the tail that the
    new prompt does not share is dropped, as llama-server does with a similar slot."""
    lp = loop()
    first = lp.run(A)
    again = lp.run(A)
    assert again.stats.slot == first.stats.slot and again.stats.cached_tokens == again.stats.prompt_tokens - 1
    c = lp.batcher.counters()
    assert c.parks == c.unparks == 0


def test_host_memory_holds_more_prompts_than_there_are_slots(loop):
    lp = loop()
    prompts = [A, B, C, *(f"<|im_start|>user\nCount from {n} to {n + 5}.<|im_end|>\n<|im_start|>assistant\n"
                          for n in (1, 20, 300))]
    first = [lp.run(p) for p in prompts]  # six prompts through three slots
    assert lp.batcher.counters().parked_entries == 5
    for p, ref in zip(prompts, first):
        again = lp.run(p)
        assert again.stats.cached_tokens == again.stats.prompt_tokens - 1 and again.tokens == ref.tokens


def test_a_prompt_that_comes_again_does_not_grow_the_pool(loop):
    """A parked cache that a newer one starts with serves nothing the newer cannot: it is replaced, and its
    memory holds the new state. Before, every repeat of a prompt added a copy (the pool grew towards
    cache_ram, and each new state faulted fresh pages in: 13 ms a 5 MB state on this VM)."""
    lp = loop()
    for _ in range(4):
        for p in (A, B, C, A + "Sure", B + "Yes"):  # five conversations, four times over
            lp.run(p, 8)
    c = lp.batcher.counters()
    assert c.unparks >= 15 and c.parked_entries == 5, (c.parked_entries, c.unparks)  # one per conversation


def test_a_cache_a_request_overwrites_is_kept_in_host_memory(loop):
    """Three requests at once leave three caches in the KV cache: the fourth overwrites the least
    recently used one, which goes to host memory first, and comes back when its prompt does."""
    lp = loop()
    done = lp.run_all([A, B, C])
    lp.run("<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n")
    assert lp.batcher.counters().parked_entries == 3
    for p, ref in zip((A, B, C), done):
        assert lp.run(p).stats.cached_tokens == len(lp.model.tokenize(p, True, True)) - 1


@pytest.fixture
def one_cache(loop) -> int:
    """A host memory limit with room for one parked cache of these prompts' size."""
    probe = loop()
    probe.run(A)
    probe.run(B)
    one = probe.batcher.counters().parked_bytes
    probe.close()
    return int(one * 1.5)


def test_the_host_memory_limit_drops_the_least_recently_used_cache(loop, one_cache):
    lp = loop(one_cache)
    a = lp.run(A)
    lp.run(B)
    lp.run(C)  # parks B's cache: A's, the older, goes
    c = lp.batcher.counters()
    assert c.parks == 2 and c.parked_entries == 1 and c.prefix_evictions >= 1
    again = lp.run(A)
    assert again.stats.cached_tokens < 8 and again.tokens == a.tokens  # evaluated again, same answer


def test_the_cache_a_request_comes_back_for_is_never_the_one_dropped(loop, one_cache):
    """A's parked cache is the least recently used when A comes back, and parking B's then goes past the
    limit: B's must go, not A's, which the request is loading back."""
    lp = loop(one_cache)
    a = lp.run(A)
    lp.run(B)
    again = lp.run(A)
    assert again.stats.cached_tokens == again.stats.prompt_tokens - 1 and again.tokens == a.tokens
    assert lp.batcher.counters().parked_entries == 1  # A's (its answer's tokens were not reused)


def test_a_lower_limit_drops_parked_caches_at_once(loop, one_cache):
    """The supervisor lowers a runner's limit to make room for another model: the caches beyond it go now,
    least recently used first, not at the next park; a slot's own cache stays and still serves."""
    lp = loop()
    a = lp.run(A)
    lp.run(B)
    lp.run(C)
    lp.run(A)  # C's parks, and A's comes back (and stays parked): A's is the most recently used
    before = lp.batcher.counters()
    assert before.parked_entries == 3
    lp.batcher.set_cache_ram(one_cache)
    after = lp.batcher.counters()  # set_cache_ram returns once the loop applied it: no request was needed
    assert (after.parked_entries, after.prefix_evictions) == (1, before.prefix_evictions + 2)
    assert 0 < after.parked_bytes <= one_cache and lp.batcher.cache_ram == one_cache
    again = lp.run(A)  # from its slot
    assert again.stats.cached_tokens == again.stats.prompt_tokens - 1 and again.tokens == a.tokens
    lp.batcher.set_cache_ram(0)  # off: every parked cache goes
    assert (lp.batcher.counters().parked_entries, lp.batcher.counters().parked_bytes) == (0, 0)


def test_a_long_parked_cache_is_not_loaded_back_for_a_short_shared_start(loop):
    lp = loop()
    lp.run(A, max_tokens=64)
    lp.run(B)
    d = lp.run("<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n")
    c = lp.batcher.counters()
    assert c.unparks == 0 and d.stats.cached_tokens == 0  # a few template tokens are not worth loading 80 back
    assert c.parked_entries == 2  # and both stay for their own prompts


def test_off_leaves_idle_caches_in_the_kv_cache(loop):
    lp = loop(0)
    a = lp.run(A)
    lp.run(B)
    assert lp.slot(a.stats.slot).n_tokens > 0 and lp.ctx.kv_seq_pos_max(a.stats.slot) >= 0
    assert lp.batcher.counters().parks == 0


# ---------------------------------------------------------------- through a runner


async def test_a_runner_parks_with_cache_ram_and_shows_it_in_its_kv_view(tmp_path):
    with running(tmp_path) as r:
        load_model(r, n_parallel=4, cache_ram=1 << 30)
        async with Client(r) as client:
            first = await client.complete(greedy(A, 8))
            await client.complete(greedy(B, 8))
            kv = await client.kv()
            assert kv["parks"] == kv["parked_entries"] == 1 and kv["parked_bytes"] > 0
            assert kv["cells_used"] == sum(s["n_tokens"] for s in kv["slots"])  # B's cache: A's left the KV cache
            again = await client.complete(greedy(A, 8))
            assert again["tokens"] == first["tokens"] and again["stats"]["cached_tokens"] > 0
            assert (await client.kv())["unparks"] == 1
            held = (await client.kv())["parked_bytes"]
            assert await client.ok("GET", "/cache-ram") == {"limit": 1 << 30, "held": held}
            assert await client.ok("POST", "/cache-ram", {"limit": 0}) == {"limit": 0, "held": 0}  # applied on answer
            status, body = await client.request("POST", "/cache-ram", {"limit": -5})
            assert status == 400 and "limit" in body["error"]["message"]
