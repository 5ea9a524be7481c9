"""Greedy generation from SmolLM2: real text, determinism, batching, stop strings, finish reasons."""

from __future__ import annotations

import os
import select
import time

import pytest

from helpers import ctx_params, greedy
from mullama import _engine, engine
from mullama.core.errors import ContextOverflow

PROMPT = "The capital of France is"


def test_greedy_continuation_mentions_paris(smollm, smollm_ctx):
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(8))
    assert "Paris" in r.text
    assert r.prompt_tokens == len(smollm.tokenize(PROMPT, True, True))
    assert r.completion_tokens == len(r.tokens) == 8
    assert r.finish_reason == "length"


def test_greedy_generation_is_deterministic(smollm, smollm_ctx):
    a = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(16))
    b = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(16))
    assert a.tokens == b.tokens
    assert a.text == b.text


def test_greedy_is_deterministic_across_contexts(smollm):
    results = []
    for _ in range(2):
        with engine.Context(smollm, ctx_params(n_ctx=512)) as ctx:
            results.append(engine.generate_text(ctx, smollm, PROMPT, greedy(12)).tokens)
    assert results[0] == results[1]


def test_text_is_the_detokenized_tokens(smollm, smollm_ctx):
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(16))
    assert r.text == smollm.detokenize(r.tokens)


def test_seeded_sampling_is_reproducible(smollm, smollm_ctx):
    params = engine.GenerateParams(max_tokens=12, sampling=engine.SamplingParams(temperature=0.9, seed=42))
    a = engine.generate_text(smollm_ctx, smollm, PROMPT, params)
    b = engine.generate_text(smollm_ctx, smollm, PROMPT, params)
    assert a.tokens == b.tokens


MULTI_PROMPTS = [
    "The capital of France is",
    "1, 2, 3, 4,",
    "Once upon a time",
    "def fibonacci(n):",
]


def test_each_sequence_of_a_batch_matches_its_solo_run(smollm):
    prompts = [smollm.tokenize(p, True, True) for p in MULTI_PROMPTS]
    with engine.Context(smollm, ctx_params(n_ctx=1024, n_seq_max=4)) as ctx:
        together = ctx.generate(smollm, prompts, [greedy(24, ignore_eos=True) for _ in prompts])
    with engine.Context(smollm, ctx_params(n_ctx=512)) as ctx:
        alone = [ctx.generate(smollm, [p], [greedy(24, ignore_eos=True)])[0] for p in prompts]
    for prompt, t, a in zip(MULTI_PROMPTS, together, alone, strict=True):
        assert t.tokens == a.tokens, f"batched run of {prompt!r} diverged: {t.text!r} vs {a.text!r}"
    assert len({tuple(r.tokens) for r in together}) == len(prompts)  # really different continuations


def test_stop_string_cuts_the_text_before_it(smollm, smollm_ctx):
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(32, stop=["."]))
    assert r.finish_reason == "stop"
    assert r.stop_string == "."
    assert "." not in r.text
    assert r.text.strip() == "Paris"


def test_stop_string_spanning_tokens(smollm, smollm_ctx):
    free = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(16)).text
    assert "\n\nThe" in free  # the greedy continuation is " Paris.\n\nThe ..."
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(16, stop=["\n\nThe"]))
    assert r.finish_reason == "stop"
    assert r.stop_string == "\n\nThe"
    assert r.text == free[: free.index("\n\nThe")]


def test_stop_string_inside_a_token(smollm, smollm_ctx):
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(16, stop=["ari"]))
    assert r.finish_reason == "stop" and r.stop_string == "ari"
    assert r.text == " P"


def test_first_matching_stop_string_wins(smollm, smollm_ctx):
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(32, stop=["United", "."]))
    assert r.stop_string == "."


def test_max_tokens_gives_length(smollm, smollm_ctx):
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(5))
    assert r.finish_reason == "length"
    assert len(r.tokens) == 5
    assert r.stop_string == ""


