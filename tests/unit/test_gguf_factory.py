"""The tiny GGUF factory writes files llama.cpp loads, deterministically."""

from __future__ import annotations

import os

import gguf
import pytest

import gguf_factory
from helpers import cpu_params
from mullama import engine


def test_tiny_model_loads_with_expected_shape(tiny_model, tiny_path):
    info = tiny_model.info
    spec = gguf_factory.TinySpec()
    assert info.architecture == "llama"
    assert info.n_layer == spec.n_layer
    assert info.n_embd == spec.n_embd
    assert info.n_head == spec.n_head
    assert info.n_head_kv == spec.n_head_kv
    assert info.n_ctx_train == spec.n_ctx_train
    assert info.n_vocab == gguf_factory.N_VOCAB
    assert info.bos == 1 and info.eos == 2
    assert info.file_size == os.path.getsize(tiny_path)
    assert info.name == "tiny-random-llama"


def test_tiny_model_param_count_matches_the_tensors(tiny_model):
    assert tiny_model.info.n_params == gguf_factory.TinySpec().n_params


def test_factory_is_deterministic(tmp_path):
    a = gguf_factory.write_tiny_llama(tmp_path / "a.gguf")
    b = gguf_factory.write_tiny_llama(tmp_path / "b.gguf")
    c = gguf_factory.write_tiny_llama(tmp_path / "c.gguf", gguf_factory.TinySpec(seed=1))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_f16_model_loads_and_reports_f16(tiny_f16_path):
    with engine.Model(str(tiny_f16_path), cpu_params()) as model:
        assert model.info.quantization == "F16"
        assert model.info.n_vocab == gguf_factory.N_VOCAB


def test_tiny_vocab_byte_fallback_round_trips(tiny_model):
    text = "hello the world, caf\u00e9 \u4f60\u597d \U0001f600"
    tokens = tiny_model.tokenize(text, False, False)
    assert tiny_model.detokenize(tokens) == text


def test_truncation_helpers_cut_where_they_say(tiny_path, tmp_path):
    off = gguf_factory.data_offset(tiny_path)
    size = os.path.getsize(tiny_path)
    data_cut = gguf_factory.write_truncated(tiny_path, tmp_path / "d.gguf", "data")
    header_cut = gguf_factory.write_truncated(tiny_path, tmp_path / "h.gguf", "header")
    assert off < os.path.getsize(data_cut) < size
    assert 24 < os.path.getsize(header_cut) < off
    assert data_cut.read_bytes()[:4] == b"GGUF" and header_cut.read_bytes()[:4] == b"GGUF"


def test_unknown_arch_file_is_valid_gguf(tmp_path):
    path = gguf_factory.write_unknown_arch(tmp_path / "u.gguf")
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "nosucharch"


@pytest.mark.parametrize("kind", ["random", "text", "empty"])
def test_not_gguf_helper_has_no_magic(tmp_path, kind):
    path = gguf_factory.write_not_gguf(tmp_path / "x.bin", kind)
    assert path.read_bytes()[:4] != b"GGUF"
