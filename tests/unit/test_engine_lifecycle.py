"""Load/close cycles of tiny models, and use after close (EngineClosed, never a crash)."""

from __future__ import annotations

import gc

import psutil
import pytest

from helpers import MiB, cpu_params, ctx_params, decode_prompt
from mullama import engine
from mullama.core.errors import EngineClosed

#: RSS growth allowed over 20 load/close cycles, after two warm-up cycles.
RSS_TOLERANCE = 20 * MiB


def _cycle(path) -> None:
    model = engine.Model(str(path), cpu_params())
    ctx = engine.Context(model, ctx_params(n_ctx=256, n_batch=64))
    decode_prompt(ctx, model.tokenize("the sea", True, False))
    ctx.close()
    model.close()


def test_twenty_load_close_cycles_return_rss_to_baseline(tiny_path):
    proc = psutil.Process()
    _cycle(tiny_path)
    _cycle(tiny_path)  # warm-up: backend init, allocator arenas, lazily loaded code
    gc.collect()
    baseline = proc.memory_info().rss
    for _ in range(20):
        _cycle(tiny_path)
    gc.collect()
    growth = proc.memory_info().rss - baseline
    assert growth < RSS_TOLERANCE, f"RSS grew by {growth / MiB:.1f} MiB over 20 cycles"


def test_context_managers_close_model_and_context(tiny_path):
    with engine.Model(str(tiny_path), cpu_params()) as model:
        with engine.Context(model, ctx_params(n_ctx=256)) as ctx:
            assert not ctx.closed
        assert ctx.closed
        assert not model.closed
    assert model.closed


def test_close_is_idempotent(tiny_path):
    model = engine.Model(str(tiny_path), cpu_params())
    ctx = engine.Context(model, ctx_params(n_ctx=256))
    ctx.close()
    ctx.close()
    model.close()
    model.close()
    assert ctx.closed and model.closed


def test_context_keeps_weights_alive_after_model_close(tiny_path):
    model = engine.Model(str(tiny_path), cpu_params())
    ctx = engine.Context(model, ctx_params(n_ctx=256))
    tokens = model.tokenize("the sea", True, False)
    model.close()
    idx = decode_prompt(ctx, tokens)  # the context still owns the weights
    assert ctx.logits(idx).shape == (ctx.n_vocab,)
    ctx.close()


def _closed_model(path):
    model = engine.Model(str(path), cpu_params())
    model.close()
    return model


MODEL_CALLS = {
    "tokenize": lambda m: m.tokenize("hello"),
    "detokenize": lambda m: m.detokenize([1, 2]),
    "token_to_piece": lambda m: m.token_to_piece(5),
    "is_eog": lambda m: m.is_eog(2),
    "info": lambda m: m.info,
    "metadata": lambda m: m.metadata(),
    "apply_chat_template": lambda m: m.apply_chat_template([{"role": "user", "content": "hi"}]),
    "new_context": lambda m: engine.Context(m, ctx_params(n_ctx=256)),
    "new_sampler": lambda m: engine.Sampler(m, engine.SamplingParams()),
}


@pytest.mark.parametrize("call", MODEL_CALLS.values(), ids=MODEL_CALLS.keys())
def test_model_use_after_close_raises_engine_closed(tiny_path, call):
    model = _closed_model(tiny_path)
    with pytest.raises(EngineClosed):
        call(model)


def test_generate_with_closed_model_raises_engine_closed(tiny_path):
    model = engine.Model(str(tiny_path), cpu_params())
    tokens = model.tokenize("the sea", True, False)
    with engine.Context(model, ctx_params(n_ctx=256)) as ctx:
        model.close()
        with pytest.raises(EngineClosed):
            ctx.generate(model, [tokens], [engine.GenerateParams(max_tokens=2)])


def _one_token_batch():
    batch = engine.Batch(1)
    batch.add(5, 0, 0, True)
    return batch


CONTEXT_CALLS = {
    "decode": lambda c, m: c.decode(_one_token_batch()),
    "logits": lambda c, m: c.logits(0),
    "n_ctx": lambda c, m: c.n_ctx,
    "n_ctx_seq": lambda c, m: c.n_ctx_seq,
    "n_vocab": lambda c, m: c.n_vocab,
    "kv_clear": lambda c, m: c.kv_clear(),
    "kv_seq_rm": lambda c, m: c.kv_seq_rm(0),
    "kv_seq_cp": lambda c, m: c.kv_seq_cp(0, 0),
    "kv_seq_keep": lambda c, m: c.kv_seq_keep(0),
    "kv_seq_pos_min": lambda c, m: c.kv_seq_pos_min(0),
    "kv_seq_pos_max": lambda c, m: c.kv_seq_pos_max(0),
    "kv_cells_used": lambda c, m: c.kv_cells_used(),
    "seq_state_save": lambda c, m: c.seq_state_save(0),
    "seq_state_load": lambda c, m: c.seq_state_load(b"state", 0),
    "embed": lambda c, m: c.embed([[5]]),
    "memory": lambda c, m: c.memory(),
    "set_threads": lambda c, m: c.set_threads(2, 2),
    "generate": lambda c, m: c.generate(m, [[5]], [engine.GenerateParams(max_tokens=2)]),
    "sample": lambda c, m: engine.Sampler(m, engine.SamplingParams()).sample(c, 0),
}


@pytest.mark.parametrize("call", CONTEXT_CALLS.values(), ids=CONTEXT_CALLS.keys())
def test_context_use_after_close_raises_engine_closed(tiny_model, call):
    ctx = engine.Context(tiny_model, ctx_params(n_ctx=256))
    decode_prompt(ctx, [1, 5, 6])
    ctx.close()
    with pytest.raises(EngineClosed):
        call(ctx, tiny_model)


def test_params_stay_readable_after_close(tiny_model):
    ctx = engine.Context(tiny_model, ctx_params(n_ctx=256))
    ctx.close()
    assert ctx.params.n_ctx == 256
