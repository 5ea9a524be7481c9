"""A model's LoRA adapters (``[[models.NAME.adapters]]``, llama-server's ``--lora`` / ``--lora-scaled``):
the checks the types do not make, and ``~`` expansion. Reads no file, only asks whether one exists."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import msgspec

from mullama.core.errors import ConfigError


def adapter_name(adapter: Any) -> str:
    """The name requests use for ``adapter``: its ``name``, else its file's name without ``.gguf``."""
    if adapter.name is not None:
        return str(adapter.name)
    return os.path.basename(adapter.path).removesuffix(".gguf")


def expand_adapters(adapters: Sequence[Any] | None) -> tuple[Any, ...] | None:
    """``adapters`` with ``~`` expanded in their paths."""
    if adapters is None:
        return None
    return tuple(msgspec.structs.replace(a, path=os.path.expanduser(a.path)) for a in adapters)


def check_adapters(adapters: Sequence[Any] | None, base: str) -> None:
    """Each path names a file, each scale is finite, names are unique and have no path pieces."""
    seen: dict[str, int] = {}
    for i, a in enumerate(adapters or ()):
        where = f"{base}.adapters[{i}]"
        if not a.path.strip():
            raise ConfigError(f"{where}.path: expected the adapter's GGUF file, got an empty string")
        if not os.path.isfile(a.path):
            raise ConfigError(f"{where}.path: no such file: {a.path!r}")
        if not math.isfinite(a.scale):
            raise ConfigError(f"{where}.scale: expected a finite number, got {a.scale!r}")
        name = adapter_name(a)
        bad = next((part for part in ("/", "\\") if part in name), None)
        if not name.strip() or bad or any(not ch.isprintable() for ch in name):
            problem = "is empty" if not name.strip() else f"must not contain {bad!r}" if bad else \
                "has control characters"
            raise ConfigError(f"{where}.name: {name!r} {problem}")
        if name in seen:
            raise ConfigError(f"{where}: the name {name!r} is taken by adapters[{seen[name]}]; give one a `name`")
        seen[name] = i
