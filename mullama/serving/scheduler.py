"""The scheduler: one place owns the queue and the in-flight table.

Handlers ``submit`` a request and wait until it is dispatched; they
``finish`` it when done. Every change is a command, applied on the event loop
at its next turn together with the others that came in the same turn (so a
burst of arrivals is ordered by the policy, not by who came first), then one
pass dispatches; a timer does the same for the nearest queued deadline. A
submit that finds nothing waiting has its pass at once (it starts if its model
has a free slot, as any pass would start it). The order comes from a
``Policy`` (``policies.py``): on every pass the scheduler walks
``policy.order(now)`` and dispatches each request whose model has a free slot
(``n_parallel``); with a preemptive policy, a request whose model is full may
pause the least urgent running one (the runner's pause/resume: the paused
request later resumes with exactly the output it would have had).

The scheduler acts on the rest of the system only through ``Effects``:
slot capacity per model, pause/resume of a running request, and events.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from mullama.core import errors
from mullama.serving.dispatch import decide
from mullama.serving.policies import Policy, Request

log = structlog.get_logger("mullama.scheduler")

Control = Callable[[str], Awaitable[bool]]   # op ("pause" / "resume") -> ok


class Effects(Protocol):
    def capacity(self, model: str) -> int: ...
    def emit(self, kind: str, **fields: Any) -> None: ...


@dataclass(eq=False)
class Ticket:
    """One request's passage through the scheduler."""

    request: Request
    submitted: float = field(default_factory=time.perf_counter)
    dispatched_at: float = 0.0
    state: str = "queued"                  # queued | running | paused | done
    control: Control | None = None         # set by the handler once the runner runs the request
    future: asyncio.Future | None = None

    @property
    def queue_ms(self) -> float:
        return max(0.0, (self.dispatched_at or time.perf_counter()) - self.submitted) * 1000