def test_max_tokens_zero_gives_length_and_nothing(smollm, smollm_ctx):
    r = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(0))
    assert r.finish_reason == "length"
    assert r.tokens == [] and r.text == ""


def test_eos_stops_and_ignore_eos_is_respected(smollm, smollm_ctx):
    eos = smollm.info.eos
    force_eos = [(eos, 100.0)]
    stopped = engine.generate_text(smollm_ctx, smollm, PROMPT, greedy(6, logit_bias=force_eos))
    assert stopped.finish_reason == "stop" and stopped.stop_string == ""
    assert stopped.tokens == [] and stopped.text == ""

    # as llama.cpp does: ignore_eos bans every end-of-generation token (a logit bias of -inf, which no bias
    # outweighs), so the model writes on rather than emitting an end it is told to ignore
    ignored = engine.generate_text(
        smollm_ctx, smollm, PROMPT, greedy(6, ignore_eos=True, logit_bias=force_eos)
    )
    assert ignored.finish_reason == "length"
    assert len(ignored.tokens) == 6 and not any(smollm.is_eog(t) for t in ignored.tokens)
    assert ignored.text


def test_ignore_eos_never_emits_an_end_token_in_the_batcher(smollm):
    """A raw prompt SmolLM2 answers with <|im_end|> first: with ignore_eos the first token is text (it was an
    invisible end token, and the first visible text came a stream interval later)."""
    prompt = smollm.tokenize("[0-9] Write a short story about a lighthouse keeper.", True, True)
    with engine.Context(smollm, ctx_params(n_ctx=512, n_seq_max=1)) as ctx:
        natural = ctx.generate(smollm, [prompt], [greedy(8)])[0]
        assert natural.finish_reason == "stop" and natural.tokens == []  # the end token comes first
        batcher = _engine.Batcher(smollm, ctx, 20.0)
        try:
            batcher.submit("r", prompt, greedy(8, ignore_eos=True))
            events, deadline = [], time.monotonic() + 60
            while not (events and events[-1].done):
                assert time.monotonic() < deadline, "the batcher did not finish"
                if select.select([batcher.event_fd], [], [], 0.5)[0]:
                    os.read(batcher.event_fd, 8)
                events += batcher.drain()
        finally:
            batcher.stop()
    tokens = [t for ev in events for t in ev.tokens]
    assert len(tokens) == 8 and not any(smollm.is_eog(t) for t in tokens) and events[0].text


def test_natural_end_of_turn_stops_the_reply(smollm, smollm_ctx):
    prompt = smollm.apply_chat_template(
        [
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        True,
    )
    r = engine.generate_text(smollm_ctx, smollm, prompt, greedy(48))
    assert r.finish_reason == "stop"
    assert "Paris" in r.text
    assert "<|im_end|>" not in r.text and smollm.info.eos not in r.tokens


def test_on_token_false_gives_cancelled(smollm, smollm_ctx):
    seen: list[int] = []

    def on_token(index, token, text):
        seen.append(token)
        return len(seen) < 3

    tokens = smollm.tokenize(PROMPT, True, True)
    r = smollm_ctx.generate(smollm, [tokens], [greedy(32)], on_token=on_token)[0]
    assert r.finish_reason == "cancelled"
    assert r.tokens == seen[:3]


def test_prompt_longer_than_the_context_raises_context_overflow(smollm):
    with engine.Context(smollm, ctx_params(n_ctx=256)) as ctx:
        long_prompt = "The quick brown fox jumps over the lazy dog. " * 40
        assert len(smollm.tokenize(long_prompt, True, True)) > ctx.n_ctx
        with pytest.raises(ContextOverflow):
            engine.generate_text(ctx, smollm, long_prompt, greedy(4))
        # the context is still usable
        assert "Paris" in engine.generate_text(ctx, smollm, PROMPT, greedy(4)).text
