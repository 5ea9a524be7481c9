"""llama.cpp's samplers beyond OpenAI's (issue 19): each knob reaches the chain llama.cpp builds
(``Sampler.chain``), bad values are typed errors naming the knob, and the runner's request fields map onto
them. ``?`` in a chain marks a stage that is present but inactive."""

from __future__ import annotations

from typing import Any

import pytest

from mullama import engine, wire
from mullama.core.errors import InvalidArgument
from mullama.runner.params import EXTRA_SAMPLING, sampling_params

BASE = engine.SamplingParams()


def chain(model: engine.Model, **extras: Any) -> list[str]:
    return engine.Sampler(model, BASE.with_extras(**extras)).chain.split(" -> ")


def test_the_default_chain_is_llama_cpp_s(tiny_model):
    stages = chain(tiny_model)
    assert stages[0].strip() == "logits" and stages[-1].strip() == "dist"
    assert {"?dry", "?xtc", "?top-n-sigma", "top-k", "top-p", "min-p"} <= {s.strip() for s in stages}


@pytest.mark.parametrize("extras, stage", [
    ({"mirostat": 1}, "mirostat"), ({"mirostat": 2}, "mirostat-v2"), ({"xtc_probability": 0.5}, "xtc"),
    ({"dry_multiplier": 0.8}, "dry"), ({"top_n_sigma": 1.5}, "top-n-sigma"),
])
def test_each_sampler_becomes_active(tiny_model, extras, stage):
    assert stage in {s.strip() for s in chain(tiny_model, **extras)}


def test_the_order_is_the_one_given(tiny_model):
    stages = [s.strip() for s in chain(tiny_model, samplers=["min_p", "top-k", "temperature"])]
    assert stages == ["logits", "min-p", "top-k", "temp-ext", "dist"]


@pytest.mark.parametrize("extras, name", [
    ({"mirostat": 3}, "mirostat"), ({"mirostat_eta": 2.0}, "mirostat_eta"), ({"xtc_probability": -0.1},
                                                                             "xtc_probability"),
    ({"dry_base": 0.5}, "dry_base"), ({"dry_penalty_last_n": -2}, "dry_penalty_last_n"),
    ({"dry_sequence_breakers": [""]}, "dry_sequence_breaker"), ({"top_n_sigma": float("nan")}, "top_n_sigma"),
    ({"samplers": ["bogus"]}, "unknown sampler 'bogus'"), ({"min_keep": -1}, "min_keep"),
])
def test_bad_values_are_typed_errors(tiny_model, extras, name):
    with pytest.raises(InvalidArgument, match=name):
        engine.Sampler(tiny_model, BASE.with_extras(**extras))


def test_mirostat_changes_the_sampled_text(tiny_model):
    """Same seed, same logits: Mirostat 2.0 samples differently from the default chain."""
    with engine.Context(tiny_model, engine.ContextParams(n_ctx=128, n_threads=2)) as ctx:
        prompt = tiny_model.tokenize("the yes no", True, False)

        def run(params: engine.SamplingParams) -> list[int]:
            out = ctx.generate(tiny_model, [prompt], [engine.GenerateParams(max_tokens=24, sampling=params)])[0]
            ctx.kv_clear()
            return out.tokens

        seeded = engine.SamplingParams(temperature=1.0, seed=5)
        assert run(seeded) == run(seeded)
        assert run(seeded.with_extras(mirostat=2, mirostat_tau=2.0)) != run(seeded)


def test_request_fields_reach_the_chain(tiny_model):
    n_vocab = tiny_model.info.n_vocab

    def stages(**fields: Any) -> list[str]:
        params = sampling_params(wire.CompletionRequest(prompt="x", **fields), n_vocab)
        return [s.strip() for s in engine.Sampler(tiny_model, params).chain.split(" -> ")]

    assert "mirostat-v2" in stages(mirostat=2, mirostat_tau=3.0, mirostat_eta=0.2)
    assert stages(samplers=["dry", "top_n_sigma", "xtc", "typ_p", "temperature"], dry_multiplier=0.5,
                  top_n_sigma=1.0, xtc_probability=0.3, typical_p=0.9) == \
        ["logits", "dry", "top-n-sigma", "xtc", "typical", "temp-ext", "dist"]
    with pytest.raises(InvalidArgument, match="dry_base"):
        stages(dry_base=0.5)
    assert set(EXTRA_SAMPLING) <= set(wire.CompletionRequest.__struct_fields__)
