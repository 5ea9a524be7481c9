"""Shared by the settings tests: load settings from a TOML text, env and flags, or get the error message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mullama.config import Settings, load_settings
from mullama.core.errors import ConfigError


def toml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mullama.toml"
    path.write_text(text, "utf-8")
    return path


def load(tmp_path: Path, toml: str | None = None, env: dict[str, str] | None = None,
         flags: dict[str, Any] | None = None) -> Settings:
    path = toml_file(tmp_path, toml) if toml is not None else None
    return load_settings(flags, env=env or {}, config_path=path)


def error(tmp_path: Path, toml: str | None = None, env: dict[str, str] | None = None,
          flags: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml, env, flags)
    return str(info.value)
