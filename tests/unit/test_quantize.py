"""Quantising tiny F32/F16 models: output type, progress, abort, typed errors."""

from __future__ import annotations

import os

import pytest

import gguf_factory
from helpers import cpu_params, ctx_params, greedy
from mullama import engine
from mullama.core.errors import (
    CorruptModelFile, EngineError, InvalidArgument, InvalidModelFile, ModelFileNotFound, OperationAborted,
)


def _qp(type_: str, **kw) -> engine.QuantizeParams:
    kw.setdefault("n_threads", 2)
    return engine.QuantizeParams(type=type_, **kw)


@pytest.mark.parametrize("target", ["Q8_0", "Q4_0"])
@pytest.mark.parametrize("source", ["tiny_path", "tiny_f16_path"], ids=["from-f32", "from-f16"])
def test_quantize_writes_a_loadable_model_of_the_target_type(request, tmp_path, source, target):
    src = request.getfixturevalue(source)
    out = tmp_path / f"tiny-{target}.gguf"
    progress: list[float] = []
    engine.quantize(src, out, _qp(target), progress=progress.append)

    assert progress, "progress was never called"
    assert progress == sorted(progress), "progress went backwards"
    assert 0.0 <= progress[0] and progress[-1] == pytest.approx(1.0)
    with engine.Model(str(out), cpu_params()) as model:
        assert model.info.quantization == target
        assert model.info.n_params == gguf_factory.TinySpec().n_params
        assert model.detokenize(model.tokenize("the sea", False, False)) == "the sea"
    assert os.path.getsize(out) < os.path.getsize(src)


def test_quantize_type_is_case_insensitive(tiny_path, tmp_path):
    out = tmp_path / "q.gguf"
    engine.quantize(tiny_path, out, _qp("q8_0"))
    with engine.Model(str(out), cpu_params()) as model:
        assert model.info.quantization == "Q8_0"


def test_quantized_model_generates(tiny_path, tmp_path):
    out = tmp_path / "q.gguf"
    engine.quantize(tiny_path, out, _qp("Q4_0"))
    with engine.Model(str(out), cpu_params()) as model, engine.Context(model, ctx_params(n_ctx=256)) as ctx:
        r = ctx.generate(model, [[1, 5, 6]], [greedy(4, ignore_eos=True)])[0]
        assert len(r.tokens) == 4


def test_progress_false_aborts_and_leaves_no_output(tiny_path, tmp_path):
    out = tmp_path / "aborted.gguf"
    calls: list[float] = []

    def stop_early(fraction: float) -> bool:
        calls.append(fraction)
        return fraction < 0.3

    with pytest.raises(OperationAborted):
        engine.quantize(tiny_path, out, _qp("Q8_0"), progress=stop_early)
    assert calls and calls[-1] >= 0.3
    assert calls[-1] < 1.0
    assert not out.exists()


def test_progress_exception_propagates_and_leaves_no_output(tiny_path, tmp_path):
    out = tmp_path / "raised.gguf"

    def explode(fraction: float) -> bool:
        raise ZeroDivisionError("from progress")

    with pytest.raises(ZeroDivisionError, match="from progress"):
        engine.quantize(tiny_path, out, _qp("Q8_0"), progress=explode)
    assert not out.exists()


@pytest.mark.parametrize("bad_type", ["Q9_9", "", "q3_x", "F64"])
def test_unknown_quantization_type_raises_invalid_argument(tiny_path, tmp_path, bad_type):
    out = tmp_path / "x.gguf"
    with pytest.raises(InvalidArgument, match="unknown quantisation type"):
        engine.quantize(tiny_path, out, _qp(bad_type))
    assert not out.exists()


def test_quantize_types_lists_the_common_targets():
    types = engine.quantize_types()
    for name in ("F16", "Q8_0", "Q4_0", "Q4_K_M"):
        assert name in types


def test_quantize_same_input_and_output_raises_invalid_argument(tiny_path):
    with pytest.raises(InvalidArgument):
        engine.quantize(tiny_path, tiny_path, _qp("Q8_0"))


def test_quantize_negative_threads_raises_invalid_argument(tiny_path, tmp_path):
    with pytest.raises(InvalidArgument):
        engine.quantize(tiny_path, tmp_path / "x.gguf", engine.QuantizeParams(type="Q8_0", n_threads=-1))


def test_quantize_missing_input_raises_model_file_not_found(tmp_path):
    with pytest.raises(ModelFileNotFound):
        engine.quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf", _qp("Q8_0"))


def test_quantize_not_gguf_input_raises_invalid_model_file(tmp_path):
    src = gguf_factory.write_not_gguf(tmp_path / "x.bin")
    with pytest.raises(InvalidModelFile):
        engine.quantize(src, tmp_path / "x.gguf", _qp("Q8_0"))


def test_requantize_needs_allow_requantize(tiny_path, tmp_path):
    q8 = tmp_path / "q8.gguf"
    engine.quantize(tiny_path, q8, _qp("Q8_0"))
    with pytest.raises(InvalidArgument, match="allow_requantize"):
        engine.quantize(q8, tmp_path / "q4.gguf", _qp("Q4_0"))
    assert not (tmp_path / "q4.gguf").exists()
    engine.quantize(q8, tmp_path / "q4.gguf", _qp("Q4_0", allow_requantize=True))
    with engine.Model(str(tmp_path / "q4.gguf"), cpu_params()) as model:
        assert model.info.quantization == "Q4_0"


def test_unwritable_output_is_not_blamed_on_the_input(tiny_path, tmp_path):
    # The input is fine; only the output directory is missing. CorruptModelFile
    # ("truncated or inconsistent GGUF", HTTP 422) misreports the cause.
    with pytest.raises(EngineError) as exc_info:
        engine.quantize(tiny_path, tmp_path / "no-such-dir" / "out.gguf", _qp("Q8_0"))
    assert not isinstance(exc_info.value, CorruptModelFile), str(exc_info.value)


def test_f32_model_reports_f32_quantization(tiny_model):
    # llama_ftype_name(ALL_F32) is "all F32"; the short name must be "F32", not "all".
    assert tiny_model.info.quantization == "F32"


def test_an_importance_matrix_changes_the_rounding(tiny_path, tmp_path):
    plain, weighted = tmp_path / "plain.gguf", tmp_path / "weighted.gguf"
    engine.quantize(tiny_path, plain, _qp("Q4_0"))
    imatrix = gguf_factory.write_imatrix(tmp_path / "imatrix.gguf", tiny_path)
    params = _qp("Q4_0", imatrix=imatrix)
    assert params.imatrix == str(imatrix)
    engine.quantize(tiny_path, weighted, params)
    assert plain.read_bytes() != weighted.read_bytes()  # the same type, other rounding
    with engine.Model(str(weighted), cpu_params()) as model:
        assert model.info.quantization == "Q4_0"


def test_a_bad_importance_matrix_is_a_clear_error(tiny_path, tmp_path):
    junk = gguf_factory.write_not_gguf(tmp_path / "junk.gguf")
    with pytest.raises(InvalidArgument, match="not an importance matrix"):
        engine.quantize(tiny_path, tmp_path / "a.gguf", _qp("Q4_0", imatrix=junk))
    bare = gguf_factory.write_imatrix(tmp_path / "bare.gguf", tiny_path, metadata=False)
    with pytest.raises(InvalidArgument, match="lacks its metadata"):
        engine.quantize(tiny_path, tmp_path / "b.gguf", _qp("Q4_0", imatrix=bare))
    assert not (tmp_path / "a.gguf").exists() and not (tmp_path / "b.gguf").exists()
