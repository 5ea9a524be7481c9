"""The scheduler task with real policies and recording fake effects: slots, order, bounds, deadlines,
preemption, run-time policy switches."""

from __future__ import annotations

import asyncio

import pytest

from mullama.core import errors
from mullama.serving.policies import Request, make_policy
from mullama.serving.scheduler import Scheduler


class Effects:
    def __init__(self, capacity: int = 1) -> None:
        self.cap = capacity
        self.events: list[tuple[str, dict]] = []

    def capacity(self, model: str) -> int:
        return self.cap

    def emit(self, kind: str, **fields) -> None:
        self.events.append((kind, fields))

    def kinds(self, kind: str) -> list[dict]:
        return [f for k, f in self.events if k == kind]


def req(rid: str, model: str = "m", user: str = "u", priority: int = 0, deadline: float | None = None) -> Request:
    return Request(id=rid, model=model, user=user, priority=priority, deadline=deadline)


async def make(policy: str = "fifo", capacity: int = 1, **kw) -> tuple[Scheduler, Effects]:
    effects = Effects(capacity)
    sched = Scheduler(make_policy(policy), effects, **kw)
    sched.start()
    return sched, effects


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_dispatches_up_to_capacity_then_queues_in_order():
    sched, effects = await make("fifo", capacity=2)
    tasks = [asyncio.ensure_future(sched.submit(req(f"r{i}"))) for i in range(4)]
    await settle()
    assert [t.done() for t in tasks] == [True, True, False, False]
    assert [row["id"] for row in sched.snapshot()["queue"]] == ["r2", "r3"]
    assert [row["position"] for row in sched.snapshot()["queue"]] == [0, 1]
    sched.finish(tasks[0].result())
    await settle()
    assert tasks[2].done() and not tasks[3].done()
    assert sched.running() == {"m": 2} and sched.waiting() == {"m": 1}
    for t in tasks[1:3]:
        sched.finish(t.result())
    sched.finish(await tasks[3])
    await settle()
    assert sched.running() == {} and sched.waiting() == {}
    assert [k for k, _ in effects.events].count("dispatched") == 4
    assert tasks[3].result().queue_ms > 0
    await sched.stop()


async def test_models_have_their_own_slots():
    sched, _ = await make("fifo", capacity=1)
    a = asyncio.ensure_future(sched.submit(req("a1", model="a")))
    a2 = asyncio.ensure_future(sched.submit(req("a2", model="a")))
    b = asyncio.ensure_future(sched.submit(req("b1", model="b")))
    await settle()
    assert a.done() and b.done() and not a2.done()
    a2.cancel()
    await settle()
    await sched.stop()


async def test_priority_policy_orders_the_queue():
    sched, _ = await make("priority", capacity=1)
    first = await sched.submit(req("busy"))
    waiting = {p: asyncio.ensure_future(sched.submit(req(f"p{p}", priority=p))) for p in (0, 5, 1)}
    await settle()
    assert [row["id"] for row in sched.snapshot()["queue"]] == ["p5", "p1", "p0"]
    sched.finish(first)
    await settle()
    assert waiting[5].done() and not waiting[1].done()
    for p in (5, 1, 0):
        sched.finish(await waiting[p])
    await sched.stop()


async def test_queue_bounds_give_queue_full_with_retry_after():
    sched, _ = await make("fifo", capacity=1, max_queue=3, max_queue_per_model=2)
    running = await sched.submit(req("r0"))
    q = [asyncio.ensure_future(sched.submit(req(f"r{i}"))) for i in (1, 2)]
    await settle()
    with pytest.raises(errors.QueueFull) as info:
        await sched.submit(req("r3"))
    assert info.value.status == 429 and 1 <= info.value.retry_after <= 60
    assert "model m" in str(info.value)
    other = asyncio.ensure_future(sched.submit(req("o1", model="other")))
    await settle()
    other_queued = asyncio.ensure_future(sched.submit(req("o2", model="other")))
    await settle()
    with pytest.raises(errors.QueueFull, match="server"):
        await sched.submit(req("t1", model="third"))
    assert sched.counters["rejected"] == 2
    for t in (*q, other_queued):
        t.cancel()
    sched.finish(running)
    sched.finish(await other)
    await sched.stop()


async def test_a_cancelled_waiter_leaves_the_queue():
    sched, effects = await make("fifo", capacity=1)
    running = await sched.submit(req("r0"))
    waiter = asyncio.ensure_future(sched.submit(req("r1")))
    await settle()
    waiter.cancel()
    await settle()
    assert sched.snapshot()["queue"] == []
    sched.finish(running)
    nxt = await asyncio.wait_for(sched.submit(req("r2")), 1)
    assert nxt.request.id == "r2"
    sched.finish(nxt)
    await sched.stop()


