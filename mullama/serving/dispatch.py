"""One scheduling pass as a pure decision: which queued requests expire, start, resume or preempt.

The scheduler (``scheduler.py``) and the simulator (``mullama/sim``) both call ``decide`` on
every event and apply the actions it returns, in order, so a simulated run takes exactly the
decisions a real one would. ``decide`` walks ``policy.order(now)`` once and keeps its own count of
the slots it hands out along the way; it reads the policy but never changes it (applying an action
does: ``policy.remove`` for a dispatch, ``policy.add`` for a paused victim).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mullama.serving.policies import Policy, Request


@dataclass(frozen=True)
class Action:
    """``expire``: ``request`` missed its deadline while queued. ``dispatch``: it takes a slot (a paused
    one resumes). ``preempt``: ``request`` (running) is paused to make room for ``for_request``, which is
    dispatched by the next action."""

    kind: Literal["expire", "dispatch", "preempt"]
    request: Request
    for_request: Request | None = None


def decide(policy: Policy, now: float, *, queued: Callable[[Request], str | None],
           running: Mapping[str, Sequence[Request]], capacity: Callable[[str], int],
           preemptible: Callable[[Request], bool] = lambda r: True) -> list[Action]:
    """The actions of one pass. ``queued(req)``: "queued" or "paused" for a request still waiting, None
    for one the caller no longer holds (skipped); ``running``: per model, the requests holding its slots;
    ``capacity(model)``: its slots; ``preemptible(req)``: whether a request running before this pass can be paused
    yet (the runner has it). Within the pass, a request just dispatched from the queue is never a victim and one
    just resumed is, as when the scheduler applied each decision at once."""
    held = {model: list(reqs) for model, reqs in running.items()}
    fresh: set[str] = set()    # dispatched from the queue in this pass: not running yet, never a victim
    resumed: set[str] = set()  # resumed in this pass: running again, so a victim like any running request
    actions: list[Action] = []
    for req in list(policy.order(now)):
        state = queued(req)
        if state is None:
            continue
        if req.deadline is not None and now > req.deadline and state == "queued":
            actions.append(Action("expire", req))
            continue
        slots = held.setdefault(req.model, [])
        if len(slots) < capacity(req.model):
            actions.append(Action("dispatch", req))
            slots.append(req)
            (fresh if state == "queued" else resumed).add(req.id)
        elif state == "queued":
            candidates = [r for r in slots if r.id not in fresh and (r.id in resumed or preemptible(r))]
            victim = policy.victim(req, candidates, now)
            if victim is not None:
                slots.remove(victim)
                actions += [Action("preempt", victim, for_request=req), Action("dispatch", req)]
                slots.append(req)
                fresh.add(req.id)
    return actions
