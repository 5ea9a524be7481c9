"""Shared by the scheduling-policy tests: table rows to requests, the example policy, a fixed clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mullama.serving.policies import POLICIES, Policy, Request, make_policy

HERE = Path(__file__).parent
EXAMPLE = HERE / "example_policy.py"
DOC = HERE.parent.parent / "docs" / "scheduling.md"
EXAMPLE_SPEC = "example_policy:ShortestPromptFirst"
NOW = 1000.0
MODELS, USERS = ["x", "y", "z"], ["a", "b", "c", "d"]


@pytest.fixture(autouse=True)
def example_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example policy is imported by path, as a user's module on PYTHONPATH would be."""
    monkeypatch.syspath_prepend(str(HERE))


def reqs(*rows: dict[str, Any]) -> list[Request]:
    """Requests from table rows; ``id`` defaults to r<i> and ``seq`` to the row index."""
    return [Request(**{"id": f"r{i}", "model": "m", "user": "u", "seq": i, **row})
            for i, row in enumerate(rows)]


def filled(policy: Policy, rows: list[Request]) -> Policy:
    for r in rows:
        policy.add(r)
    return policy


def ids(policy: Policy, now: float = NOW) -> list[str]:
    return [r.id for r in policy.order(now)]


def all_policies() -> list[Policy]:
    return [cls() for cls in POLICIES.values()] + [make_policy(EXAMPLE_SPEC)]


def running(*rows: dict[str, Any]) -> list[Request]:
    return [Request(**{"id": f"run{i}", "model": "m", "user": "u", "seq": 10 + i, **row})
            for i, row in enumerate(rows)]
