"""Shared fixtures: the real SmolLM2 model (loaded once), tiny random GGUFs, helpers.

Layout: ``tests/unit`` needs no real model (tiny GGUFs from ``gguf_factory``,
pure Python); ``tests/integration`` uses the bundled SmolLM2-135M-Instruct
Q4_1. Every context uses 2 threads (the CI machine has 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import gguf_factory
from helpers import cpu_params, ctx_params
from mullama import engine


# ---------------------------------------------------------------- real model


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from mullama.models import assets
    from mullama.core.errors import AssetError

    try:
        return assets.default_model_path()
    except AssetError as exc:  # no network and no cache: integration tests cannot run
        pytest.skip(f"SmolLM2 model not available: {exc}")


@pytest.fixture(scope="session")
def smollm(smollm_path):
    """SmolLM2-135M-Instruct Q4_1, loaded once for the session (do not close it in a test)."""
    model = engine.Model(str(smollm_path), cpu_params())
    yield model
    model.close()


@pytest.fixture
def smollm_ctx(smollm):
    """A fresh 1024-token, single-sequence context over SmolLM2."""
    with engine.Context(smollm, ctx_params(n_ctx=1024)) as ctx:
        yield ctx


# ---------------------------------------------------------------- tiny models


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-gguf")


@pytest.fixture(scope="session")
def tiny_path(tiny_dir) -> Path:
    """A 2-layer, n_embd 64 random llama GGUF with F32 weights."""
    return gguf_factory.write_tiny_llama(tiny_dir / "tiny-f32.gguf")


@pytest.fixture(scope="session")
def tiny_f16_path(tiny_dir) -> Path:
    return gguf_factory.write_tiny_llama(tiny_dir / "tiny-f16.gguf", gguf_factory.TinySpec(dtype="f16"))


@pytest.fixture(scope="session")
def tiny_model(tiny_path):
    """The tiny F32 model, loaded once for the session (do not close it in a test)."""
    model = engine.Model(str(tiny_path), cpu_params())
    yield model
    model.close()


@pytest.fixture
def tiny_ctx(tiny_model):
    """A fresh context over the tiny model: n_ctx 256, n_batch 64, 2 sequences."""
    with engine.Context(tiny_model, ctx_params(n_ctx=256, n_batch=64, n_seq_max=2)) as ctx:
        yield ctx


@pytest.fixture(autouse=True)
def _restore_llama_log_level():
    """Tests that change llama.cpp's log level get the default ("warning") back."""
    yield
    engine.set_llama_log_level("warning")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only when asked for (``-m slow``); plain ``pytest`` skips them."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow test: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
