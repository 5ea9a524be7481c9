"""Load/close cycles of SmolLM2 without leaks; use after close raises EngineClosed."""

from __future__ import annotations

import gc

import psutil
import pytest

from helpers import MiB, cpu_params, ctx_params, decode_prompt
from mullama import engine
from mullama.core.errors import EngineClosed

CYCLES = 20
#: RSS growth allowed over 20 cycles, measured after two warm-up cycles.
RSS_TOLERANCE = 20 * MiB


def _cycle(path) -> None:
    model = engine.Model(str(path), cpu_params())
    ctx = engine.Context(model, ctx_params(n_ctx=512))
    decode_prompt(ctx, model.tokenize("The capital of France is", True, False))
    ctx.close()
    model.close()


def test_twenty_load_close_cycles_return_rss_to_baseline(smollm_path):
    proc = psutil.Process()
    _cycle(smollm_path)
    _cycle(smollm_path)  # warm-up: allocator arenas, thread pools, lazily loaded code
    gc.collect()
    baseline = proc.memory_info().rss
    for _ in range(CYCLES):
        _cycle(smollm_path)
    gc.collect()
    growth = proc.memory_info().rss - baseline
    assert growth < RSS_TOLERANCE, f"RSS grew by {growth / MiB:.1f} MiB over {CYCLES} cycles"


def test_tokenize_after_close_raises_engine_closed(smollm_path):
    model = engine.Model(str(smollm_path), cpu_params())
    model.close()
    with pytest.raises(EngineClosed):
        model.tokenize("hello")
    with pytest.raises(EngineClosed):
        _ = model.info


def test_decode_after_close_raises_engine_closed(smollm):
    ctx = engine.Context(smollm, ctx_params(n_ctx=512))
    tokens = smollm.tokenize("hello", True, False)
    decode_prompt(ctx, tokens)
    ctx.close()
    batch = engine.Batch(1)
    batch.add(tokens[0], len(tokens), 0, True)
    with pytest.raises(EngineClosed):
        ctx.decode(batch)
    with pytest.raises(EngineClosed):
        ctx.generate(smollm, [tokens], [engine.GenerateParams(max_tokens=2)])


@pytest.mark.slow
def test_hundred_cycles_with_generation(smollm_path):
    proc = psutil.Process()
    from helpers import greedy

    def cycle():
        with engine.Model(str(smollm_path), cpu_params()) as model:
            with engine.Context(model, ctx_params(n_ctx=512, n_seq_max=2)) as ctx:
                tokens = model.tokenize("The capital of France is", True, False)
                ctx.generate(model, [tokens, tokens], [greedy(4), greedy(4)])

    cycle()
    cycle()
    gc.collect()
    baseline = proc.memory_info().rss
    for _ in range(100):
        cycle()
    gc.collect()
    growth = proc.memory_info().rss - baseline
    assert growth < RSS_TOLERANCE, f"RSS grew by {growth / MiB:.1f} MiB over 100 cycles"
