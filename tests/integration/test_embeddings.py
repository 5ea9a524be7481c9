"""Pooled sentence embeddings from SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import ctx_params
from mullama import engine

TEXTS = [
    "The cat sits on the mat.",
    "A cat is sitting on the mat.",
    "Quarterly revenue grew by eight percent.",
]


@pytest.fixture(scope="module")
def embed_ctx(smollm):
    with engine.Context(smollm, ctx_params(n_ctx=512, embeddings=True)) as ctx:
        yield ctx


@pytest.fixture(scope="module")
def vectors(smollm, embed_ctx):
    return np.array(engine.embed(embed_ctx, smollm, TEXTS))


def test_vectors_have_n_embd_dimensions(vectors, smollm):
    assert vectors.shape == (len(TEXTS), smollm.info.n_embd) == (3, 576)
    assert np.isfinite(vectors).all()


def test_vectors_have_unit_norm(vectors):
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrase_is_closer_than_unrelated_text(vectors):
    paraphrase = float(vectors[0] @ vectors[1])
    unrelated = float(vectors[0] @ vectors[2])
    assert paraphrase > unrelated


def test_embeddings_are_deterministic(smollm, embed_ctx, vectors):
    again = np.array(engine.embed(embed_ctx, smollm, TEXTS))
    np.testing.assert_allclose(again, vectors, atol=1e-6)


def test_batched_embeddings_match_single_ones(smollm, vectors):
    with engine.Context(smollm, ctx_params(n_ctx=512, embeddings=True, n_seq_max=4)) as ctx:
        batched = np.array(engine.embed(ctx, smollm, TEXTS))
    np.testing.assert_allclose(batched, vectors, atol=1e-4)


@pytest.mark.parametrize("pooling", ["last", "cls"])
def test_other_poolings_give_unit_vectors(smollm, pooling):
    with engine.Context(smollm, ctx_params(n_ctx=512, embeddings=True, pooling=pooling)) as ctx:
        vecs = np.array(engine.embed(ctx, smollm, TEXTS[:2]))
    assert vecs.shape == (2, 576)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_pooling_none_raises_engine_error(smollm):
    from mullama.core.errors import EngineError

    with engine.Context(smollm, ctx_params(n_ctx=512, embeddings=True, pooling="none")) as ctx:
        with pytest.raises(EngineError):
            engine.embed(ctx, smollm, TEXTS[:1])
