"""``dispatch.decide``: one scheduling pass as actions, shared by the scheduler and the simulator."""

from __future__ import annotations

from mullama.serving.dispatch import Action, decide
from mullama.serving.policies import Request, make_policy


def req(i: int, model: str = "m", priority: int = 0, deadline: float | None = None, paused: bool = False) -> Request:
    return Request(id=f"r{i}", model=model, user="u", priority=priority, deadline=deadline, seq=i, paused=paused)


def run(policy_name: str, queued: list[Request], running: dict[str, list[Request]], cap: int = 1,
        now: float = 0.0, preemptible=lambda r: True) -> list[tuple[str, str, str | None]]:
    policy = make_policy(policy_name)
    for r in queued:
        policy.add(r)
    states = {r.id: "paused" if r.paused else "queued" for r in queued}
    acts = decide(policy, now, queued=lambda r: states.get(r.id), running=running, capacity=lambda m: cap,
                  preemptible=preemptible)
    assert all(isinstance(a, Action) for a in acts)
    return [(a.kind, a.request.id, a.for_request.id if a.for_request else None) for a in acts]


def test_free_slots_are_handed_out_in_policy_order() -> None:
    assert run("fifo", [req(2), req(1)], {}, cap=1) == [("dispatch", "r1", None)]
    assert run("priority", [req(1), req(2, priority=5)], {}, cap=2) == [("dispatch", "r2", None),
                                                                        ("dispatch", "r1", None)]
    assert run("fifo", [req(1, "a"), req(2, "b")], {"a": [req(0, "a")]}, cap=1) == [("dispatch", "r2", None)]


def test_expired_requests_go_first_and_paused_ones_never_expire() -> None:
    acts = run("fifo", [req(1, deadline=1.0), req(2), req(3, deadline=1.0, paused=True)], {}, cap=5, now=2.0)
    assert acts == [("expire", "r1", None), ("dispatch", "r2", None), ("dispatch", "r3", None)]


def test_preemption_pauses_then_dispatches_and_counts_the_slot() -> None:
    low = req(0, priority=0)
    acts = run("preemptive", [req(1, priority=10), req(2, priority=10)], {"m": [low]}, cap=1)
    assert acts == [("preempt", "r0", "r1"), ("dispatch", "r1", None)]  # r2 does not outrank r1: it waits


def test_only_preemptible_requests_are_victims() -> None:
    acts = run("preemptive", [req(1, priority=10)], {"m": [req(0)]}, cap=1, preemptible=lambda r: False)
    assert acts == []


def test_a_request_the_caller_no_longer_holds_is_skipped() -> None:
    policy = make_policy("fifo")
    policy.add(req(1))
    assert decide(policy, 0.0, queued=lambda r: None, running={}, capacity=lambda m: 1) == []


class _Grudge:
    """A custom policy that resumes a paused request, then would pause anything for the next one."""

    name = "grudge"

    def __init__(self, order: list[Request]) -> None:
        self._order = order

    def add(self, req: Request) -> None: ...

    def remove(self, req: Request, dispatched: bool) -> None: ...

    def order(self, now: float):
        return iter(self._order)

    def victim(self, urgent: Request, running, now: float) -> Request | None:
        return running[0] if running else None


def test_a_request_resumed_in_the_pass_can_be_a_victim_a_fresh_one_cannot() -> None:
    paused, fresh, late = req(1, paused=True), req(2), req(3)
    states = {"r1": "paused", "r2": "queued", "r3": "queued"}
    acts = decide(_Grudge([paused, late]), 0.0, queued=lambda r: states.get(r.id), running={}, capacity=lambda m: 1,
                  preemptible=lambda r: False)
    assert [(a.kind, a.request.id) for a in acts] == [("dispatch", "r1"), ("preempt", "r1"), ("dispatch", "r3")]
    acts = decide(_Grudge([fresh, late]), 0.0, queued=lambda r: states.get(r.id), running={}, capacity=lambda m: 1)
    assert [(a.kind, a.request.id) for a in acts] == [("dispatch", "r2")]
