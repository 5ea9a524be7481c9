"""Every bad model file raises its typed error, and load progress can abort (tiny models)."""

from __future__ import annotations

import os

import pytest

import gguf_factory
from helpers import cpu_params
from mullama import engine
from mullama.core.errors import (
    CorruptModelFile, InvalidModelFile, ModelFileNotFound, OperationAborted, UnsupportedModel,
)


def test_missing_file_raises_model_file_not_found(tmp_path):
    with pytest.raises(ModelFileNotFound, match="not found"):
        engine.Model(str(tmp_path / "does-not-exist.gguf"), cpu_params())


def test_directory_raises_model_file_not_found(tmp_path):
    with pytest.raises(ModelFileNotFound):
        engine.Model(str(tmp_path), cpu_params())


def test_model_file_not_found_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        engine.Model(tmp_path / "nope.gguf", cpu_params())  # a pathlib.Path works too


@pytest.mark.parametrize("kind", ["random", "text", "empty"])
def test_not_a_gguf_raises_invalid_model_file(tmp_path, kind):
    path = gguf_factory.write_not_gguf(tmp_path / f"{kind}.bin", kind)
    with pytest.raises(InvalidModelFile) as exc_info:
        engine.Model(str(path), cpu_params())
    assert not isinstance(exc_info.value, CorruptModelFile)  # "not GGUF" is not "damaged GGUF"


@pytest.mark.parametrize("where", ["data", "header", "magic"])
def test_truncated_gguf_raises_corrupt_model_file(tiny_path, tmp_path, where):
    cut = gguf_factory.write_truncated(tiny_path, tmp_path / f"cut-{where}.gguf", where)
    with pytest.raises(CorruptModelFile):
        engine.Model(str(cut), cpu_params())


def test_unknown_architecture_raises_unsupported_model(tmp_path):
    path = gguf_factory.write_unknown_arch(tmp_path / "nosucharch.gguf")
    with pytest.raises(UnsupportedModel, match="nosucharch"):
        engine.Model(str(path), cpu_params())


def test_progress_reaches_one_and_is_monotone(tiny_path):
    seen: list[float] = []
    with engine.Model(str(tiny_path), cpu_params(), progress=seen.append) as model:
        assert model.info.n_layer == 2
    assert seen, "progress was never called"
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0)


def test_progress_returning_false_aborts_the_load(tiny_path):
    calls: list[float] = []

    def stop(fraction: float) -> bool:
        calls.append(fraction)
        return False

    with pytest.raises(OperationAborted):
        engine.Model(str(tiny_path), cpu_params(), progress=stop)
    assert len(calls) == 1  # stopped at the first report


def test_progress_exception_propagates_unchanged(tiny_path):
    class Boom(Exception):
        pass

    def explode(fraction: float) -> bool:
        raise Boom("from the progress callback")

    with pytest.raises(Boom, match="from the progress callback"):
        engine.Model(str(tiny_path), cpu_params(), progress=explode)


def test_failed_loads_leave_the_engine_usable(tiny_path, tmp_path):
    bad = gguf_factory.write_truncated(tiny_path, tmp_path / "cut.gguf", "data")
    for _ in range(3):
        with pytest.raises(CorruptModelFile):
            engine.Model(str(bad), cpu_params())
    with engine.Model(str(tiny_path), cpu_params()) as model:
        assert model.tokenize("a", False, False)


def test_error_message_names_the_path(tmp_path):
    path = tmp_path / "missing-model.gguf"
    with pytest.raises(ModelFileNotFound) as exc_info:
        engine.Model(str(path), cpu_params())
    assert os.fspath(path) in str(exc_info.value)
