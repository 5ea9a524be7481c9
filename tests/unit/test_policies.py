"""Scheduling policies: ordering tables, fairness, rotation, victims, make_policy, and a property test."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mullama.errors import ConfigError
from mullama.policies import (
    MAX_PREEMPTIONS, POLICIES, BasePolicy, FifoPolicy, Policy, PreemptivePolicy, PriorityPolicy, Request,
    RoundRobinPolicy, make_policy, transfer, urgency,
)

HERE = Path(__file__).parent
EXAMPLE = HERE / "example_policy.py"
DOC = HERE.parent.parent / "docs" / "scheduling.md"
EXAMPLE_SPEC = "example_policy:ShortestPromptFirst"
NOW = 1000.0


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


# ---------------------------------------------------------------- ordering tables

ORDER_TABLE = [
    # policy, rows (added in this order), expected ids
    ("fifo", [{}, {}, {}], ["r0", "r1", "r2"]),
    ("fifo", [{"seq": 5}, {"seq": 1}, {"seq": 3}], ["r1", "r2", "r0"]),  # by seq, not by add order
    ("fifo", [{"priority": 9}, {"priority": -9, "deadline": 1.0}], ["r0", "r1"]),  # ignores both
    ("fifo", [{"seq": 4}, {"seq": 2, "paused": True}], ["r1", "r0"]),  # paused goes back by arrival
    ("priority", [{"priority": 0}, {"priority": 5}, {"priority": -3}, {"priority": 5}],
     ["r1", "r3", "r0", "r2"]),
    ("priority", [{}, {"deadline": 10.0}, {"deadline": 5.0}], ["r2", "r1", "r0"]),  # EDF, none last
    ("priority", [{"deadline": 1.0}, {"priority": 1}], ["r1", "r0"]),  # priority beats deadline
    ("priority", [{"deadline": 5.0}, {"deadline": 5.0}], ["r0", "r1"]),  # same deadline: arrival
    ("priority", [{}, {"paused": True}], ["r1", "r0"]),  # full tie: paused first (it already waited)
    ("priority", [{"deadline": 5.0}, {"paused": True}], ["r0", "r1"]),  # paused does not beat a deadline
    ("priority", [{"deadline": 5.0}, {"deadline": 9.0, "paused": True}], ["r0", "r1"]),  # nor a sooner one
    ("priority", [{"priority": 1}, {"paused": True}], ["r0", "r1"]),  # nor a priority
    ("priority", [{"priority": -1000}, {"priority": 1000}, {}], ["r1", "r2", "r0"]),
    ("round_robin", [{}, {}, {}], ["r0", "r1", "r2"]),  # one user: FIFO
    ("round_robin", [{"user": "a"}, {"user": "a"}, {"user": "a"}, {"user": "b"}], ["r0", "r3", "r1", "r2"]),
    ("round_robin", [{"user": "a"}, {"user": "b"}, {"user": "a"}, {"user": "b"}, {"user": "c"}],
     ["r0", "r1", "r4", "r2", "r3"]),
    ("round_robin", [{"model": "x"}, {"model": "x"}, {"model": "x"}, {"model": "y"}],
     ["r0", "r3", "r1", "r2"]),
    # model x: a, a, b -> r0 r2 r1; model y: c -> r3; interleaved by model
    ("round_robin", [{"model": "x", "user": "a"}, {"model": "x", "user": "a"}, {"model": "x", "user": "b"},
                     {"model": "y", "user": "c"}], ["r0", "r3", "r2", "r1"]),
    # within a user, a paused request goes first even though it arrived later
    ("round_robin", [{"user": "a"}, {"user": "a"}, {"user": "a", "paused": True}], ["r2", "r0", "r1"]),
    ("round_robin", [{"seq": 3}, {"seq": 1}, {"seq": 2}], ["r1", "r2", "r0"]),  # FIFO is by seq
    ("round_robin", [{"priority": 9}, {"priority": -9}], ["r0", "r1"]),  # ignores priority
]


@pytest.mark.parametrize("name, rows, expected", ORDER_TABLE + [
    ("preemptive", rows, expected) for name, rows, expected in ORDER_TABLE if name == "priority"])
def test_order_table(name: str, rows: list[dict[str, Any]], expected: list[str]) -> None:
    assert ids(filled(make_policy(name), reqs(*rows))) == expected


def test_empty_policies_order_nothing() -> None:
    for policy in all_policies():
        assert ids(policy) == []


def test_example_policy_orders_by_prompt_size_with_ageing() -> None:
    policy = filled(make_policy(EXAMPLE_SPEC), reqs(
        {"prompt_chars": 25000, "arrived": 0.0},  # counts as arrived at 25.0
        {"prompt_chars": 300, "arrived": 10.0},  # 10.3
        {"prompt_chars": 300, "arrived": 10.0},  # 10.3, later seq
        {"prompt_chars": 4000, "arrived": 10.0},  # 14.0
        {"prompt_chars": 0, "arrived": 30.0}))  # 30.0: too late to overtake the long one
    assert ids(policy, now=30.0) == ["r1", "r2", "r3", "r0", "r4"]


def test_order_is_a_snapshot_safe_to_remove_while_walking() -> None:
    for policy in all_policies():
        filled(policy, reqs({"user": "a"}, {"user": "b"}, {"user": "a", "model": "y"}, {}))
        walked = []
        for r in policy.order(NOW):
            policy.remove(r, dispatched=True)
            walked.append(r.id)
        assert sorted(walked) == ["r0", "r1", "r2", "r3"], policy.name
        assert ids(policy) == [], policy.name


# ---------------------------------------------------------------- round robin: fairness and rotation


@pytest.mark.parametrize("heavy_first", [True, False])
@pytest.mark.parametrize("field", ["user", "model"])
def test_round_robin_light_client_is_not_starved(field: str, heavy_first: bool) -> None:
    base: dict[str, Any] = {"model": "m", "user": "u"}
    heavy = [Request(**{**base, "id": f"h{i}", "seq": i, field: "heavy"}) for i in range(100)]
    light = Request(**{**base, "id": "light", "seq": 100 if heavy_first else -1, field: "light"})
    policy = RoundRobinPolicy()
    for r in (heavy + [light]) if heavy_first else ([light] + heavy):
        policy.add(r)
    assert "light" in ids(policy)[:2]
    for _ in range(10):  # still true after the heavy one was served a few times
        policy.remove(next(policy.order(NOW)), dispatched=True)
        if "light" not in ids(policy):
            break
        assert "light" in ids(policy)[:2]


def test_round_robin_light_user_on_a_light_model() -> None:
    heavy = [Request(id=f"h{i}", model="hot", user="heavy", seq=i) for i in range(100)]
    policy = filled(RoundRobinPolicy(), heavy + [Request(id="light", model="cold", user="light", seq=100)])
    assert "light" in ids(policy)[:2]


ROTATION_TABLE = [
    # rows, (id, dispatched) removals, expected order after them
    ([{"user": "a"}, {"user": "a"}, {"user": "b"}, {"user": "b"}], [], ["r0", "r2", "r1", "r3"]),
    ([{"user": "a"}, {"user": "a"}, {"user": "b"}, {"user": "b"}], [("r0", True)], ["r2", "r1", "r3"]),
    ([{"user": "a"}, {"user": "a"}, {"user": "b"}, {"user": "b"}], [("r0", False)], ["r1", "r2", "r3"]),
    ([{"user": "a"}, {"user": "a"}, {"user": "b"}, {"user": "b"}], [("r2", True)], ["r0", "r3", "r1"]),
    ([{"user": "a"}, {"user": "a"}, {"user": "b"}, {"user": "b"}], [("r0", True), ("r2", True)],
     ["r1", "r3"]),
    ([{"user": "a"}, {"user": "b"}, {"user": "c"}, {"user": "a"}, {"user": "b"}, {"user": "c"}],
     [("r1", True)], ["r0", "r2", "r4", "r3", "r5"]),
    # across models: x x y y -> x1 y1 x2 y2; serving x moves model x to the back
    ([{"model": "x"}, {"model": "x"}, {"model": "y"}, {"model": "y"}], [("r0", True)], ["r2", "r1", "r3"]),
    ([{"model": "x"}, {"model": "x"}, {"model": "y"}, {"model": "y"}], [("r0", False)], ["r1", "r2", "r3"]),
    # a user whose last request left rejoins at the back (r0 gone; a's r4 added after)
    ([{"user": "a"}, {"user": "b"}, {"user": "b"}], [("r0", False)], ["r1", "r2"]),
]


@pytest.mark.parametrize("rows, removals, expected", ROTATION_TABLE)
def test_round_robin_rotation(rows: list[dict[str, Any]], removals: list[tuple[str, bool]],
                              expected: list[str]) -> None:
    queued = reqs(*rows)
    policy = filled(RoundRobinPolicy(), queued)
    by_id = {r.id: r for r in queued}
    for rid, dispatched in removals:
        policy.remove(by_id[rid], dispatched)
    assert ids(policy) == expected


def test_round_robin_user_who_left_rejoins_at_the_back() -> None:
    a1, b1, b2, a2 = reqs({"user": "a"}, {"user": "b"}, {"user": "b"}, {"user": "a"})
    policy = filled(RoundRobinPolicy(), [a1, b1, b2])
    policy.remove(a1, dispatched=True)
    policy.add(a2)
    assert ids(policy) == ["r1", "r3", "r2"]


def test_round_robin_paused_request_returns_to_the_head_of_its_user_line() -> None:
    a1, a2, b1 = reqs({"user": "a"}, {"user": "a"}, {"user": "b"})
    policy = filled(RoundRobinPolicy(), [a1, a2, b1])
    policy.remove(a1, dispatched=True)  # rotation: b, a
    assert ids(policy) == ["r2", "r1"]
    a1.paused, a1.preemptions = True, 1
    policy.add(a1)
    assert ids(policy) == ["r2", "r0", "r1"]


# ---------------------------------------------------------------- add / remove bookkeeping


@pytest.mark.parametrize("name", [*POLICIES, EXAMPLE_SPEC])
def test_remove_cancelled_request(name: str) -> None:
    policy = make_policy(name)
    a, b, c = reqs({"user": "x"}, {"user": "y"}, {"user": "x"})
    filled(policy, [a, b, c])
    policy.remove(b, dispatched=False)
    assert sorted(ids(policy)) == ["r0", "r2"]
    policy.remove(a, dispatched=False)
    policy.remove(c, dispatched=False)
    assert ids(policy) == []
    policy.add(b)  # a cancelled request can be queued again (a retry with the same id)
    assert ids(policy) == ["r1"]


@pytest.mark.parametrize("name", list(POLICIES))
def test_bookkeeping_misuse_raises(name: str) -> None:
    policy = make_policy(name)
    a, b = reqs({}, {})
    policy.add(a)
    with pytest.raises(ValueError, match="'r0' is already queued"):
        policy.add(a)
    with pytest.raises(KeyError, match="'r1' is not queued"):
        policy.remove(b, dispatched=False)
    policy.remove(a, dispatched=True)
    with pytest.raises(KeyError, match="'r0' is not queued"):
        policy.remove(a, dispatched=True)
    assert ids(policy) == []


def test_transfer_moves_the_queue_in_the_old_order() -> None:
    old = filled(PriorityPolicy(), reqs({"user": "a"}, {"user": "b", "priority": 5}, {"user": "a"}))
    assert ids(old) == ["r1", "r0", "r2"]
    new = RoundRobinPolicy()
    transfer(old, new, NOW)
    assert ids(old) == []
    assert ids(new) == ["r1", "r0", "r2"]  # b joined the rotation first, as the old order had it


# ---------------------------------------------------------------- victims


def running(*rows: dict[str, Any]) -> list[Request]:
    return [Request(**{"id": f"run{i}", "model": "m", "user": "u", "seq": 10 + i, **row})
            for i, row in enumerate(rows)]


VICTIM_TABLE = [
    # urgent, running, expected victim id (None: let it wait)
    ({"priority": 5}, [], None),
    ({"priority": 5}, [{"priority": 5}, {"priority": 7}], None),  # nothing lower
    ({}, [{}, {}], None),  # equal urgency never preempts
    ({"priority": 5}, [{"priority": 0}, {"priority": -1}, {"priority": 3}], "run1"),  # lowest priority
    ({"priority": 1}, [{}, {}, {"deadline": 50.0}], "run1"),  # no deadline, then most recent arrival
    ({"priority": 1}, [{"deadline": 30.0}, {"deadline": 40.0}], "run1"),  # latest deadline
    ({"priority": 1}, [{"deadline": 40.0, "seq": 1}, {"deadline": 40.0, "seq": 2}], "run1"),
    # equal priority: only for a sooner deadline than theirs (none counts as latest)
    ({"deadline": 10.0}, [{}], "run0"),
    ({"deadline": 10.0}, [{"deadline": 20.0}], "run0"),
    ({"deadline": 10.0}, [{"deadline": 10.0}], None),
    ({"deadline": 10.0}, [{"deadline": 5.0}], None),
    ({}, [{"deadline": 10.0}], None),
    ({"deadline": 10.0}, [{"priority": -1, "deadline": 5.0}, {"deadline": 20.0}], "run0"),  # priority first
    ({"deadline": 10.0, "priority": -1}, [{}], None),  # a deadline does not beat a priority
    # starvation guard
    ({"priority": 5}, [{"preemptions": MAX_PREEMPTIONS}], None),
    ({"priority": 5}, [{"preemptions": MAX_PREEMPTIONS - 1}], "run0"),
    ({"priority": 5}, [{"priority": 0, "preemptions": MAX_PREEMPTIONS}, {"priority": 1}], "run1"),
    ({"priority": 5}, [{"priority": 0, "preemptions": 7}, {"priority": 1, "preemptions": 3}], None),
    # a paused-and-resumed request is a victim like any other while under the guard
    ({"priority": 5}, [{"paused": True, "preemptions": 1}, {"priority": 1}], "run0"),
]


@pytest.mark.parametrize("urgent, run, expected", VICTIM_TABLE)
def test_preemptive_victim(urgent: dict[str, Any], run: list[dict[str, Any]], expected: str | None) -> None:
    urgent_req = Request(**{"id": "urgent", "model": "m", "user": "u", "seq": 99, **urgent})
    chosen = PreemptivePolicy().victim(urgent_req, running(*run), NOW)
    assert (chosen.id if chosen else None) == expected


@pytest.mark.parametrize("name", ["fifo", "round_robin", "priority", EXAMPLE_SPEC])
def test_non_preemptive_policies_never_pick_a_victim(name: str) -> None:
    urgent = Request(id="urgent", model="m", user="u", priority=1000, deadline=1.0, seq=99)
    run = running({"priority": -1000}, {})
    policy = make_policy(name)
    policy.add(urgent)
    assert policy.victim(urgent, run, NOW) is None


def test_preemption_and_order_agree() -> None:
    """What the priority order puts ahead is never paused for what it puts behind (no ping-pong)."""
    rows = reqs({}, {"deadline": 5.0}, {"priority": 1}, {"paused": True}, {"deadline": 5.0, "paused": True},
                {"priority": -1, "deadline": 1.0}, {"deadline": 9.0, "paused": True})
    policy = filled(PreemptivePolicy(), rows)
    ordered = list(policy.order(NOW))
    for i, first in enumerate(ordered):
        for later in ordered[i + 1:]:
            assert policy.victim(later, [first], NOW) is None, (later.id, first.id)


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


# ---------------------------------------------------------------- property: order() is exactly the queue

MODELS, USERS = ["x", "y", "z"], ["a", "b", "c", "d"]
OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(MODELS), st.sampled_from(USERS), st.integers(-2, 2),
              st.one_of(st.none(), st.floats(0, 50)), st.integers(0, 5000)),
    st.tuples(st.just("cancel"), st.integers(0, 1000)),
    st.tuples(st.just("dispatch"), st.integers(0, 4)),  # the scheduler walks order() and takes the first n
    st.tuples(st.just("resume"), st.integers(0, 1000)),  # a dispatched request comes back paused
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, name=st.sampled_from([*POLICIES, EXAMPLE_SPEC]))
def test_order_yields_exactly_the_queued_set(ops: list[tuple[Any, ...]], name: str) -> None:
    policy = make_policy(name)
    queued: dict[str, Request] = {}
    dispatched: list[Request] = []
    seq = itertools.count()
    for op in ops:
        now = NOW + next(seq)
        if op[0] == "add":
            _, model, user, priority, deadline, chars = op
            n = next(seq)
            r = Request(id=f"q{n}", model=model, user=user, priority=priority, deadline=deadline, seq=n,
                        arrived=now, prompt_chars=chars)
            policy.add(r)
            queued[r.id] = r
        elif op[0] == "cancel" and queued:
            r = list(queued.values())[op[1] % len(queued)]
            policy.remove(r, dispatched=False)
            del queued[r.id]
        elif op[0] == "dispatch":
            for r in itertools.islice(policy.order(now), op[1]):
                policy.remove(r, dispatched=True)
                dispatched.append(queued.pop(r.id))
        elif op[0] == "resume" and dispatched:
            r = dispatched.pop(op[1] % len(dispatched))
            r.paused, r.preemptions = True, r.preemptions + 1
            policy.add(r)
            queued[r.id] = r
        order = list(policy.order(now))
        assert sorted(r.id for r in order) == sorted(queued), op
        assert all(r is queued[r.id] for r in order)
        check_shape(policy, order, now)


def check_shape(policy: Policy, order: list[Request], now: float) -> None:
    """What each built-in promises about its order, beyond holding the right set."""
    if isinstance(policy, PriorityPolicy):
        keys = [policy.key(r, now) for r in order]
        assert keys == sorted(keys)
    elif isinstance(policy, FifoPolicy):
        assert [r.seq for r in order] == sorted(r.seq for r in order)
    elif isinstance(policy, RoundRobinPolicy):
        models = {r.model for r in order}
        assert {r.model for r in order[:len(models)]} == models  # each model within the first round
        for model in models:
            line = [r for r in order if r.model == model]
            users = {r.user for r in line}
            assert {r.user for r in line[:len(users)]} == users  # each user within its model's first round
            for user in users:
                mine = [(not r.paused, r.seq) for r in line if r.user == user]
                assert mine == sorted(mine)  # FIFO within a user, paused first


REQUEST = st.builds(Request, id=st.uuids().map(str), model=st.just("m"), user=st.sampled_from(USERS),
                    priority=st.integers(-3, 3),
                    deadline=st.one_of(st.none(), st.sampled_from([1.0, 2.0, 3.0])),
                    seq=st.integers(0, 10_000), paused=st.booleans(), preemptions=st.integers(0, 5))


@settings(max_examples=300, deadline=None)
@given(urgent=REQUEST, run=st.lists(REQUEST, max_size=8))
def test_victim_is_the_least_urgent_eligible(urgent: Request, run: list[Request]) -> None:
    chosen = PreemptivePolicy().victim(urgent, run, NOW)
    eligible = [r for r in run if r.preemptions < MAX_PREEMPTIONS and urgency(r) < urgency(urgent)]
    if not eligible:
        assert chosen is None
        return
    assert chosen is not None and any(chosen is r for r in eligible)
    assert urgency(chosen) == min(urgency(r) for r in eligible)
    assert chosen.seq == max(r.seq for r in eligible if urgency(r) == urgency(chosen))
