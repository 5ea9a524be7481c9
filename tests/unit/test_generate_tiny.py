"""Generation mechanics on a tiny random model: finish reasons, callbacks, batching, overflow."""

from __future__ import annotations

import pytest

from helpers import ctx_params, greedy
from mullama import engine
from mullama.core.errors import ContextOverflow


@pytest.fixture
def prompt(tiny_model):
    return tiny_model.tokenize("the sea", True, False)


def test_max_tokens_gives_length(tiny_ctx, tiny_model, prompt):
    r = tiny_ctx.generate(tiny_model, [prompt], [greedy(7, ignore_eos=True)])[0]
    assert r.finish_reason == "length"
    assert len(r.tokens) == r.completion_tokens == 7
    assert r.prompt_tokens == len(prompt)


def test_max_tokens_zero_gives_length_and_no_tokens(tiny_ctx, tiny_model, prompt):
    r = tiny_ctx.generate(tiny_model, [prompt], [greedy(0)])[0]
    assert r.finish_reason == "length"
    assert r.tokens == [] and r.text == "" and r.completion_tokens == 0


def test_unlimited_generation_stops_when_the_context_is_full(tiny_ctx, tiny_model):
    prompt = [1] + [5, 6] * ((tiny_ctx.n_ctx_seq - 20) // 2)  # leave room for ~20 tokens only
    r = tiny_ctx.generate(tiny_model, [prompt], [greedy(-1, ignore_eos=True)])[0]
    assert r.finish_reason == "context_full"
    # every token but the last sampled one was fed to the model, so they must fit the window
    assert len(prompt) + r.completion_tokens - 1 <= tiny_ctx.n_ctx_seq


def test_forced_eos_stops_unless_ignored(tiny_ctx, tiny_model, prompt):
    eos = tiny_model.info.eos
    stopped = tiny_ctx.generate(tiny_model, [prompt], [greedy(5, logit_bias=[(eos, 100.0)])])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.stop_string == ""
    assert stopped.tokens == []  # the EOS itself is not part of the result

    ignored = tiny_ctx.generate(
        tiny_model, [prompt], [greedy(5, ignore_eos=True, logit_bias=[(eos, 100.0)])]
    )[0]
    assert ignored.finish_reason == "length"  # ignore_eos bans end tokens, as llama.cpp: no bias outweighs it
    assert len(ignored.tokens) == 5 and not any(tiny_model.is_eog(t) for t in ignored.tokens)


def test_on_token_false_cancels(tiny_ctx, tiny_model, prompt):
    seen = []

    def on_token(index, token, text):
        seen.append((index, token))
        return len(seen) < 3

    r = tiny_ctx.generate(tiny_model, [prompt], [greedy(20, ignore_eos=True)], on_token=on_token)[0]
    assert r.finish_reason == "cancelled"
    assert len(r.tokens) == 3
    assert [t for _, t in seen[:3]] == r.tokens


def test_on_token_exception_propagates_and_context_stays_usable(tiny_ctx, tiny_model, prompt):
    class Stop(Exception):
        pass

    def on_token(index, token, text):
        raise Stop("from on_token")

    with pytest.raises(Stop, match="from on_token"):
        tiny_ctx.generate(tiny_model, [prompt], [greedy(5, ignore_eos=True)], on_token=on_token)
    r = tiny_ctx.generate(tiny_model, [prompt], [greedy(3, ignore_eos=True)])[0]
    assert len(r.tokens) == 3


def test_on_token_streams_the_whole_text(tiny_ctx, tiny_model, prompt):
    pieces: list[str] = []
    r = tiny_ctx.generate(
        tiny_model, [prompt], [greedy(12, ignore_eos=True)], on_token=lambda i, t, text: pieces.append(text)
    )[0]
    assert "".join(pieces) == r.text


def test_greedy_is_deterministic(tiny_ctx, tiny_model, prompt):
    a = tiny_ctx.generate(tiny_model, [prompt], [greedy(16, ignore_eos=True)])[0]
    b = tiny_ctx.generate(tiny_model, [prompt], [greedy(16, ignore_eos=True)])[0]
    assert a.tokens == b.tokens


def test_each_sequence_of_a_batch_matches_its_solo_run(tiny_model):
    prompts = [tiny_model.tokenize(t, True, False) for t in ("the sea", "a of no", "yes the a", "t")]
    params = [greedy(10, ignore_eos=True) for _ in prompts]
    with engine.Context(tiny_model, ctx_params(n_ctx=256, n_seq_max=4)) as ctx:
        together = ctx.generate(tiny_model, prompts, params)
    with engine.Context(tiny_model, ctx_params(n_ctx=256)) as ctx:
        alone = [ctx.generate(tiny_model, [p], [greedy(10, ignore_eos=True)])[0] for p in prompts]
    assert [r.tokens for r in together] == [r.tokens for r in alone]


def test_different_limits_per_sequence(tiny_model):
    prompts = [[1, 5], [1, 6], [1, 7]]
    params = [greedy(n, ignore_eos=True) for n in (1, 4, 0)]
    with engine.Context(tiny_model, ctx_params(n_ctx=256, n_seq_max=3)) as ctx:
        results = ctx.generate(tiny_model, prompts, params)
    assert [len(r.tokens) for r in results] == [1, 4, 0]
    assert all(r.finish_reason == "length" for r in results)


def test_prompt_longer_than_the_context_raises_context_overflow(tiny_ctx, tiny_model):
    too_long = [5] * tiny_ctx.n_ctx_seq
    with pytest.raises(ContextOverflow):
        tiny_ctx.generate(tiny_model, [too_long], [greedy(2)])


def test_prompts_overflowing_a_shared_cache_raise_context_overflow(tiny_model):
    with engine.Context(tiny_model, ctx_params(n_ctx=256, n_seq_max=2)) as ctx:
        half = [5] * (ctx.n_ctx // 2)
        with pytest.raises(ContextOverflow):
            ctx.generate(tiny_model, [half, half], [greedy(2), greedy(2)])


def test_prompt_longer_than_n_batch_is_decoded_in_chunks(tiny_model):
    prompt = [1] + [5, 6, 7] * 50  # 151 tokens, n_batch 64
    with engine.Context(tiny_model, ctx_params(n_ctx=256, n_batch=64)) as ctx:
        chunked = ctx.generate(tiny_model, [prompt], [greedy(5, ignore_eos=True)])[0]
    with engine.Context(tiny_model, ctx_params(n_ctx=256, n_batch=256)) as ctx:
        whole = ctx.generate(tiny_model, [prompt], [greedy(5, ignore_eos=True)])[0]
    assert chunked.tokens == whole.tokens


def test_generate_text_facade(tiny_ctx, tiny_model):
    pieces: list[str] = []
    r = engine.generate_text(
        tiny_ctx, tiny_model, "the sea", greedy(6, ignore_eos=True), on_text=pieces.append
    )
    assert r.completion_tokens == 6
    assert "".join(pieces) == r.text


def test_generate_text_on_text_false_cancels(tiny_ctx, tiny_model):
    r = engine.generate_text(
        tiny_ctx, tiny_model, "the sea", greedy(30, ignore_eos=True), on_text=lambda s: False
    )
    assert r.finish_reason == "cancelled"
    assert len(r.tokens) < 30


def test_timings_are_reported(tiny_ctx, tiny_model, prompt):
    r = tiny_ctx.generate(tiny_model, [prompt], [greedy(4, ignore_eos=True)])[0]
    assert r.prompt_ms >= 0 and r.ttft_ms >= 0 and r.decode_ms >= 0
