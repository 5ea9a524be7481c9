"""Speculative decoding with a draft model (llama.cpp's draft-simple; ``runner_ext/spec_draft.cpp``).

Real models: SmolLM2 Q8_0 is the target, the bundled SmolLM2 Q4_1 drafts for it (the same vocabulary).
The draft model's cache follows each stream lazily, so streams that end, come back or share a slot with
another request must still get the target's own output: the draft only proposes, the target decides.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from gguf_factory import write_tiny_llama
from runner_harness import Client, greedy, load_model, load_params, model_path, running
from supervisor_harness import Server, base_settings, q8_variant
from test_speculative import REPEAT, STORY, run, same_but_near_ties

from mullama import _engine, engine
from mullama.core.errors import InvalidArgument, ModelFileNotFound

PROMPTS = (STORY, REPEAT, "<|im_start|>user\nName three rivers of Europe.<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def target():
    with engine.Model(str(q8_variant())) as model, \
            engine.Context(model, engine.ContextParams(n_ctx=8192, n_threads=2, n_seq_max=3)) as ctx:
        yield model, ctx


@pytest.fixture(scope="module")
def plain(target):
    """Each prompt decoded alone by the target, no speculation, with its top two log-probabilities."""
    return [run(*target, [text], _engine.SpecParams(), n_probs=2)[0] for text in PROMPTS]


def drafting(n_max: int = 4, **kw) -> _engine.SpecParams:
    return _engine.SpecParams(types=["draft-simple"], draft_model=model_path(), n_max=n_max, **kw)


@pytest.mark.parametrize("n_max", [1, 4, 8])
def test_greedy_output_is_the_targets_whatever_the_draft_length(target, plain, n_max):
    """Measured: identical token for token on all three prompts at every draft length."""
    for ref in plain:
        ev, = run(*target, [PROMPTS[plain.index(ref)]], drafting(n_max))
        assert ev.finish_reason == "length"
        same_but_near_ties(ev.tokens, ref)
        # a Q4_1 copy of the same weights agrees with its Q8_0 target most of the time
        assert ev.stats.draft_tokens >= 20 and ev.stats.draft_accepted > ev.stats.draft_tokens // 2


def test_streams_ending_and_starting_in_the_same_slots_keep_their_own_answers(target, plain):
    """More requests than slots: each later one takes a slot whose draft cache holds another's tokens."""
    out = run(*target, [*PROMPTS, *PROMPTS], drafting(), max_tokens=48)
    for ev in out:
        assert ev.finish_reason == "length" and len(ev.tokens) == 48 and ev.stats.draft_tokens > 0
        assert ev.stats.draft_accepted <= ev.stats.draft_tokens


def test_a_draft_p_min_of_one_drafts_nothing_and_changes_nothing(target, plain):
    ev, = run(*target, [STORY], drafting(draft_p_min=1.0))
    assert ev.tokens == plain[0].tokens and ev.stats.draft_tokens == 0


def test_logprobs_and_limits_hold_with_a_draft_model(target, plain):
    ev, = run(*target, [REPEAT], drafting(), max_tokens=29, n_probs=2)
    same_but_near_ties(ev.tokens, SimpleNamespace(tokens=plain[1].tokens[:29], probs=plain[1].probs[:29]))
    assert len(ev.tokens) == len(ev.probs) == ev.stats.completion_tokens == 29


def test_a_draft_with_another_vocabulary_is_refused(target, tmp_path):
    other = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(InvalidArgument, match="vocab"):
        _engine.Batcher(*target, 20.0, _engine.SpecParams(types=["draft-simple"], draft_model=str(other)))


@pytest.mark.parametrize("spec, error, says", [
    ({"types": ["draft-simple"]}, InvalidArgument, "go together"),
    ({"types": ["ngram-mod"], "draft_model": "x.gguf"}, InvalidArgument, "go together"),
    ({"types": ["draft-simple"], "draft_model": "/nonexistent/d.gguf"}, ModelFileNotFound, "d.gguf"),
    ({"types": ["draft-simple"], "draft_model": "DRAFT", "draft_p_min": 1.5}, InvalidArgument, "draft_p_min"),
])
def test_bad_draft_parameters_are_refused(target, spec, error, says):
    spec = {**spec, "draft_model": model_path()} if spec.get("draft_model") == "DRAFT" else spec
    with pytest.raises(error, match=says):
        _engine.Batcher(*target, 20.0, _engine.SpecParams(**spec))


# ---------------------------------------------------------------- through a runner


def test_a_runner_speculates_with_a_draft_model_for_concurrent_requests(tmp_path):
    with running(tmp_path) as r:
        load_model(r, model=str(q8_variant()), n_parallel=2, n_ctx=4096,
                   speculative={"types": ["draft-simple"], "draft_model": model_path(), "n_max": 4})

        async def go() -> list[dict]:
            async with Client(r) as client:
                return await asyncio.gather(*(client.complete(greedy(p, 48)) for p in PROMPTS))

        out = asyncio.run(go())
        assert all(len(o["tokens"]) == 48 and o["stats"]["draft_tokens"] > 0 for o in out)

        async def kv() -> dict:
            async with Client(r) as client:
                return await client.kv()

        assert asyncio.run(kv())["draft_accepted"] > 0


def test_a_runner_refuses_a_missing_draft_model_at_commit_and_stays_up(tmp_path):
    with running(tmp_path) as r:
        r.load("alloc", **load_params(n_ctx=2048, n_parallel=2, speculative={
            "types": ["draft-simple"], "draft_model": "/nonexistent/d.gguf"}))
        status, body = r.load("commit", expect=None)
        assert status >= 400 and "d.gguf" in str(body)
        assert r.alive()


def test_a_server_names_a_missing_draft_model_and_stays_up(tmp_path):

    server = Server(tmp_path, base_settings(models={"smollm2": {"speculative": {"draft_model": "/nonexistent/d.gguf"}}}))
    try:
        status, body = server.call("POST", "/v1/completions", {"model": "smollm2", "prompt": "Hi", "max_tokens": 4})
        assert status == 404 and "/nonexistent/d.gguf" in body["error"]["message"], body
        assert server.call("GET", "/health")[0] == 200
    finally:
        server.stop()
