"""Load and context knobs reach llama.cpp (issue 19): GGUF metadata overrides change what the loaded
model reports, RoPE settings change the attention (greedy output), bad values are typed errors."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from mullama import engine
from mullama.core.errors import InvalidArgument


def test_metadata_overrides_change_the_loaded_model(tiny_path):
    with engine.Model(str(tiny_path), engine.ModelParams(n_gpu_layers=0)) as plain:
        assert plain.info.add_bos and plain.tokenize("yes", True, False)[0] == plain.info.bos
    params = engine.ModelParams(n_gpu_layers=0, kv_overrides=["tokenizer.ggml.add_bos_token=bool:false"],
                                check_tensors=True)
    with engine.Model(str(tiny_path), params) as overridden:
        assert not overridden.info.add_bos and overridden.info.bos not in overridden.tokenize("yes", True, False)
    with pytest.raises(InvalidArgument, match="KEY=TYPE:VALUE"):
        engine.Model(str(tiny_path), engine.ModelParams(kv_overrides=["no-equals-sign"]))


def test_rope_settings_reach_the_context(tiny_model):
    """RoPE's base frequency changes the attention, so greedy output changes; bad values are typed errors."""
    prompt = tiny_model.tokenize("the yes no a of the", True, False)

    def greedy(**rope: Any) -> list[int]:
        with engine.Context(tiny_model, engine.ContextParams(n_ctx=128, n_threads=2, **rope)) as ctx:
            params = engine.GenerateParams(max_tokens=12, sampling=engine.SamplingParams(temperature=0))
            return ctx.generate(tiny_model, [prompt], [params])[0].tokens

    assert greedy() == greedy(rope_freq_base=10000.0)  # the tiny model's own base
    assert greedy(rope_freq_base=10.0) != greedy()
    assert greedy(swa_full=True, rope_scaling="none") == greedy()
    for bad, name in (({"rope_scaling": "spiral"}, "rope_scaling"), ({"rope_freq_base": -1.0}, "rope_freq_base")):
        with pytest.raises(InvalidArgument, match=name):
            engine.Context(tiny_model, engine.ContextParams(n_ctx=128, **bad))


def test_adapter_turn_and_context_shift_are_set_on_the_loop(tiny_model):
    from mullama import _engine
    from mullama.config import load_settings
    from mullama.core.errors import ConfigError

    with engine.Context(tiny_model, engine.ContextParams(n_ctx=128, n_threads=2)) as ctx:
        batcher = _engine.Batcher(tiny_model, ctx)
        batcher.set_adapter_turn(1)
        batcher.set_context_shift(True)
        with pytest.raises(InvalidArgument, match="adapter_turn"):
            batcher.set_adapter_turn(0)
        batcher.stop()
    with pytest.raises(ConfigError, match=r"models\.m\.adapter_turn"):
        load_settings({"models": {"m": {"adapter_turn": 0}}}, env={})


def test_cache_ram_is_a_size_from_the_settings_to_the_loop(tiny_model, tmp_path):
    """Host memory for idle caches: a size everywhere settings are read, per model too, and on the loop."""
    from mullama import _engine, wire
    from mullama.config import load_settings, model_settings
    from mullama.core.errors import ConfigError
    from mullama.serving.loading import load_params

    assert model_settings(load_settings({}, env={}), "m", "m").cache_ram == 8 << 30  # llama-server's 8192 MiB
    settings = load_settings({"cache_ram": "512MiB", "models": {"m": {"cache_ram": 0}}}, env={})
    assert (model_settings(settings, "m", "m").cache_ram, model_settings(settings, "n", "n").cache_ram) == (0, 512 << 20)
    assert load_settings({}, env={"MULLAMA_CACHE_RAM": "1GiB"}).cache_ram == 1 << 30
    for bad in (-1, "lots"):
        with pytest.raises(ConfigError, match="cache.ram"):
            load_settings({"cache_ram": bad}, env={})
    entry = SimpleNamespace(path=tmp_path / "n.gguf")  # all load_params reads of it
    defaults = model_settings(load_settings({}, env={}), "n", "n")
    for cfg, size in ((model_settings(settings, "n", "n"), 512 << 20), (defaults, 8 << 30)):
        params = load_params(entry, cfg, "alloc", None, n_gpu_layers=0)  # type: ignore[arg-type]
        # what the runner decodes, past 2 GiB too (a 32-bit bound once refused the 8 GiB default)
        assert msgspec.json.decode(msgspec.json.encode(params), type=wire.LoadParams).cache_ram == size
    with engine.Context(tiny_model, engine.ContextParams(n_ctx=128, n_threads=2)) as ctx:
        batcher = _engine.Batcher(tiny_model, ctx)
        batcher.set_cache_ram(-1)  # negative: no limit
        assert batcher.counters().parks == batcher.counters().parked_bytes == 0
        batcher.stop()


def test_a_context_outlives_its_batcher_s_adapters(smollm, smollm_path, tmp_path):
    """The Batcher frees its LoRA adapters when it goes; the context it drove must not keep applying them."""
    import os
    import select

    from gguf_factory import write_lora
    from helpers import ctx_params

    from mullama import _engine

    lora = write_lora(tmp_path / "a.gguf", smollm_path, seed=1)
    prompt = smollm.tokenize("The capital of France is", True, False)
    params = engine.GenerateParams(max_tokens=6, sampling=engine.SamplingParams(temperature=0))
    with engine.Context(smollm, ctx_params(n_ctx=512)) as ctx:
        base = ctx.generate(smollm, [prompt], [params])[0].tokens
        ctx.kv_clear()
        batcher = _engine.Batcher(smollm, ctx)
        batcher.add_adapter(str(lora), "", 1.0)
        batcher.submit("x", prompt, params)  # every adapter at its default scale
        done = False
        while not done:
            select.select([batcher.event_fd], [], [], 1.0)
            with contextlib.suppress(BlockingIOError):
                os.read(batcher.event_fd, 8)
            done = any(ev.done for ev in batcher.drain())
        assert batcher.active_adapters == "0:1"
        del batcher  # stops the loop, frees the adapter, resets the context's set
        ctx.kv_clear()
        assert ctx.generate(smollm, [prompt], [params])[0].tokens == base
