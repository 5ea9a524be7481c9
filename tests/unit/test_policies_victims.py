"""Scheduling policies: which running request the preemptive policy pauses, tables and a property test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_helpers import (
    EXAMPLE_SPEC,
    NOW,
    USERS,
    example_importable,  # noqa: F401 (an autouse fixture)
    filled,
    reqs,
    running,
)

from mullama.serving.policies import MAX_PREEMPTIONS, PreemptivePolicy, Request, make_policy, urgency

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
