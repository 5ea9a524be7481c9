"""Loading a user's class by import path (``package.module:Class``) for a pluggable seam.

Used by the scheduler policies and the prefetch predictors. Only classes are
accepted (an arbitrary function such as ``os:abort`` is never called); the
instance must have a non-empty ``name`` string and the seam's methods. Every
failure is a ``ConfigError`` that starts with the setting's name and says
what went wrong.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

from mullama.core.errors import ConfigError

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_PATH = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*")


def load_class_instance(path: str, *, setting: str, kind: str, methods: Sequence[str], doc: str) -> Any:
    """Import ``module:Class`` (dotted attributes allowed), instantiate it with no arguments, check it.

    ``setting``: the setting's name for messages ("scheduler"); ``kind``: "policy", "predictor";
    ``doc``: what such a class has, appended when methods are missing.
    """
    if not IMPORT_PATH.fullmatch(path):
        raise ConfigError(f"{setting}: {path!r} is not a valid import path; expected 'package.module:Class'")
    module_name, attr_path = path.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{setting}: cannot import {module_name!r} for {kind} {path!r}: {exc}") from exc
    except Exception as exc:  # the module itself is broken: say how
        raise ConfigError(f"{setting}: importing {module_name!r} for {kind} {path!r} failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    where = module_name
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise ConfigError(f"{setting}: {where!r} has no attribute {attr!r} ({kind} {path!r})")
        obj, where = getattr(obj, attr), f"{where}.{attr}"
    if not isinstance(obj, type):  # never call an arbitrary function (os:abort) on the way to a plugin
        raise ConfigError(f"{setting}: {path!r} is a {type(obj).__name__}, not a {kind} class")
    try:
        instance = obj()
    except Exception as exc:
        raise ConfigError(f"{setting}: creating {path!r} with no arguments failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    missing = [m for m in methods if not callable(getattr(instance, m, None))]
    if not isinstance(getattr(instance, "name", None), str) or not instance.name:
        missing.insert(0, "name")
    if missing:
        raise ConfigError(f"{setting}: {path!r} is not a {kind}: it lacks {', '.join(missing)} ({doc})")
    return instance
