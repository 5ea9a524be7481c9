"""Quantisation quality (bench/quality.py, cli/evaluate.py): llama-perplexity's chunking and scoring, PPL,
KL divergence and top-1 agreement on known distributions, and ``mullama eval`` over real tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mullama import engine
from mullama.bench import quality
from mullama.cli.evaluate import evaluate
from mullama.cli.main import main
from mullama.core.errors import InvalidArgument

TEXT = "the sea and the land were one under the sky, and the old ship sailed on. " * 40


def test_chunks_are_whole_start_with_bos_and_score_their_second_half() -> None:
    tokens = list(range(100, 150))
    parts = quality.chunks(tokens, 16, None, bos=1)
    assert len(parts) == 3 and all(len(c) == 16 and c[0] == 1 for c in parts)  # 50 // 16; the rest dropped
    assert parts[1][1:] == tokens[17:32]
    assert quality.chunks(tokens, 16, 2, bos=None)[0] == tokens[:16]
    assert list(quality.scored(16)) == list(range(8, 15))  # n_ctx/2 .. n_ctx-2, as llama-perplexity
    with pytest.raises(ValueError):
        quality.chunks(tokens, 2, None, None)


def test_perplexity_kld_and_top1_on_known_distributions() -> None:
    uniform = quality.Score()
    uniform.add(quality.log_softmax(np.zeros((4, 10))), np.array([1, 2, 3, 4]))
    assert uniform.result()["ppl"] == pytest.approx(10.0)  # a uniform guess over 10 tokens
    ref = quality.log_softmax(np.array([[2.0, 0.0], [0.0, 2.0]]))
    same = quality.Score()
    same.add(ref, np.array([0, 1]), ref)
    r = same.result()
    assert r["kld"] == pytest.approx(0.0) and r["top1"] == 1.0
    flipped = quality.Score()
    other = quality.log_softmax(np.array([[0.0, 2.0], [0.0, 2.0]]))
    flipped.add(other, np.array([0, 1]), ref)
    p, q = np.exp(ref[0]), np.exp(other[0])
    r = flipped.result()
    assert r["kld"] == pytest.approx(float((p * np.log(p / q)).sum()) / 2) and r["top1"] == 0.5
    assert np.exp(quality.log_softmax(np.random.default_rng(0).normal(size=(3, 7)))).sum(axis=1) == pytest.approx(1)


@pytest.fixture(scope="module")
def tiny_q8(tiny_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "tiny-q8.gguf"
    engine.quantize(tiny_path, out, engine.QuantizeParams(type="Q8_0", n_threads=2))
    return out


def test_a_quantisation_against_its_source(tiny_path, tiny_q8) -> None:
    rows = evaluate([tiny_path, tiny_q8], tiny_path, TEXT, 16, 3, 2, speed=True)
    ref, q8 = rows
    assert ref["reference"] and not q8["reference"] and q8["quantization"] == "Q8_0"
    assert ref["tokens"] == q8["tokens"] == 3 * 7
    assert ref["kld"] == pytest.approx(0.0, abs=1e-9) and ref["top1"] == 1.0
    assert 0 <= q8["kld"] < 0.1 and q8["top1"] >= 0.8  # Q8_0 of random weights: close to its source
    assert math.isfinite(q8["ppl"]) and q8["ppl"] > 1
    assert q8["file_bytes"] < ref["file_bytes"] and q8["memory_bytes"] > 0
    assert q8["prefill_tok_s"] > 0 and q8["decode_tok_s"] > 0


def test_models_must_share_a_vocabulary(tiny_path, smollm_path) -> None:
    with pytest.raises(InvalidArgument, match="share a vocabulary"):
        evaluate([tiny_path, smollm_path], tiny_path, TEXT, 16, 1, 2, speed=False)
    with pytest.raises(InvalidArgument, match="fewer than one chunk"):
        evaluate([tiny_path], None, "the sea", 64, None, 2, speed=False)


def test_the_command_prints_a_row_per_model(tiny_path, tiny_q8, tmp_path, capsys) -> None:
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    assert main(["eval", str(tiny_path), str(tiny_q8), "--text", str(text), "--ctx", "16", "--chunks", "2",
                 "--no-speed", "-t", "2"]) == 0
    out = capsys.readouterr().out
    assert "| tiny-f32.gguf (reference) | F32 |" in out and "| tiny-q8.gguf | Q8_0 |" in out
    assert main(["eval", str(tiny_q8), "--text", str(text), "--ctx", "16", "--chunks", "1", "--json",
                 "--no-speed"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["tokens"] == 7 and "kld" not in row  # one model, no reference: perplexity only
    assert main(["eval", str(tiny_q8), "--text", str(tmp_path / "none.txt")]) == 1
    assert "cannot read the text" in capsys.readouterr().err
    assert main(["eval", str(tiny_q8), "--ctx", "2"]) == 1
    assert "--ctx must be at least 4" in capsys.readouterr().err
    assert main(["eval", str(tiny_q8), "--chunks", "0"]) == 1
    assert "--chunks must be at least 1" in capsys.readouterr().err


def test_the_shipped_text_is_found_by_name() -> None:
    text = quality.text_path("shakespeare").read_text()
    assert text.startswith("First Citizen:") and 30_000 < len(text) < 41_000
