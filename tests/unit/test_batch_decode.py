"""Batch / decode / logits / KV-cache mechanics on a tiny model, and their typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import ctx_params, decode_prompt, greedy, greedy_continue
from mullama import engine
from mullama.core.errors import ContextOverflow, InvalidArgument


def test_batch_add_returns_indices_and_tracks_length():
    batch = engine.Batch(4, 2)
    assert batch.capacity == 4 and len(batch) == 0
    assert [batch.add(10 + i, i, 0, i == 2) for i in range(3)] == [0, 1, 2]
    assert len(batch) == 3
    batch.clear()
    assert len(batch) == 0
    assert batch.add(7, 0, 1, True) == 0


def test_batch_add_beyond_capacity_raises_invalid_argument():
    batch = engine.Batch(2)
    batch.add(1, 0)
    batch.add(1, 1)
    with pytest.raises(InvalidArgument, match="full"):
        batch.add(1, 2)


@pytest.mark.parametrize("capacity", [0, -1])
def test_batch_capacity_must_be_positive(capacity):
    with pytest.raises(InvalidArgument):
        engine.Batch(capacity)


def test_decode_gives_float32_logits_over_the_vocabulary(tiny_ctx, tiny_model):
    idx = decode_prompt(tiny_ctx, [1, 5, 6, 7])
    logits = tiny_ctx.logits(idx)
    assert logits.dtype == np.float32
    assert logits.shape == (tiny_model.info.n_vocab,)
    assert np.isfinite(logits).all()
    assert np.array_equal(tiny_ctx.logits(-1), logits)  # -1: the last entry with logits


def test_logits_are_a_copy(tiny_ctx):
    idx = decode_prompt(tiny_ctx, [1, 5])
    first = tiny_ctx.logits(idx)
    first[:] = 0
    assert np.any(tiny_ctx.logits(idx) != 0)


@pytest.mark.parametrize("index", [0, 5, -9])
def test_logits_of_an_entry_without_logits_raise_invalid_argument(tiny_ctx, index):
    decode_prompt(tiny_ctx, [1, 5, 6])  # only entry 2 asked for logits
    with pytest.raises(InvalidArgument):
        tiny_ctx.logits(index)


def test_empty_batch_decode_is_a_no_op(tiny_ctx):
    tiny_ctx.decode(engine.Batch(4))
    assert tiny_ctx.kv_seq_pos_max(0) == -1


def _batch(*entries, capacity=None, n_seq_max=4):
    batch = engine.Batch(capacity or max(1, len(entries)), n_seq_max)
    for entry in entries:
        batch.add(*entry)
    return batch


@pytest.mark.parametrize(
    "entry",
    [(10**6, 0, 0, True), (-1, 0, 0, True), (271, 0, 0, True)],
    ids=["huge", "negative", "n_vocab"],
)
def test_decode_token_id_out_of_range_raises_invalid_argument(tiny_ctx, entry):
    with pytest.raises(InvalidArgument, match="token id"):
        tiny_ctx.decode(_batch(entry))
    assert tiny_ctx.kv_seq_pos_max(0) == -1  # nothing was decoded


@pytest.mark.parametrize("seq", [2, 99, -1])
def test_decode_sequence_id_out_of_range_raises_invalid_argument(tiny_ctx, seq):
    with pytest.raises(InvalidArgument, match="sequence id"):
        tiny_ctx.decode(_batch((5, 0, seq, True)))


def test_decode_batch_larger_than_n_batch_raises_invalid_argument(tiny_ctx):
    n_batch = tiny_ctx.params.n_batch
    batch = _batch(*[(5, i, 0, False) for i in range(n_batch + 1)])
    with pytest.raises(InvalidArgument, match="n_batch"):
        tiny_ctx.decode(batch)


def test_decode_position_outside_the_window_raises_context_overflow(tiny_ctx):
    with pytest.raises(ContextOverflow):
        tiny_ctx.decode(_batch((5, tiny_ctx.n_ctx_seq, 0, True)))
    with pytest.raises(ContextOverflow):
        tiny_ctx.decode(_batch((5, -1, 0, True)))


def test_decode_non_consecutive_positions_raise_invalid_argument(tiny_ctx):
    decode_prompt(tiny_ctx, [1, 5, 6])
    with pytest.raises(InvalidArgument):
        tiny_ctx.decode(_batch((7, 10, 0, True)))  # positions 0..2 stored, 10 is not next
    # the context is still usable afterwards
    tiny_ctx.decode(_batch((7, 3, 0, True)))
    assert tiny_ctx.kv_seq_pos_max(0) == 3


def test_kv_cache_operations(tiny_ctx):
    decode_prompt(tiny_ctx, [1, 5, 6, 7, 8])
    assert (tiny_ctx.kv_seq_pos_min(0), tiny_ctx.kv_seq_pos_max(0)) == (0, 4)
    assert tiny_ctx.kv_seq_pos_max(1) == -1
    assert tiny_ctx.kv_cells_used() == 5

    tiny_ctx.kv_seq_cp(0, 1)
    assert (tiny_ctx.kv_seq_pos_min(1), tiny_ctx.kv_seq_pos_max(1)) == (0, 4)
    assert tiny_ctx.kv_cells_used() == 10  # shared cells count once per sequence

    assert tiny_ctx.kv_seq_rm(0, 3, -1)
    assert tiny_ctx.kv_seq_pos_max(0) == 2

    tiny_ctx.kv_seq_keep(1)
    assert tiny_ctx.kv_seq_pos_max(0) == -1
    assert tiny_ctx.kv_seq_pos_max(1) == 4

    tiny_ctx.kv_clear()
    assert tiny_ctx.kv_seq_pos_max(1) == -1
    assert tiny_ctx.kv_cells_used() == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.kv_seq_rm(5),
        lambda c: c.kv_seq_cp(0, 5),
        lambda c: c.kv_seq_keep(-2),
        lambda c: c.kv_seq_pos_max(2),
        lambda c: c.seq_state_save(2),
        lambda c: c.seq_state_load(b"x", 3),
    ],
    ids=["rm", "cp", "keep", "pos_max", "save", "load"],
)
def test_kv_operations_check_sequence_ids(tiny_ctx, call):
    with pytest.raises(InvalidArgument, match="sequence id"):
        call(tiny_ctx)


def test_kv_seq_rm_all_sequences(tiny_ctx):
    decode_prompt(tiny_ctx, [1, 5], seq=0)
    decode_prompt(tiny_ctx, [1, 6], seq=1)
    tiny_ctx.kv_seq_rm(-1)
    assert tiny_ctx.kv_cells_used() == 0


def test_manual_decode_loop_matches_generate(tiny_ctx, tiny_model):
    prompt = tiny_model.tokenize("the sea", True, False)
    expected = tiny_ctx.generate(tiny_model, [prompt], [greedy(12, ignore_eos=True)])[0].tokens

    tiny_ctx.kv_clear()
    sampler = engine.Sampler(tiny_model, engine.SamplingParams(temperature=0))
    first = sampler.sample(tiny_ctx, decode_prompt(tiny_ctx, prompt))
    rest = greedy_continue(tiny_ctx, sampler, first, len(prompt), 11)
    assert [first, *rest] == expected


def test_sampler_seed_is_reported_and_reproducible(tiny_ctx, tiny_model):
    params = engine.SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=1234)
    assert engine.Sampler(tiny_model, params).seed == 1234
    prompt = tiny_model.tokenize("a", True, False)
    gen = lambda: (
        tiny_ctx.generate(  # noqa: E731
            tiny_model, [prompt], [engine.GenerateParams(max_tokens=16, ignore_eos=True, sampling=params)]
        )[0].tokens
    )
    assert gen() == gen()


def test_random_seed_is_chosen_when_minus_one(tiny_model):
    sampler = engine.Sampler(tiny_model, engine.SamplingParams(seed=-1))
    assert 0 <= sampler.seed < 2**32


def test_set_threads_updates_params(tiny_ctx):
    tiny_ctx.set_threads(1, 2)
    assert (tiny_ctx.params.n_threads, tiny_ctx.params.n_threads_batch) == (1, 2)
    with pytest.raises(InvalidArgument):
        tiny_ctx.set_threads(0, 1)


def test_context_reports_resolved_params(tiny_model):
    with engine.Context(tiny_model, ctx_params(n_ctx=0, n_batch=32, n_ubatch=64)) as ctx:
        assert ctx.params.n_ctx == tiny_model.info.n_ctx_train  # 0: the model's training context
        assert ctx.n_ctx == tiny_model.info.n_ctx_train
        assert ctx.params.n_ubatch == 32  # clamped to n_batch
        assert ctx.n_vocab == tiny_model.info.n_vocab


def test_memory_reports_cpu_weights_kv_and_compute(tiny_ctx):
    mem = tiny_ctx.memory()
    host = [d for d in mem if d.device == "CPU"]
    assert len(host) == 1
    assert sum(d.model for d in mem) > 0
    assert sum(d.context for d in mem) > 0
    assert sum(d.compute for d in mem) > 0
