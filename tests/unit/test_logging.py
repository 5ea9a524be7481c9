"""llama.cpp log lines reach the stdlib logger "llama.cpp" at the chosen level."""

from __future__ import annotations

import logging

import pytest

import gguf_factory
from helpers import cpu_params
from mullama import engine


def _llama_records(caplog):
    return [r for r in caplog.records if r.name == "llama.cpp"]


def test_info_level_forwards_info_lines(caplog, tiny_path):
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    engine.set_llama_log_level("info")
    try:
        engine.Model(str(tiny_path), cpu_params()).close()
    finally:
        engine.set_llama_log_level("warning")
    records = _llama_records(caplog)
    info = [r for r in records if r.levelno == logging.INFO]
    assert info, "no INFO lines from llama.cpp while loading a model"
    assert any("llama_model_loader" in r.getMessage() or "print_info" in r.getMessage() for r in info)
    assert all("\n" not in r.getMessage() for r in records)  # one record per line


def test_error_level_suppresses_info_and_warning_lines(caplog, tiny_path):
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    engine.set_llama_log_level("error")
    try:
        engine.Model(str(tiny_path), cpu_params()).close()
    finally:
        engine.set_llama_log_level("warning")
    assert [r for r in _llama_records(caplog) if r.levelno < logging.ERROR] == []


def test_error_level_still_forwards_errors(caplog, tiny_path, tmp_path):
    from mullama.core.errors import CorruptModelFile

    bad = gguf_factory.write_truncated(tiny_path, tmp_path / "cut.gguf", "data")
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    engine.set_llama_log_level("error")
    try:
        with pytest.raises(CorruptModelFile):
            engine.Model(str(bad), cpu_params())
    finally:
        engine.set_llama_log_level("warning")
    errors = [r for r in _llama_records(caplog) if r.levelno == logging.ERROR]
    assert any("not within the file bounds" in r.getMessage() for r in errors)


def test_warning_level_is_the_default_after_restore(caplog, tiny_path):
    engine.set_llama_log_level("info")
    engine.set_llama_log_level("warning")
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    engine.Model(str(tiny_path), cpu_params()).close()
    assert [r for r in _llama_records(caplog) if r.levelno < logging.WARNING] == []


def test_numeric_levels_are_accepted(caplog, tiny_path):
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    engine.set_llama_log_level(2)  # ggml's "info"
    try:
        engine.Model(str(tiny_path), cpu_params()).close()
    finally:
        engine.set_llama_log_level("warning")
    assert any(r.levelno == logging.INFO for r in _llama_records(caplog))


def test_unknown_level_name_raises_value_error():
    with pytest.raises(ValueError):
        engine.set_llama_log_level("loud")
