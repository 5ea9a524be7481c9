"""Metadata of the bundled SmolLM2-135M-Instruct Q4_1."""

from __future__ import annotations

import os

import pytest


def test_architecture_and_shape(smollm):
    info = smollm.info
    assert info.architecture == "llama"
    assert info.n_layer == 30
    assert info.n_ctx_train == 8192
    assert info.n_embd == 576
    assert info.n_head == 9
    assert info.n_head_kv == 3
    assert info.n_vocab == 49152


def test_parameter_count_is_about_134_5_million(smollm):
    assert smollm.info.n_params == pytest.approx(134.5e6, rel=0.005)


def test_quantization_is_q4_1(smollm):
    assert smollm.info.quantization == "Q4_1"


def test_file_size_matches_the_file(smollm, smollm_path):
    assert smollm.info.file_size == os.path.getsize(smollm_path)
    assert 0 < smollm.info.tensor_bytes <= smollm.info.file_size
    assert smollm.info.path == str(smollm_path)


def test_chat_template_is_chatml(smollm):
    assert smollm.info.chat_template
    assert "im_start" in smollm.info.chat_template


def test_special_tokens(smollm):
    info = smollm.info
    assert info.bos == 1  # <|im_start|>
    assert info.eos == 2  # <|im_end|>
    assert smollm.is_eog(info.eos)
    assert not smollm.is_eog(smollm.tokenize(" Paris", False, False)[0])
    assert info.add_bos is False
    assert info.has_encoder is False and info.is_recurrent is False


def test_metadata_dict(smollm):
    meta = smollm.metadata()
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == "30"
    assert meta["llama.embedding_length"] == "576"
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.chat_template"] == smollm.info.chat_template
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())


def test_name_and_description(smollm):
    assert smollm.info.name
    assert "Q4_1" in smollm.info.description