async def test_a_deadline_that_passes_in_the_queue_fails_early():
    import time

    sched, effects = await make("priority", capacity=1)
    running = await sched.submit(req("r0"))
    late = asyncio.ensure_future(sched.submit(req("late", deadline=time.monotonic() + 0.05)))
    with pytest.raises(errors.DeadlineExceeded, match="missed its deadline"):
        await asyncio.wait_for(late, 2)
    assert effects.kinds("deadline_expired")[0]["id"] == "late"
    assert sched.counters["deadline_expired"] == 1
    sched.finish(running)
    await sched.stop()


async def test_preemptive_policy_pauses_the_least_urgent_and_resumes_it_after():
    sched, effects = await make("preemptive", capacity=1)
    calls: list[tuple[str, str]] = []
    low = await sched.submit(req("low", priority=0))

    async def control(op: str, rid: str = "low") -> bool:
        calls.append((op, rid))
        return True

    low.control = control
    urgent = await asyncio.wait_for(sched.submit(req("urgent", priority=10)), 1)
    await settle()
    assert calls == [("pause", "low")]
    assert low.state == "paused" and low.request.preemptions == 1
    assert effects.kinds("preempted")[0] == {"id": "low", "model": "m", "by": "urgent", "priority": 0,
                                             "by_priority": 10}
    sched.finish(urgent)
    await settle()
    assert calls == [("pause", "low"), ("resume", "low")]
    assert low.state == "running" and effects.kinds("resumed")
    assert sched.snapshot()["counters"]["preemptions"] == 1
    sched.finish(low)
    await settle()
    assert sched.running() == {}
    await sched.stop()


async def test_non_preemptive_policies_never_pause():
    sched, _ = await make("priority", capacity=1)
    low = await sched.submit(req("low"))
    low.control = lambda op: pytest.fail("paused by a non-preemptive policy")
    urgent = asyncio.ensure_future(sched.submit(req("urgent", priority=10)))
    await settle()
    assert not urgent.done()
    sched.finish(low)
    sched.finish(await urgent)
    await sched.stop()


async def test_switching_policy_at_run_time_carries_the_queue_over():
    sched, effects = await make("fifo", capacity=1)
    running = await sched.submit(req("r0"))
    waiting = [asyncio.ensure_future(sched.submit(req(f"p{p}", priority=p))) for p in (1, 3, 2)]
    await settle()
    assert [r["id"] for r in sched.snapshot()["queue"]] == ["p1", "p3", "p2"]
    sched.set_policy(make_policy("priority"))
    await settle()
    snap = sched.snapshot()
    assert snap["policy"] == "priority" and [r["id"] for r in snap["queue"]] == ["p3", "p2", "p1"]
    assert effects.kinds("scheduler_changed")[0]["carried_over"] == 3
    sched.finish(running)
    for next_done in asyncio.as_completed(waiting):
        sched.finish(await next_done)
    await sched.stop()


async def test_round_robin_lets_a_light_user_past_a_heavy_one():
    sched, _ = await make("round_robin", capacity=1)
    running = await sched.submit(req("h0", user="heavy"))
    heavy = [asyncio.ensure_future(sched.submit(req(f"h{i}", user="heavy"))) for i in range(1, 20)]
    await settle()
    light = asyncio.ensure_future(sched.submit(req("l1", user="light")))
    await settle()
    assert sched.position("l1") <= 1
    for t in heavy:
        t.cancel()
    light.cancel()
    sched.finish(running)
    await sched.stop()


async def test_stop_fails_the_queued_requests():
    sched, _ = await make("fifo", capacity=1)
    await sched.submit(req("r0"))
    waiter = asyncio.ensure_future(sched.submit(req("r1")))
    await settle()
    await sched.stop()
    with pytest.raises(errors.ShuttingDown):
        await waiter


async def test_a_burst_cannot_queue_past_the_bound_before_the_task_runs():
    """200 submits in one tick against a bound of 128 (issue 16): submits the scheduler task has not taken
    yet count against the bounds, so exactly the bound gets in and the rest get 429 at once."""
    sched, _ = await make("fifo", capacity=1, max_queue=512, max_queue_per_model=128)
    running = await sched.submit(req("r0"))
    burst = [asyncio.ensure_future(sched.submit(req(f"b{i}"))) for i in range(200)]
    await settle()
    refused = [t for t in burst if t.done() and isinstance(t.exception(), errors.QueueFull)]
    assert len(refused) == 72 and sum(sched.waiting().values()) == 128
    for t in burst:
        t.cancel()
    sched.finish(running)
    await sched.stop()
    sched, _ = await make("fifo", capacity=1, max_queue=100, max_queue_per_model=1000)  # the server-wide bound
    running = await sched.submit(req("r0"))
    burst = [asyncio.ensure_future(sched.submit(req(f"x{i}", model=f"m{i % 3}"))) for i in range(300)]
    await settle()
    # the first of each model starts at once (a free slot, nothing waiting: never queued); 100 queue
    assert {m: n for m, n in sched.running().items() if m != "m"} == {"m0": 1, "m1": 1, "m2": 1}
    assert sum(sched.waiting().values()) == 100
    assert sum(1 for t in burst if t.done() and isinstance(t.exception(), errors.QueueFull)) == 197
    for t in burst:
        t.cancel()
    sched.finish(running)
    await sched.stop()
