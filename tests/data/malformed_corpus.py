"""The malformed-request corpus of ``tests/integration/test_malformed_requests.py``: the package
``tests/data/malformed`` (one module per group of cases), loaded here under the name ``malformed``
and re-exported, so that the test can load this one file by its path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "malformed" not in sys.modules:  # tests/data is not on sys.path: load the package by its path
    _dir = Path(__file__).resolve().with_name("malformed")
    _spec = importlib.util.spec_from_file_location(
        "malformed", _dir / "__init__.py", submodule_search_locations=[str(_dir)]
    )
    _pkg = importlib.util.module_from_spec(_spec)
    sys.modules["malformed"] = _pkg  # its modules import each other, and dataclasses look theirs up
    _spec.loader.exec_module(_pkg)  # type: ignore[union-attr]

from malformed import *
from malformed import __all__  # noqa: F401
