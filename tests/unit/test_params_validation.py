"""Bad parameters raise InvalidArgument (a ValueError), early and without side effects."""

from __future__ import annotations

import math

import pytest

from helpers import cpu_params, ctx_params, greedy
from mullama import engine
from mullama.core.errors import InvalidArgument

# ---------------------------------------------------------------- construction-time checks


def test_invalid_argument_is_a_value_error():
    with pytest.raises(ValueError):
        engine.ModelParams(split_mode="diagonal")


def test_split_mode_diagonal():
    with pytest.raises(InvalidArgument, match="split_mode"):
        engine.ModelParams(split_mode="diagonal")


@pytest.mark.parametrize("mode", ["none", "layer", "row"])
def test_split_modes_accepted(mode):
    assert engine.ModelParams(split_mode=mode).split_mode == mode


@pytest.mark.parametrize("field", ["type_k", "type_v"])
def test_unknown_kv_cache_type(field):
    with pytest.raises(InvalidArgument, match="q3_x"):
        engine.ContextParams(**{field: "q3_x"})


@pytest.mark.parametrize("seed", [-2, -100, 2**32])
def test_seed_out_of_range(seed):
    with pytest.raises(InvalidArgument, match="seed"):
        engine.SamplingParams(seed=seed)


@pytest.mark.parametrize("seed", [-1, 0, 2**32 - 1])
def test_seed_in_range(seed):
    engine.SamplingParams(seed=seed)


