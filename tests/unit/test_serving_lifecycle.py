"""The model lifecycle with a recording fake runner: transitions, eviction, keep-alive, crashes, stalls.

No processes: ``FakeRunner`` answers /load and /health the way a runner does,
with knobs for slow, failing, stalling and crashing loads.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lifecycle_fakes import GiB, MiB, entry, make, states

from mullama.core import errors
from mullama.hardware.devices import Devices, Gpu, Host
from mullama.models.entry import ModelEntry
from mullama.serving import lifecycle as lc
from mullama.serving import loading
from mullama.serving.lifecycle import State

A, B = entry("alpha:q4_1"), entry("beta:q8_0")


async def test_load_goes_through_every_state_with_timestamps():
    life, launcher, events = make(commit_s=0.6)
    lease = await life.acquire(A)
    assert states(life, A.name) == ["discovered", "loading", "warming", "ready"]
    hist = life.runtimes[A.name].history
    assert all(b["mono"] >= a["mono"] for a, b in zip(hist, list(hist)[1:]))
    assert [op for op, _ in launcher.started[0].ops] == ["fit", "alloc", "commit"]
    assert lease.handle is launcher.started[0] and lease.load_wait_ms > 0
    assert [k for k, _ in events] == ["model_loading", "model_warming", "model_ready"]
    rt = life.runtimes[A.name]
    assert rt.memory == 100 * MiB and rt.placement.processor() == "100% CPU"
    assert rt.loads[-1]["ok"] and rt.loads[-1]["load_ms"] > 0
    life.release(lease)
    await life.shutdown()
    assert states(life, A.name)[-3:] == ["draining", "unloading", "unloaded"]


async def test_concurrent_requests_for_a_loading_model_share_one_load():
    life, launcher, _ = make({"n_parallel": 8}, alloc_s=0.2)
    leases = await asyncio.gather(*(life.acquire(A) for _ in range(6)))
    assert len(launcher.started) == 1
    assert {lease.handle for lease in leases} == {launcher.started[0]}
    assert life.runtimes[A.name].in_flight == 6
    for lease in leases:
        life.release(lease)
    assert life.runtimes[A.name].in_flight == 0
    await life.shutdown()


async def test_memory_budget_for_one_model_swaps_idle_models():
    life, launcher, events = make({"memory_budget": 150 * MiB})
    life.release(await life.acquire(A))
    life.release(await life.acquire(B))
    assert life.runtimes[A.name].state is State.UNLOADED
    assert life.runtimes[B.name].state is State.READY
    life.release(await life.acquire(A))
    assert life.runtimes[B.name].state is State.UNLOADED
    assert len(launcher.of(A.name)) == 2 and launcher.of(A.name)[0].stopping
    assert life.counters["evictions"] == 2
    assert [f["model"] for k, f in events if k == "model_evicted"] == [A.name, B.name]
    await life.shutdown()


async def test_eviction_waits_for_in_flight_requests():
    life, _, _ = make({"memory_budget": 150 * MiB, "drain_timeout": "5s"})
    lease_a = await life.acquire(A)
    load_b = asyncio.ensure_future(life.acquire(B))
    await asyncio.sleep(0.1)
    assert life.runtimes[A.name].state is State.DRAINING and not load_b.done()
    assert lease_a.handle.alive  # still serving its request
    life.release(lease_a)
    lease_b = await asyncio.wait_for(load_b, 2)
    assert life.runtimes[A.name].state is State.UNLOADED and not lease_a.handle.alive
    life.release(lease_b)
    await life.shutdown()


async def test_drain_timeout_cancels_the_remaining_requests():
    life, _, _ = make({"memory_budget": 150 * MiB, "drain_timeout": "0.2s"})
    stuck = await life.acquire(A)
    lease_b = await asyncio.wait_for(life.acquire(B), 2)
    assert stuck.handle.exited.result() == -9  # killed after the drain timeout
    life.release(stuck)
    life.release(lease_b)
    await life.shutdown()


async def test_pinned_models_are_never_evicted():
    life, _, _ = make({"memory_budget": 150 * MiB, "models": {A.name: {"pinned": True}}})
    life.release(await life.acquire(A))
    with pytest.raises(errors.NoFit, match="budget"):
        await life.acquire(B)
    assert life.runtimes[A.name].state is State.READY
    assert life.runtimes[B.name].state is State.FAILED
    await life.shutdown()


async def test_a_model_larger_than_the_budget_is_refused_with_sizes():
    life, _, _ = make({"memory_budget": 50 * MiB})
    with pytest.raises(errors.NoFit, match=r"more than the whole memory budget"):
        await life.acquire(A)
    await life.shutdown()


async def test_max_loaded_models_evicts_least_recently_used():
    life, _, _ = make({"max_loaded_models": 2})
    C = entry("gamma:f16")
    for e in (A, B):
        life.release(await life.acquire(e))
    life.release(await life.acquire(A))  # A is now the most recent
    life.release(await life.acquire(C))
    assert life.runtimes[B.name].state is State.UNLOADED
    assert life.runtimes[A.name].serving and life.runtimes[C.name].serving
    await life.shutdown()


@pytest.mark.parametrize("keep_alive, unloaded", [(0, True), (0.1, True), (-1, False), (60, False)])
async def test_keep_alive(keep_alive, unloaded):
    life, _, _ = make()
    lease = await life.acquire(A, keep_alive=keep_alive)
    assert life.runtimes[A.name].expires_at is None  # never expires while in use
    life.release(lease)
    await asyncio.sleep(0.4)
    assert (life.runtimes[A.name].state is State.UNLOADED) is unloaded
    if keep_alive == -1:
        assert life.runtimes[A.name].expires_at is None
    await life.shutdown()


async def test_a_new_request_cancels_the_keep_alive_timer():
    life, _, _ = make()
    life.release(await life.acquire(A, keep_alive=0.2))
    lease = await life.acquire(A, keep_alive=0.2)
    await asyncio.sleep(0.35)
    assert life.runtimes[A.name].serving  # the lease holds it
    life.release(lease)
    await life.shutdown()


async def test_failed_alloc_backs_off_gpu_layers_and_retries():
    gpus = Devices(gpus=(Gpu(index=0, name="fake", uuid="u0", total=8 * GiB, free=8 * GiB),),
                   host=Host(ram_total=64 * GiB, ram_available=64 * GiB, swap_total=0, swap_free=0))
    life, launcher, _ = make(devices=gpus, oom_allocs=2)
    life.release(await life.acquire(entry("alpha:q4_1", n_layer=20)))
    allocs = [ngl for op, ngl in launcher.started[0].ops if op == "alloc"]
    assert allocs[0] == 21 and allocs == sorted(allocs, reverse=True) and len(allocs) == 3
    assert ("close", 0) in launcher.started[0].ops
    await life.shutdown()


async def test_failed_alloc_on_cpu_only_gives_up_with_no_fit():
    life, launcher, _ = make(oom_allocs=1)
    with pytest.raises(errors.NoFit, match="no smaller plan"):
        await life.acquire(A)
    assert life.runtimes[A.name].state is State.FAILED
    assert not launcher.started[0].alive  # the runner was stopped
    await life.shutdown()


async def test_a_runner_that_dies_while_loading_is_told_without_its_address_or_log(monkeypatch):
    """The client hears that the runner died and its exit code; its port and its raw log lines stay in the
    server's log (issue 16: they leaked into the client's error message)."""
    life, launcher, _ = make({"load_timeout": "60s"}, stall=True)
    waiter = asyncio.ensure_future(life.acquire(A))
    while not launcher.started or launcher.started[0].progress == 0:
        await asyncio.sleep(0.01)
    launcher.started[0].crash(-9)
    with pytest.raises(errors.LoadFailed) as info:
        await asyncio.wait_for(waiter, 5)
    message = str(info.value)
    assert "died while loading (exit code -9)" in message
    assert "last words" not in message and str(launcher.started[0].port) not in message
    await life.shutdown()


@pytest.mark.parametrize("op", ["fit", "alloc", "commit"])
async def test_load_settings_the_runner_refuses_are_a_failed_load_not_a_bad_request(op):
    """A 400 from the runner's /load is the server's fault (its settings, or the wire): a 503 load_failed that
    names the model and the runner's reason, never the client's 400 "invalid request body"."""
    life, launcher, _ = make({}, refuse=op)
    with pytest.raises(errors.LoadFailed) as info:
        await asyncio.wait_for(life.acquire(A), 5)
    assert info.value.status == 503 and A.name in str(info.value) and "cache_ram" in str(info.value)
    assert life.runtimes[A.name].state is State.FAILED and not launcher.started[0].alive
    await life.shutdown()


async def test_a_stalled_load_is_killed_and_reported(monkeypatch):
    monkeypatch.setattr(loading, "HEALTH_POLL_S", 0.02)
    life, launcher, events = make({"load_timeout": "0.2s"}, stall=True)
    waiters = [asyncio.ensure_future(life.acquire(A)) for _ in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
    assert all(isinstance(r, errors.LoadStalled) for r in results), results
    assert "no progress for 0.2 s" in str(results[0])
    assert launcher.started[0].stalled and not launcher.started[0].alive
    assert life.runtimes[A.name].state is State.FAILED
    assert ("model_failed", {"model": A.name, "error": str(results[0])}) in events
    await life.shutdown()


async def test_a_crashed_runner_is_recorded_and_restarted_on_the_next_request():
    life, launcher, events = make()
    lease = await life.acquire(A)
    launcher.started[0].crash(-11)
    await asyncio.sleep(0.01)
    rt = life.runtimes[A.name]
    assert rt.state is State.FAILED and rt.crashes == 1 and rt.handle is None
    assert rt.loads[-1]["crash"] and rt.loads[-1]["code"] == -11 and rt.loads[-1]["in_flight"] == 1
    assert ("runner_crashed", {"model": A.name, "code": -11, "in_flight": 1}) in events
    life.release(lease)
    life.release(await life.acquire(A))
    assert len(launcher.started) == 2 and rt.serving
    await life.shutdown()


@pytest.mark.parametrize("recent, delay", [(1, 0.0), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)])
def test_crash_backoff(recent, delay):
    assert lc.crash_backoff(recent) == delay


async def test_unknown_header_is_unavailable_without_spawning():
    life, launcher, _ = make()
    broken = ModelEntry(name="bad:x", family="bad", variant="x", path=Path("/m/bad.gguf"), parts=(), size_bytes=3,
                        modified=0, id="b", header=None, error="not a GGUF file", source="models_dir")
    with pytest.raises(errors.ModelUnavailable, match="not a GGUF"):
        await life.acquire(broken)
    assert launcher.started == []
    await life.shutdown()


async def test_shutdown_stops_runners_and_refuses_new_work():
    life, launcher, _ = make()
    life.release(await life.acquire(A))
    await life.shutdown()
    assert not launcher.started[0].alive
    with pytest.raises(errors.ShuttingDown):
        await life.acquire(A)


async def test_cancelling_a_waiter_does_not_cancel_the_load():
    life, launcher, _ = make(alloc_s=0.2)
    waiter = asyncio.ensure_future(life.acquire(A))
    await asyncio.sleep(0.05)
    waiter.cancel()
    await asyncio.sleep(0.3)
    assert life.runtimes[A.name].serving
    await life.shutdown()


async def test_a_model_whose_only_waiter_gave_up_still_expires():
    life, _, _ = make(alloc_s=0.2)
    waiter = asyncio.ensure_future(life.acquire(A, keep_alive=0.1))
    await asyncio.sleep(0.05)
    waiter.cancel()
    await asyncio.sleep(0.6)
    assert life.runtimes[A.name].state is State.UNLOADED
    await life.shutdown()


async def test_keep_alive_zero_does_not_unload_before_the_waiting_request_runs():
    life, launcher, _ = make(alloc_s=0.05)
    leases = await asyncio.gather(*(life.acquire(A, keep_alive=0) for _ in range(3)))
    assert len(launcher.started) == 1 and all(lease.handle.alive for lease in leases)
    for lease in leases:
        life.release(lease)
    await asyncio.sleep(0.05)
    assert life.runtimes[A.name].state is State.UNLOADED
    await life.shutdown()


async def test_set_keep_alive_restarts_the_timer_of_an_idle_model():
    life, _, _ = make()
    life.release(await life.acquire(A))
    assert life.runtimes[A.name].expires_at is not None
    life.set_keep_alive(life.runtimes[A.name], 0)
    await asyncio.sleep(0.05)
    assert life.runtimes[A.name].state is State.UNLOADED
    await life.shutdown()


async def test_a_request_for_a_draining_model_waits_for_the_unload_then_reloads():
    life, launcher, _ = make({"drain_timeout": "5s"})
    busy = await life.acquire(A)
    unloading = asyncio.ensure_future(life.unload(life.runtimes[A.name], reason="test"))
    await asyncio.sleep(0.05)
    assert life.runtimes[A.name].state is State.DRAINING
    late = asyncio.ensure_future(life.acquire(A))
    await asyncio.sleep(0.1)
    assert not late.done() and len(launcher.started) == 1  # no second runner while the first drains
    assert busy.handle.alive
    life.release(busy)
    await unloading
    lease = await asyncio.wait_for(late, 2)
    assert len(launcher.started) == 2 and lease.handle is launcher.started[1]
    assert not launcher.started[0].alive
    life.release(lease)
    await life.shutdown()


async def test_two_unloads_at_once_stop_the_runner_once():
    life, launcher, _ = make()
    life.release(await life.acquire(A))
    rt = life.runtimes[A.name]
    await asyncio.gather(life.unload(rt, reason="one"), life.unload(rt, reason="two"))
    assert rt.state is State.UNLOADED
    assert [h["state"] for h in rt.history].count("unloaded") == 1
    await life.shutdown()
