"""Scheduling policies: which queued request goes next, and which running one to pause for it.

The scheduler (``mullama/scheduler.py``) owns the queue, the in-flight state and the clock; a policy
only answers two questions, so strategies can be compared, swapped and tested without an event loop:

* ``order(now)``: the queued requests in dispatch order. The scheduler walks it and dispatches every
  request whose model has a free slot; the positions users see come from the same order.
* ``victim(urgent, running, now)``: which running request to pause so that ``urgent`` can start.

Policies are pure: no asyncio, no I/O, no clocks (``now`` is passed in), no logging. They learn about
the queue only through ``add`` and ``remove``. ``order`` returns a snapshot, so the scheduler may call
``remove`` while it walks it. Adding a request that is already queued, or removing one that is not, is
a bug in the caller and raises ``ValueError`` / ``KeyError`` at once rather than corrupting the order.

Built-ins (``POLICIES``): ``fifo``, ``round_robin``, ``priority``, ``preemptive``; ``make_policy``
turns the ``scheduler`` setting (one of those names, or ``package.module:Class``) into an instance.
docs/scheduling.md has the contract, the rules of each policy and an example custom policy.
"""

from __future__ import annotations

import difflib
import itertools
import math
import types
from bisect import insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mullama.core.errors import ConfigError
from mullama.core.plugins import load_class_instance

#: A running request already preempted this many times is never chosen again (starvation guard).
MAX_PREEMPTIONS = 3


@dataclass(eq=False)
class Request:
    """The scheduler's view of one request; policies read it, the scheduler owns it.

    ``eq=False``: two requests are never "equal", each object is itself (and hashable by identity).
    """

    id: str
    model: str  # resolved catalog name
    user: str  # fairness key: API-key fingerprint, else the `user` field, else the client address
    priority: int = 0  # higher is more urgent (-1000..1000)
    deadline: float | None = None  # monotonic seconds by which it must be dispatched; None: none
    arrived: float = 0.0  # monotonic
    seq: int = 0  # arrival order (unique, increasing)
    prompt_chars: int = 0  # size hint for custom policies
    max_tokens: int = -1
    adapters: str | None = None  # its LoRA set ("name-or-id:scale,..."); None: the model's default set. Requests
    #                              with different sets take turns at a runner's context: a policy may group them
    paused: bool = False  # preempted earlier: dispatching it means resuming it
    preemptions: int = 0


class Policy(Protocol):
    """What the scheduler calls. See docs/scheduling.md for the full contract."""

    name: str

    def add(self, req: Request) -> None:
        """``req`` joined the queue: new, or a paused one coming back (``req.paused``)."""

    def remove(self, req: Request, dispatched: bool) -> None:
        """``req`` left the queue: dispatched (True) or cancelled/expired (False)."""

    def order(self, now: float) -> Iterator[Request]:
        """Every queued request once, in dispatch order; a snapshot, safe to walk while removing."""

    def victim(self, urgent: Request, running: Sequence[Request], now: float) -> Request | None:
        """The running request to pause so ``urgent`` can take its slot, or None to let it wait."""


class BasePolicy:
    """Shared bookkeeping: the queued requests by id, sorted by ``key`` on demand; never preempts.

    A subclass that only changes the order overrides ``key``; the sort is stable and the queue is
    bounded by ``max_queue``, so sorting a snapshot per pass is cheaper than keeping a heap consistent.
    """

    name: str = "base"

    def __init__(self) -> None:
        self._queued: dict[str, Request] = {}

    def add(self, req: Request) -> None:
        if req.id in self._queued:
            raise ValueError(f"request {req.id!r} is already queued")
        self._queued[req.id] = req

    def remove(self, req: Request, dispatched: bool) -> None:
        self._take(req)

    def _take(self, req: Request) -> Request:
        """Forget ``req`` and return the object that was queued under its id."""
        stored = self._queued.pop(req.id, None)
        if stored is None:
            raise KeyError(f"request {req.id!r} is not queued")
        return stored

    def order(self, now: float) -> Iterator[Request]:
        return iter(sorted(self._queued.values(), key=lambda r: self.key(r, now)))

    def key(self, req: Request, now: float) -> Any:
        """Sort key of ``order``: smaller goes first. Arrival order here."""
        return req.seq

    def victim(self, urgent: Request, running: Sequence[Request], now: float) -> Request | None:
        return None


class FifoPolicy(BasePolicy):
    """Arrival order. A paused request keeps its original ``seq``, so it goes back ahead of later ones."""

    name = "fifo"