class Scheduler:
    def __init__(self, policy: Policy, effects: Effects, *, max_queue: int = 512,
                 max_queue_per_model: int = 128) -> None:
        self.policy = policy
        self._effects = effects
        self.max_queue, self.max_queue_per_model = max_queue, max_queue_per_model
        self._commands: list[tuple[str, Any]] = []
        self._queued: dict[str, Ticket] = {}           # request id -> ticket (queued or paused)
        self._pending: collections.Counter = collections.Counter()  # model -> submits not yet applied
        self._running: dict[str, dict[str, Ticket]] = collections.defaultdict(dict)  # model -> id -> ticket
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # set while started
        self._wake: asyncio.Handle | None = None      # the next turn's pass, when commands wait
        self._timer: asyncio.TimerHandle | None = None  # the pass at the nearest queued deadline
        self._service_s = 1.0                          # EWMA of a request's running time, for Retry-After
        self.counters: collections.Counter = collections.Counter()

    # ------------------------------------------------------------------ public API (any coroutine)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._post(("tick", None))  # commands sent before the start

    async def stop(self) -> None:
        self._loop = None
        for handle in (self._wake, self._timer):
            if handle is not None:
                handle.cancel()
        self._wake = self._timer = None
        for ticket in list(self._queued.values()):
            if ticket.future is not None and not ticket.future.done():
                # a waiter whose client already left never reads it: mark it read, no "never retrieved" noise
                ticket.future.add_done_callback(lambda f: f.cancelled() or f.exception())
                ticket.future.set_exception(errors.ShuttingDown("the server is shutting down"))

    async def submit(self, request: Request) -> Ticket:
        """Queue ``request`` and wait for its dispatch. QueueFull (429) at once when the queue is at its bound."""
        self._seq += 1
        request.seq = self._seq
        request.arrived = time.monotonic()
        ticket = Ticket(request=request, future=asyncio.get_running_loop().create_future())
        self._check_bounds(request)
        self._pending[request.model] += 1  # counted against the bounds until the scheduler queues it
        if self._loop is not None and not self._commands and not self._queued:
            self._turn([("submit", ticket)])  # nothing else waits: the pass now, not a turn of the loop later
        else:
            self._post(("submit", ticket))
        try:
            await asyncio.shield(ticket.future)
        except asyncio.CancelledError:
            self.finish(ticket)  # the client went away while waiting
            raise
        return ticket

    def finish(self, ticket: Ticket) -> None:
        """The request is over (done, failed or cancelled): its slot or queue place is free."""
        if ticket.state != "done":
            self._post(("finish", ticket))

    def set_policy(self, policy: Policy) -> None:
        self._post(("policy", policy))

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        queue = []
        for position, req in enumerate(self.policy.order(now)):
            ticket = self._queued.get(req.id)
            queue.append({"id": req.id, "model": req.model, "user": req.user, "priority": req.priority,
                          "deadline_in_ms": _ms(req.deadline - now) if req.deadline is not None else None,
                          "age_ms": _ms(now - req.arrived), "position": position,
                          "state": ticket.state if ticket else "queued", "preemptions": req.preemptions,
                          "adapters": req.adapters})
        running = {model: [{"id": t.request.id, "user": t.request.user, "priority": t.request.priority,
                            "age_ms": _ms(now - t.request.arrived), "queue_ms": round(t.queue_ms, 3),
                            "preemptions": t.request.preemptions}
                           for t in tickets.values()]
                   for model, tickets in self._running.items() if tickets}
        return {"policy": self.policy.name, "queue": queue, "running": running,
                "waiting": self.waiting(), "counters": dict(self.counters)}

    def waiting(self) -> dict[str, int]:
        out: collections.Counter = collections.Counter(t.request.model for t in self._queued.values())
        return dict(out)

    def running(self) -> dict[str, int]:
        return {model: len(t) for model, t in self._running.items() if t}

    def position(self, request_id: str) -> int | None:
        for i, req in enumerate(self.policy.order(time.monotonic())):
            if req.id == request_id:
                return i
        return None

    # ------------------------------------------------------------------ the passes

    def _post(self, cmd: tuple[str, Any]) -> None:
        self._commands.append(cmd)
        if self._loop is not None and self._wake is None:
            self._wake = self._loop.call_soon(self._turn)

    def _turn(self, commands: list[tuple[str, Any]] | None = None) -> None:
        """The commands of the last turn (or ``commands``), then one dispatching pass; the timer for the
        nearest deadline."""
        if commands is None:
            self._wake = None
            commands, self._commands = self._commands, []
        for cmd in commands:
            try:
                self._apply(*cmd)
            except Exception:  # a policy bug must not stop scheduling
                log.exception("scheduler_error", command=cmd[0])
        try:
            self._pump()
        except Exception:
            log.exception("scheduler_error", command="pump")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self._next_deadline()
        if timeout is not None and self._loop is not None:
            self._timer = self._loop.call_later(timeout, self._post, ("tick", None))

    def _apply(self, kind: str, arg: Any) -> None:
        if kind == "submit":
            ticket: Ticket = arg
            self._pending[ticket.request.model] -= 1
            if self._pending[ticket.request.model] <= 0:
                del self._pending[ticket.request.model]
            if ticket.future.done():  # cancelled before we saw it
                ticket.state = "done"
                return
            self._queued[ticket.request.id] = ticket
            self.policy.add(ticket.request)
            self.counters["submitted"] += 1
            self._effects.emit("request_queued", id=ticket.request.id, model=ticket.request.model,
                               priority=ticket.request.priority, user=ticket.request.user)
        elif kind == "finish":
            self._finish(arg)
        elif kind == "policy":
            old, self.policy = self.policy, arg
            for req in list(old.order(time.monotonic())):
                self.policy.add(req)
            self.counters["policy_changes"] += 1
            self._effects.emit("scheduler_changed", policy=self.policy.name, previous=old.name,
                               carried_over=len(self._queued))
            log.info("scheduler_changed", policy=self.policy.name, previous=old.name, queued=len(self._queued))

    def _finish(self, ticket: Ticket) -> None:
        if ticket.state == "done":
            return
        req = ticket.request
        if ticket.state in ("queued", "paused") and req.id in self._queued:
            del self._queued[req.id]
            self.policy.remove(req, False)
            if ticket.state == "queued":
                self.counters["cancelled_queued"] += 1
        elif ticket.state == "running":
            self._running[req.model].pop(req.id, None)
            elapsed = time.perf_counter() - ticket.dispatched_at
            self._service_s = 0.9 * self._service_s + 0.1 * elapsed
        ticket.state = "done"
        self.counters["finished"] += 1
        if ticket.future is not None and not ticket.future.done():
            ticket.future.cancel()

    def _pump(self) -> None:
        """One pass of ``dispatch.decide`` (the pure decision the simulator shares), applied in order."""
        now = time.monotonic()

        def queued(req: Request) -> str | None:
            ticket = self._queued.get(req.id)
            return ticket.state if ticket is not None else None

        def preemptible(req: Request) -> bool:
            ticket = self._running[req.model].get(req.id)
            return ticket is not None and ticket.control is not None

        running = {model: [t.request for t in tickets.values()] for model, tickets in self._running.items()}
        for act in decide(self.policy, now, queued=queued, running=running, capacity=self._effects.capacity,
                          preemptible=preemptible):
            if act.kind == "expire":
                self._expire(self._queued[act.request.id], now)
            elif act.kind == "preempt":
                self._preempt(self._running[act.request.model][act.request.id], for_request=act.for_request)
            else:
                self._dispatch(self._queued[act.request.id])

    def _dispatch(self, ticket: Ticket) -> None:
        req = ticket.request
        del self._queued[req.id]
        self.policy.remove(req, True)
        self._running[req.model][req.id] = ticket
        if ticket.state == "paused":
            ticket.state = "running"
            req.paused = False
            self.counters["resumed"] += 1
            self._control(ticket, "resume")
            self._effects.emit("resumed", id=req.id, model=req.model, preemptions=req.preemptions)
            return
        ticket.state = "running"
        ticket.dispatched_at = time.perf_counter()
        self.counters["dispatched"] += 1
        self._effects.emit("dispatched", id=req.id, model=req.model, queue_ms=round(ticket.queue_ms, 3))
        ticket.future.set_result(None)

    def _preempt(self, victim: Ticket, *, for_request: Request) -> None:
        req = victim.request
        del self._running[req.model][req.id]
        victim.state = "paused"
        req.paused = True
        req.preemptions += 1
        self._queued[req.id] = victim
        self.policy.add(req)
        self.counters["preemptions"] += 1
        self._control(victim, "pause")
        self._effects.emit("preempted", id=req.id, model=req.model, by=for_request.id,
                           priority=req.priority, by_priority=for_request.priority)

    def _control(self, ticket: Ticket, op: str) -> None:
        async def call() -> None:
            try:
                ok = await ticket.control(op)
            except errors.MullamaError as exc:
                ok = False
                log.warning("control_failed", op=op, id=ticket.request.id, error=str(exc))
            if not ok:
                self.counters[f"{op}_failed"] += 1

        asyncio.ensure_future(call())

    def _expire(self, ticket: Ticket, now: float) -> None:
        req = ticket.request
        del self._queued[req.id]
        self.policy.remove(req, False)
        ticket.state = "done"
        self.counters["deadline_expired"] += 1
        late = _ms(now - req.deadline)
        ticket.future.set_exception(errors.DeadlineExceeded(
            f"request {req.id} missed its deadline by {late:.0f} ms while queued (waited {_ms(now - req.arrived):.0f} "
            "ms); it was not started"))
        self._effects.emit("deadline_expired", id=req.id, model=req.model, late_ms=late)

    def _next_deadline(self) -> float | None:
        deadlines = [t.request.deadline for t in self._queued.values()
                     if t.request.deadline is not None and t.state == "queued"]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic()) + 0.001

    def _check_bounds(self, request: Request) -> None:
        total = len(self._queued) + sum(self._pending.values())
        per_model = sum(1 for t in self._queued.values() if t.request.model == request.model) \
            + self._pending[request.model]
        if total >= self.max_queue or per_model >= self.max_queue_per_model:
            self.counters["rejected"] += 1
            scope = "the server" if total >= self.max_queue else f"model {request.model}"
            exc = errors.QueueFull(f"the queue of {scope} is full ({self.max_queue if total >= self.max_queue else per_model}"
                                   " requests waiting); retry later")
            cap = max(1, self._effects.capacity(request.model))
            exc.retry_after = max(1, min(60, math.ceil(per_model / cap * self._service_s)))
            raise exc


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
