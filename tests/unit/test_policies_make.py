"""Scheduling policies: make_policy by name and by import path, its errors, and the documented example."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from policy_helpers import (
    DOC,
    EXAMPLE,
    EXAMPLE_SPEC,
    example_importable,  # noqa: F401 (an autouse fixture)
)

from mullama.core.errors import ConfigError
from mullama.serving.policies import (
    POLICIES,
    BasePolicy,
    FifoPolicy,
    PreemptivePolicy,
    PriorityPolicy,
    RoundRobinPolicy,
    make_policy,
)

# ---------------------------------------------------------------- make_policy


@pytest.mark.parametrize("spec, cls", [
    ("fifo", FifoPolicy), ("round_robin", RoundRobinPolicy), ("priority", PriorityPolicy),
    ("preemptive", PreemptivePolicy), ("  FIFO ", FifoPolicy), ("round-robin", RoundRobinPolicy),
    ("Round_Robin", RoundRobinPolicy), ("mullama.policies:PriorityPolicy", PriorityPolicy),
    (" mullama.policies:PreemptivePolicy ", PreemptivePolicy),
])
def test_make_policy(spec: str, cls: type) -> None:
    policy = make_policy(spec)
    assert type(policy) is cls
    assert policy.name == cls.name
    assert make_policy(spec) is not policy  # a fresh one each time: no shared queue


def test_make_policy_by_import_path_loads_the_example() -> None:
    policy = make_policy(EXAMPLE_SPEC)
    assert type(policy).__name__ == "ShortestPromptFirst"
    assert policy.name == "shortest_prompt"


def test_registry() -> None:
    assert list(POLICIES) == ["fifo", "round_robin", "priority", "preemptive"]
    assert all(issubclass(cls, BasePolicy) and cls.name == name for name, cls in POLICIES.items())
    with pytest.raises(TypeError):
        POLICIES["mine"] = FifoPolicy  # type: ignore[index]


BROKEN_MODULES = {
    "raises": "1 / 0\n",
    "syntax": "def broken(:\n",
    "imports_missing": "import mullama_no_such_dependency_zz\n",
    "classes": '''
class NeedsArgs:
    def __init__(self, size: int) -> None: ...
class Explodes:
    def __init__(self) -> None:
        raise RuntimeError("no config for me")
class NoVictim:
    name = "no_victim"
    def add(self, req): ...
    def remove(self, req, dispatched): ...
    def order(self, now): return iter(())
class Nameless:
    def add(self, req): ...
    def remove(self, req, dispatched): ...
    def order(self, now): return iter(())
    def victim(self, urgent, running, now): return None
class NotMethods:
    name = ""
    add = remove = order = victim = 3
def factory():
    return NoVictim()
VALUE = 42
''',
}

MAKE_POLICY_ERRORS = [
    ("", r"expected a policy name \(fifo, round_robin, priority, preemptive\) or 'package\.module:Class', "
         r"got ''"),
    ("   ", r"expected a policy name .* got '   '"),
    (None, r"expected a policy name .* got None"),
    ("fifoo", r"unknown policy 'fifoo' \(did you mean 'fifo'\?\); "
              r"known: fifo, round_robin, priority, preemptive"),
    ("roundrobin", r"did you mean 'round_robin'\?"),
    ("lottery", r"^scheduler: unknown policy 'lottery'; known: fifo, round_robin, priority, preemptive, "
                r"or 'package\.module:Class'$"),
    ("mypkg.policies.Mine", r"unknown policy 'mypkg\.policies\.Mine' \(a custom policy is written "
                            r"'package\.module:Class'\)"),
    ("a:b:c", r"'a:b:c' is not a valid import path; expected 'package\.module:Class'"),
    (":Cls", r"is not a valid import path"),
    ("mod:", r"is not a valid import path"),
    ("mod:Cls()", r"is not a valid import path"),
    ("1mod:Cls", r"is not a valid import path"),
    ("mod..sub:Cls", r"is not a valid import path"),
    ("mullama_no_such_module_zz:Cls", r"cannot import 'mullama_no_such_module_zz' for policy "
                                      r"'mullama_no_such_module_zz:Cls': "
                                      r"No module named 'mullama_no_such_module_zz'"),
    ("mullama.no_such_module_zz:Cls", r"cannot import 'mullama\.no_such_module_zz'.*No module named"),
    ("pol_raises:Cls", r"importing 'pol_raises' for policy 'pol_raises:Cls' failed: "
                       r"ZeroDivisionError: division"),
    ("pol_syntax:Cls", r"importing 'pol_syntax' .* failed: SyntaxError"),
    ("pol_imports_missing:Cls", r"cannot import 'pol_imports_missing' .*No module named "
                                r"'mullama_no_such_dependency_zz'"),
    ("mullama.policies:Nope", r"'mullama\.policies' has no attribute 'Nope' "
                              r"\(policy 'mullama\.policies:Nope'\)"),
    ("mullama.policies:FifoPolicy.nope", r"'mullama\.policies\.FifoPolicy' has no attribute 'nope'"),
    ("mullama.policies:MAX_PREEMPTIONS", r"'mullama\.policies:MAX_PREEMPTIONS' is a int, not a policy class"),
    ("mullama.policies:Request", r"creating 'mullama\.policies:Request' with no arguments failed: TypeError"),
    ("pol_classes:NeedsArgs", r"creating 'pol_classes:NeedsArgs' with no arguments failed: "
                              r"TypeError: .*size"),
    ("pol_classes:Explodes", r"failed: RuntimeError: no config for me"),
    ("pol_classes:NoVictim", r"'pol_classes:NoVictim' is not a policy: it lacks victim \(a policy has"),
    ("pol_classes:factory", r"'pol_classes:factory' is a function, not a policy class"),
    ("pol_classes:Nameless", r"it lacks name \("),
    ("pol_classes:NotMethods", r"it lacks name, add, remove, order, victim \("),
    ("pol_classes:VALUE", r"is a int, not a policy class"),
]


@pytest.mark.parametrize("spec, message", MAKE_POLICY_ERRORS)
def test_make_policy_errors(spec: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in BROKEN_MODULES.items():
        (tmp_path / f"pol_{name}.py").write_text(text)
        monkeypatch.delitem(sys.modules, f"pol_{name}", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=message) as info:
        make_policy(spec)
    assert str(info.value).startswith("scheduler: ")
    assert info.value.status == 400


# ---------------------------------------------------------------- the documented example


def test_example_policy_is_short_and_shown_verbatim_in_the_docs() -> None:
    text = EXAMPLE.read_text()
    assert len(text.splitlines()) < 50
    assert f"```python\n{text}```" in DOC.read_text()