class RoundRobinPolicy(BasePolicy):
    """Fair across models and, within each model, across users; FIFO within one user.

    Two rotations, kept as insertion-ordered dicts: models, and per model its users. ``order`` deals
    one request per user in turn within each model, then one per model in turn across models, so a
    user with 100 queued requests (or a model with 100) is interleaved with the others instead of
    ahead of them. Dispatching a request moves its user (and its model) to the back of the rotation;
    a cancelled request does not, since it was not served. A user or model with nothing queued
    leaves the rotation and rejoins at the back. Within a user, paused requests come first, then by
    arrival, so a paused request keeps its place in its user's line.
    """

    name = "round_robin"

    def __init__(self) -> None:
        super().__init__()
        self._rotation: dict[str, dict[str, list[Request]]] = {}  # model -> user -> queued, FIFO

    def add(self, req: Request) -> None:
        super().add(req)
        users = self._rotation.setdefault(req.model, {})
        insort(users.setdefault(req.user, []), req, key=_user_line_key)

    def remove(self, req: Request, dispatched: bool) -> None:
        stored = self._take(req)
        users = self._rotation[stored.model]
        line = users[stored.user]
        line.remove(stored)
        if not line:
            del users[stored.user]
        elif dispatched:
            users[stored.user] = users.pop(stored.user)  # re-inserted: to the back of the rotation
        if not users:
            del self._rotation[stored.model]
        elif dispatched:
            self._rotation[stored.model] = self._rotation.pop(stored.model)

    def order(self, now: float) -> Iterator[Request]:
        per_model = [list(_interleave(users.values())) for users in self._rotation.values()]
        return iter(list(_interleave(per_model)))


class PriorityPolicy(BasePolicy):
    """Higher priority first; then earliest deadline (none last); then paused ones; then arrival.

    A paused request wins only a full tie of priority and deadline, so the order agrees with
    ``PreemptivePolicy.victim``: whatever this order puts first is never paused again for the other.
    """

    name = "priority"

    def key(self, req: Request, now: float) -> Any:
        return (-req.priority, req.deadline is None, req.deadline or 0.0, not req.paused, req.seq)


class PreemptivePolicy(PriorityPolicy):
    """``priority`` order, and pauses the least urgent running request for a more urgent waiting one.

    ``urgent`` outranks a running request when it has a higher priority, or the same priority and a
    sooner deadline (a request without a deadline has the latest one). Equal urgency never preempts.
    Since urgency strictly drops along any chain of preemptions, no two requests can take turns
    pausing each other. The victim is the least urgent candidate: lowest priority, then latest (or
    no) deadline, then the most recent arrival. A request already preempted ``max_preemptions``
    times is never chosen again, so a stream of urgent work cannot starve it forever.
    """

    name = "preemptive"
    max_preemptions: ClassVar[int] = MAX_PREEMPTIONS

    def victim(self, urgent: Request, running: Sequence[Request], now: float) -> Request | None:
        bar = urgency(urgent)
        candidates = [r for r in running if r.preemptions < self.max_preemptions and urgency(r) < bar]
        return min(candidates, key=lambda r: (urgency(r), -r.seq), default=None)


def urgency(req: Request) -> tuple[int, float]:
    """(priority, -deadline): larger is more urgent; no deadline counts as infinitely late."""
    return req.priority, -req.deadline if req.deadline is not None else -math.inf


def _user_line_key(req: Request) -> tuple[bool, int]:
    return not req.paused, req.seq


def _interleave(lines: Iterable[Sequence[Request]]) -> Iterator[Request]:
    """One from each line in turn, skipping lines that ran out: [a1 a2 a3], [b1] -> a1 b1 a2 a3."""
    gap = object()
    for round_ in itertools.zip_longest(*lines, fillvalue=gap):
        yield from (r for r in round_ if r is not gap)


POLICIES: Mapping[str, type[BasePolicy]] = types.MappingProxyType(
    {p.name: p for p in (FifoPolicy, RoundRobinPolicy, PriorityPolicy, PreemptivePolicy)})

_REQUIRED = ("add", "remove", "order", "victim")


def make_policy(spec: str) -> Policy:
    """A new policy from the ``scheduler`` setting: a built-in name or ``package.module:Class``.

    Built-in names ignore case and accept ``-`` for ``_`` (``round-robin``). A custom class is
    imported and called with no arguments, then checked for the policy methods. Any failure is a
    ``ConfigError`` that names the spec and what went wrong.
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if not text:
        raise ConfigError(f"scheduler: expected a policy name ({_known()}) or 'package.module:Class', "
                          f"got {spec!r}")
    if ":" not in text:
        name = text.lower().replace("-", "_")
        if name in POLICIES:
            return POLICIES[name]()
        match = difflib.get_close_matches(name, sorted(POLICIES), n=1, cutoff=0.6)
        hint = (f" (did you mean {match[0]!r}?)" if match else
                " (a custom policy is written 'package.module:Class')" if "." in text else "")
        raise ConfigError(f"scheduler: unknown policy {text!r}{hint}; known: {_known()}, "
                          f"or 'package.module:Class'")
    return _load(text)


def _load(path: str) -> Policy:
    return load_class_instance(path, setting="scheduler", kind="policy", methods=_REQUIRED,
                               doc="a policy has a 'name' string and add, remove, order and victim methods; "
                                   "see docs/scheduling.md")


def transfer(old: Policy, new: Policy, now: float) -> None:
    """Move every queued request from ``old`` to ``new``, in ``old``'s order (switching at run time).

    Requests leave ``old`` as not dispatched, so ``old``'s rotation state is not advanced, and join
    ``new`` in the order they would have gone; ``new`` decides from there.
    """
    for req in list(old.order(now)):
        old.remove(req, False)
        new.add(req)


def _known() -> str:
    return ", ".join(POLICIES)
