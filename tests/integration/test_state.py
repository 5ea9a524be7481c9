"""Per-sequence state save/restore continues decoding identically (low-level Batch/Sampler API)."""

from __future__ import annotations

import pytest

from helpers import ctx_params, decode_prompt, greedy_continue
from mullama import engine
from mullama.core.errors import InvalidArgument

N_BEFORE = 6  # tokens generated before the snapshot
N_AFTER = 10  # tokens compared after it


def _greedy_sampler(model):
    return engine.Sampler(model, engine.SamplingParams(temperature=0))


@pytest.fixture
def snapshot(smollm):
    """Generate greedily on seq 0, save its state mid-way, continue; return what is needed to resume."""
    ctx = engine.Context(smollm, ctx_params(n_ctx=512, n_seq_max=2))
    prompt = smollm.tokenize("The quick brown fox", True, False)
    sampler = _greedy_sampler(smollm)
    first = sampler.sample(ctx, decode_prompt(ctx, prompt))
    before = [first, *greedy_continue(ctx, sampler, first, len(prompt), N_BEFORE - 1)]
    # positions 0 .. len(prompt)+N_BEFORE-2 are in the cache; before[-1] is sampled, not yet decoded
    pos = len(prompt) + N_BEFORE - 1
    assert ctx.kv_seq_pos_max(0) == pos - 1
    state = ctx.seq_state_save(0)
    after = greedy_continue(ctx, sampler, before[-1], pos, N_AFTER)
    yield {"ctx": ctx, "state": state, "last": before[-1], "pos": pos, "after": after}
    ctx.close()


def test_state_is_bytes(snapshot):
    assert isinstance(snapshot["state"], bytes)
    assert len(snapshot["state"]) > 0


def test_restore_into_a_cleared_context_continues_identically(smollm, snapshot):
    ctx = snapshot["ctx"]
    ctx.kv_clear()
    assert ctx.kv_seq_pos_max(0) == -1
    ctx.seq_state_load(snapshot["state"], 0)
    assert ctx.kv_seq_pos_max(0) == snapshot["pos"] - 1
    resumed = greedy_continue(ctx, _greedy_sampler(smollm), snapshot["last"], snapshot["pos"], N_AFTER)
    assert resumed == snapshot["after"]


def test_restore_into_another_sequence_continues_identically(smollm, snapshot):
    ctx = snapshot["ctx"]
    ctx.seq_state_load(snapshot["state"], 1)
    assert ctx.kv_seq_pos_min(1) == 0
    assert ctx.kv_seq_pos_max(1) == snapshot["pos"] - 1
    resumed = greedy_continue(ctx, _greedy_sampler(smollm), snapshot["last"], snapshot["pos"], N_AFTER, seq=1)
    assert resumed == snapshot["after"]


def test_restore_into_a_fresh_context_continues_identically(smollm, snapshot):
    with engine.Context(smollm, ctx_params(n_ctx=512)) as fresh:
        fresh.seq_state_load(snapshot["state"], 0)
        resumed = greedy_continue(fresh, _greedy_sampler(smollm), snapshot["last"], snapshot["pos"], N_AFTER)
    assert resumed == snapshot["after"]


def test_kv_seq_cp_fork_continues_identically(smollm):
    with engine.Context(smollm, ctx_params(n_ctx=512, n_seq_max=2)) as ctx:
        prompt = smollm.tokenize("Once upon a time", True, False)
        sampler = _greedy_sampler(smollm)
        first = sampler.sample(ctx, decode_prompt(ctx, prompt))
        ctx.kv_seq_cp(0, 1)
        on_0 = greedy_continue(ctx, sampler, first, len(prompt), 8, seq=0)
        on_1 = greedy_continue(ctx, _greedy_sampler(smollm), first, len(prompt), 8, seq=1)
    assert on_0 == on_1


def test_loading_garbage_state_raises_invalid_argument(snapshot):
    ctx = snapshot["ctx"]
    for bad in (b"", b"not a state", snapshot["state"][: len(snapshot["state"]) // 2]):
        with pytest.raises(InvalidArgument):
            ctx.seq_state_load(bad, 1)


def test_loading_state_from_another_model_raises_invalid_argument(tiny_model, snapshot):
    with engine.Context(tiny_model, ctx_params(n_ctx=256)) as other:
        with pytest.raises(InvalidArgument):
            other.seq_state_load(snapshot["state"], 0)


def test_loading_state_without_room_raises_invalid_argument(smollm):
    with engine.Context(smollm, ctx_params(n_ctx=256, n_seq_max=2)) as ctx:
        decode_prompt(ctx, [5] * 200, seq=0)
        state = ctx.seq_state_save(0)
        with pytest.raises(InvalidArgument):
            ctx.seq_state_load(state, 1)  # 200 more cells do not fit in 256
        assert ctx.kv_seq_pos_max(0) == 199  # the saved sequence is untouched