# ---------------------------------------------------------------- context checks


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_seq_max": 0}, "n_seq_max"),
        ({"n_seq_max": 100_000}, "n_seq_max"),
        ({"flash_attn": "maybe"}, "flash_attn"),
        ({"embeddings": True, "pooling": "maybe"}, "pooling"),
        ({"n_ctx": 4}, "n_ctx"),
        ({"n_ctx": 1 << 25}, "n_ctx"),
        ({"n_batch": 0}, "n_batch"),
        ({"n_ubatch": 0}, "n_ubatch"),
        ({"n_threads": -1}, "threads"),
        ({"n_threads_batch": 5000}, "threads"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_bad_context_params(tiny_model, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        engine.Context(tiny_model, ctx_params(**kwargs))


@pytest.mark.parametrize("flash_attn", ["auto", "on", "off"])
def test_flash_attn_values_accepted(tiny_model, flash_attn):
    with engine.Context(tiny_model, ctx_params(n_ctx=256, flash_attn=flash_attn)) as ctx:
        assert ctx.params.flash_attn == flash_attn


@pytest.mark.parametrize("type_k", ["f32", "f16", "bf16"])
def test_kv_cache_types_accepted(tiny_model, type_k):
    with engine.Context(
        tiny_model, ctx_params(n_ctx=256, type_k=type_k, type_v=type_k, flash_attn="on")
    ) as ctx:
        assert ctx.params.type_k == type_k


def test_kv_cache_type_incompatible_with_head_size_raises_invalid_argument(tiny_model):
    # The tiny model's head size is 16; q8_0 blocks are 32 wide. llama.cpp refuses the
    # context; the engine should say InvalidArgument, not a generic EngineError.
    with pytest.raises(InvalidArgument):
        engine.Context(tiny_model, ctx_params(n_ctx=256, type_k="q8_0", type_v="q8_0", flash_attn="on"))


# ---------------------------------------------------------------- model load checks


@pytest.mark.parametrize("split", [[-1.0], [float("nan")], [1.0] * 1000], ids=["negative", "nan", "too-many"])
def test_bad_tensor_split(tiny_path, split):
    with pytest.raises(InvalidArgument, match="tensor_split"):
        engine.Model(str(tiny_path), cpu_params(tensor_split=split))


# ---------------------------------------------------------------- sampling checks

BAD_SAMPLING = {
    "top_p=2.0": {"top_p": 2.0},
    "top_p=-0.1": {"top_p": -0.1},
    "temperature=nan": {"temperature": math.nan},
    "temperature=inf": {"temperature": math.inf},
    "min_p=-1": {"min_p": -1.0},
    "min_p=1.5": {"min_p": 1.5},
    "typical_p=nan": {"typical_p": math.nan},
    "repeat_penalty=0": {"repeat_penalty": 0.0},
    "repeat_penalty=nan": {"repeat_penalty": math.nan},
    "repeat_last_n=-2": {"repeat_last_n": -2},
    "presence_penalty=inf": {"presence_penalty": math.inf},
    "frequency_penalty=nan": {"frequency_penalty": math.nan},
    "logit_bias token oob": {"logit_bias": [(10**6, 1.0)]},
    "logit_bias token negative": {"logit_bias": [(-1, 1.0)]},
    "logit_bias nan": {"logit_bias": [(5, math.nan)]},
    "grammar and json_schema": {"grammar": 'root ::= "a"', "json_schema": "{}"},
}


@pytest.mark.parametrize("kwargs", BAD_SAMPLING.values(), ids=BAD_SAMPLING.keys())
def test_bad_sampling_params_rejected_by_sampler(tiny_model, kwargs):
    params = engine.SamplingParams(**kwargs)
    with pytest.raises(InvalidArgument):
        engine.Sampler(tiny_model, params)


@pytest.mark.parametrize("kwargs", [{"top_p": 2.0}, {"temperature": math.nan}], ids=["top_p=2.0", "nan-temp"])
def test_bad_sampling_params_rejected_by_generate(tiny_ctx, tiny_model, kwargs):
    params = engine.GenerateParams(max_tokens=4, sampling=engine.SamplingParams(**kwargs))
    with pytest.raises(InvalidArgument):
        tiny_ctx.generate(tiny_model, [[1, 5]], [params])
    assert tiny_ctx.kv_cells_used() == 0  # rejected before anything was decoded


def test_sampler_accept_rejects_out_of_range_token(tiny_model):
    # Every other entry point (Batch/decode, detokenize, token_to_piece, logit_bias)
    # checks token ids; accepting one outside the vocabulary should too.
    sampler = engine.Sampler(tiny_model, engine.SamplingParams(repeat_penalty=1.1))
    with pytest.raises(InvalidArgument):
        sampler.accept(10**6)


# ---------------------------------------------------------------- generate argument checks


def test_generate_more_prompts_than_sequences(tiny_ctx, tiny_model):
    with pytest.raises(InvalidArgument, match="n_seq_max"):
        tiny_ctx.generate(tiny_model, [[1], [1], [1]], [greedy(2)] * 3)


def test_generate_prompts_and_params_differ_in_length(tiny_ctx, tiny_model):
    with pytest.raises(InvalidArgument):
        tiny_ctx.generate(tiny_model, [[1], [1]], [greedy(2)])


def test_generate_empty_prompt(tiny_ctx, tiny_model):
    with pytest.raises(InvalidArgument, match="empty"):
        tiny_ctx.generate(tiny_model, [[]], [greedy(2)])


def test_generate_prompt_token_out_of_range(tiny_ctx, tiny_model):
    with pytest.raises(InvalidArgument, match="token id"):
        tiny_ctx.generate(tiny_model, [[1, 10**6]], [greedy(2)])


def test_generate_no_prompts_returns_nothing(tiny_ctx, tiny_model):
    assert tiny_ctx.generate(tiny_model, [], []) == []


def test_detokenize_out_of_range(tiny_model):
    for bad in ([tiny_model.info.n_vocab], [-1], [1, 2**31 - 1]):
        with pytest.raises(InvalidArgument, match="out of range"):
            tiny_model.detokenize(bad)


def test_token_to_piece_out_of_range(tiny_model):
    with pytest.raises(InvalidArgument):
        tiny_model.token_to_piece(tiny_model.info.n_vocab)
    assert tiny_model.is_eog(10**6) is False


def test_embed_arguments(tiny_model, tiny_ctx):
    from mullama.core.errors import ContextOverflow

    with pytest.raises(InvalidArgument, match="embeddings=True"):
        tiny_ctx.embed([[1, 5]])
    with engine.Context(tiny_model, ctx_params(n_ctx=256, n_batch=64, embeddings=True)) as ectx:
        with pytest.raises(InvalidArgument, match="empty"):
            ectx.embed([[]])
        with pytest.raises(ContextOverflow):
            ectx.embed([[5] * 65])
        with pytest.raises(InvalidArgument, match="token id"):
            ectx.embed([[10**6]])
        assert ectx.embed([]) == []
