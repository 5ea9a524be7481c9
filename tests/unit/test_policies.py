"""Scheduling policies: ordering tables, round-robin fairness and rotation, queue bookkeeping, and a
property test that order() is exactly the queue."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_helpers import (
    EXAMPLE_SPEC,
    MODELS,
    NOW,
    USERS,
    all_policies,
    example_importable,  # noqa: F401 (an autouse fixture)
    filled,
    ids,
    reqs,
)

from mullama.serving.policies import (
    POLICIES,
    FifoPolicy,
    Policy,
    PriorityPolicy,
    Request,
    RoundRobinPolicy,
    make_policy,
    transfer,
)

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



# ---------------------------------------------------------------- property: order() is exactly the queue

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
