"""Eviction as a pure decision: which loaded model makes room, table-tested."""

from __future__ import annotations

import pytest

from mullama.serving.eviction import Candidate, choose_victim, eviction_order


def c(name: str, *, ready: bool = True, pinned: bool = False, in_flight: int = 0, last_used: float = 0.0) -> Candidate:
    return Candidate(name=name, ready=ready, pinned=pinned, in_flight=in_flight, last_used=last_used)


@pytest.mark.parametrize("candidates, exclude, protect, victim", [
    ([], "", frozenset(), None),                                                    # nothing loaded
    ([c("a", last_used=2), c("b", last_used=1)], "", frozenset(), "b"),              # least recently used
    ([c("a", last_used=1, in_flight=1), c("b", last_used=5)], "", frozenset(), "b"),  # idle before busy
    ([c("a", last_used=1, in_flight=2), c("b", last_used=5, in_flight=1)], "", frozenset(), "a"),  # all busy: LRU
    ([c("a", last_used=1, pinned=True), c("b", last_used=5)], "", frozenset(), "b"),  # never a pinned one
    ([c("a", pinned=True)], "", frozenset(), None),                                  # only pinned: none
    ([c("a", last_used=1), c("b", last_used=5)], "a", frozenset(), "b"),             # never the one loading
    ([c("a", last_used=1), c("b", last_used=5)], "", frozenset({"a"}), "b"),         # never a protected one
    ([c("a", last_used=1), c("b", last_used=5)], "", frozenset({"a", "b"}), None),
    ([c("a", last_used=1, ready=False), c("b", last_used=5)], "", frozenset(), "b"),  # loading/draining: no
    ([c("a", ready=False)], "", frozenset(), None),
])
def test_choose_victim(candidates, exclude, protect, victim) -> None:
    assert choose_victim(candidates, exclude=exclude, protect=protect) == victim


def test_eviction_order_is_idle_lru_then_busy_lru() -> None:
    order = eviction_order([c("busy-old", in_flight=1, last_used=1), c("idle-new", last_used=9),
                            c("idle-old", last_used=2), c("busy-new", in_flight=3, last_used=8),
                            c("pinned", pinned=True, last_used=0)])
    assert [x.name for x in order] == ["idle-old", "idle-new", "busy-old", "busy-new"]
