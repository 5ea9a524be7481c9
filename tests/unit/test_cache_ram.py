"""How the runners share host memory for parked prefix caches (hardware/cache_ram.py), and the supervisor
giving it out over fake runners (serving/cache_ram.py): a runner loads with its share, the others shrink
first when a new model needs the memory, the caches' memory counts as free so no model is evicted for it,
and the shares grow back when a runner leaves or crashes."""

from __future__ import annotations

import asyncio

import pytest
from lifecycle_fakes import GiB, MiB, entry, make

from mullama.hardware.cache_ram import pool, reserve, share
from mullama.hardware.devices import Devices, Host

A, B, C = entry("alpha:q4_1"), entry("beta:q8_0"), entry("gamma:q4_1")


def host(total: int, available: int) -> Host:
    return Host(ram_total=total, ram_available=available, swap_total=0, swap_free=0)


@pytest.mark.parametrize(("total", "wants", "expected"), [
    (30, {"a": 8, "b": 8}, {"a": 8, "b": 8}),                    # room for what each wants
    (12, {"a": 8, "b": 8}, {"a": 6, "b": 6}),                    # an equal share each
    (12, {"a": 2, "b": 8, "c": 8}, {"a": 2, "b": 5, "c": 5}),    # one wants less: the others split the rest
    (12, {"a": 0, "b": 8}, {"a": 0, "b": 8}),                    # cache_ram 0 wants none
    (0, {"a": 8}, {"a": 0}),
    (-5, {"a": 8}, {"a": 0}),
    (10, {}, {}),
    (10, {"a": 8, "b": 8, "c": 8}, {"a": 3, "b": 3, "c": 4}),    # never more than the pool in all
])
def test_share(total, wants, expected) -> None:
    got = share(total, wants)
    assert got == expected and sum(got.values()) <= max(0, total)


def test_the_reserve_is_a_tenth_of_the_ram_and_at_least_a_gib() -> None:
    assert reserve(64 * GiB) == 64 * GiB // 10 and reserve(4 * GiB) == GiB


@pytest.mark.parametrize(("kw", "expected"), [
    ({"host": host(20 * GiB, 16 * GiB), "held": 0, "models_host": 0}, 14 * GiB),
    ({"host": host(20 * GiB, 12 * GiB), "held": 4 * GiB, "models_host": 0}, 14 * GiB),   # what caches hold is theirs
    ({"host": host(20 * GiB, 16 * GiB), "held": 0, "models_host": 3 * GiB, "incoming": 3 * GiB}, 11 * GiB),
    # mapped weights look "available" to the kernel: the models' planned host bytes bound the pool too
    ({"host": host(20 * GiB, 19 * GiB), "held": 0, "models_host": 10 * GiB}, 8 * GiB),
    ({"host": host(20 * GiB, 16 * GiB), "held": 0, "models_host": 0, "budget_left": 5 * GiB}, 5 * GiB),
    ({"host": host(20 * GiB, GiB), "held": 0, "models_host": 0}, 0),                      # never negative
])
def test_pool(kw, expected) -> None:
    assert pool(**kw) == expected


# ---------------------------------------------------------------- the supervisor over fake runners


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_a_runner_loads_with_its_share_and_the_others_shrink_first() -> None:
    life, launcher, events = make(devices=Devices(gpus=(), host=host(20 * GiB, 19 * GiB)))
    life.release(await life.acquire(A))
    life.release(await life.acquire(B))
    (a,), (b,) = launcher.of(A.name), launcher.of(B.name)
    assert a.load_cache_ram == b.load_cache_ram == 8 * GiB and not a.cache_limits  # room for both
    life.release(await life.acquire(C))
    (c,) = launcher.of(C.name)
    share_each = a.cache_limits[-1]
    assert share_each == b.cache_limits[-1] == c.load_cache_ram < 8 * GiB
    assert 3 * share_each <= 18 * GiB - 3 * 100 * MiB
    assert life.runtimes[A.name].cache_ram == share_each
    assert ("cache_ram_allotted", {"model": A.name, "limit": share_each, "held": 0, "before": 8 * GiB}) in events

    await life.unload(life.runtimes[C.name])
    await _settle()
    assert a.cache_limits[-1] == b.cache_limits[-1] == 8 * GiB  # C's share comes back
    assert life.runtimes[C.name].cache_ram is None
    await life.shutdown()


async def test_parked_caches_give_way_to_a_model_rather_than_get_one_evicted() -> None:
    """A holds 4 GiB of parked caches and only 100 MiB is free: B's 92 MiB fits once A's caches shrink, so
    A shrinks instead of going. Before, the caches' memory looked taken and A was evicted for B."""
    life, launcher, _ = make(devices=Devices(gpus=(), host=host(16 * GiB, 100 * MiB)), held=4 * GiB)
    life.release(await life.acquire(A))
    (a,) = launcher.of(A.name)
    life.release(await life.acquire(B))
    assert life.counters["evictions"] == 0 and life.runtimes[A.name].state.value == "ready"
    limit = a.cache_limits[-1]
    assert a.held == limit < 4 * GiB  # the runner gave up the rest before B allocated
    assert launcher.of(B.name)[0].load_cache_ram == limit
    await life.shutdown()


async def test_the_memory_budget_bounds_the_caches_too() -> None:
    life, launcher, _ = make({"memory_budget": "1GiB"})
    life.release(await life.acquire(A))
    (a,) = launcher.of(A.name)
    assert a.load_cache_ram == GiB - life.runtimes[A.name].placement.total_bytes()  # what the model leaves
    await life.shutdown()


async def test_a_crashed_runner_s_share_goes_to_the_others() -> None:
    life, launcher, _ = make(devices=Devices(gpus=(), host=host(12 * GiB, 11 * GiB)))
    life.release(await life.acquire(A))
    life.release(await life.acquire(B))
    (a,), (b,) = launcher.of(A.name), launcher.of(B.name)
    assert a.cache_limits[-1] == b.load_cache_ram < 8 * GiB
    b.crash()
    await _settle()
    assert a.cache_limits[-1] == 8 * GiB
    await life.shutdown()


async def test_a_model_with_cache_ram_0_takes_no_share() -> None:
    life, launcher, _ = make({"models": {A.name: {"cache_ram": 0}}},
                             devices=Devices(gpus=(), host=host(12 * GiB, 11 * GiB)))
    life.release(await life.acquire(A))
    life.release(await life.acquire(B))
    (a,), (b,) = launcher.of(A.name), launcher.of(B.name)
    assert a.load_cache_ram == 0 and b.load_cache_ram == 8 * GiB
    await life.shutdown()


async def test_a_loading_runner_keeps_its_share_through_a_rebalance() -> None:
    """A rebalance while B allocates (another model left meanwhile) must count B's share, not hand it back."""
    life, launcher, _ = make(devices=Devices(gpus=(), host=host(12 * GiB, 11 * GiB)))
    launcher.per_model[B.name] = {"alloc_s": 0.3}
    life.release(await life.acquire(A))
    (a,) = launcher.of(A.name)
    loading = asyncio.create_task(life.acquire(B))
    await asyncio.sleep(0.1)  # B is in its alloc
    (b,) = launcher.of(B.name)
    assert b.ops[-1][0] == "alloc" and life.runtimes[B.name].state.value == "loading"
    shrunk = a.cache_limits[-1]
    await life.cache_ram.rebalance(life.loaded())
    assert a.cache_limits[-1] == shrunk < 8 * GiB
    life.release(await loading)
    assert b.load_cache_ram == shrunk
    await life.shutdown()


async def test_a_runner_that_keeps_its_caches_fails_the_load_that_counted_on_them() -> None:
    """B fits only once A's 4 GiB of parked caches go; A's runner does not answer the lower limit: B's load is a
    NoFit (it would allocate into memory still in use), and A serves on untouched."""
    from mullama.core import errors

    life, launcher, _ = make(devices=Devices(gpus=(), host=host(16 * GiB, 100 * MiB)), held=4 * GiB)
    launcher.per_model[A.name] = {"stuck_cache": True}
    life.release(await life.acquire(A))
    with pytest.raises(errors.NoFit, match=f"{A.name} still holds in parked prefix caches"):
        await life.acquire(B)
    assert life.runtimes[A.name].state.value == "ready" and life.counters["evictions"] == 0
    life.release(await life.acquire(A))
    await life.shutdown()


async def test_a_crashed_runner_holds_nothing_and_gives_nothing_back() -> None:
    life, launcher, _ = make(devices=Devices(gpus=(), host=host(12 * GiB, 11 * GiB)), held=GiB)
    life.release(await life.acquire(A))
    (a,) = launcher.of(A.name)
    a.crash()
    assert await life.cache_ram.held([life.runtimes[A.name]]) in ({}, {A.name: 0})
    await life.cache_ram.rebalance(life.loaded())
    await life.shutdown()


async def test_an_alloc_retried_with_more_on_the_host_is_given_its_share_again() -> None:
    """A GPU out of memory twice: each retry puts more layers on the host, so A's caches shrink again and B
    loads with the share of the last plan."""
    from mullama.hardware.devices import Gpu

    gpus = Devices(gpus=(Gpu(index=0, name="fake", uuid="u0", total=8 * GiB, free=8 * GiB),),
                   host=host(4 * GiB + 600 * MiB, 4 * GiB))
    life, launcher, _ = make(devices=gpus)
    life.release(await life.acquire(A))
    (a,) = launcher.of(A.name)
    launcher.per_model["delta:q4_1"] = {"oom_allocs": 2}
    big = entry("delta:q4_1", n_layer=20, layer=40 * MiB)
    life.release(await life.acquire(big))
    (d,) = launcher.of(big.name)
    allocs = [ngl for op, ngl in d.ops if op == "alloc"]
    assert len(allocs) == 3 and allocs == sorted(allocs, reverse=True)
    assert len(a.cache_limits) >= 2 and a.cache_limits[-1] < a.cache_limits[0]  # shrunk again on a retry
    assert d.load_cache_ram == a.cache_limits[-1] == life.runtimes[big.name].cache_ram
    await life.shutdown()


@pytest.mark.parametrize(("current", "new", "held", "expected"), [
    (None, 0, 0, True),
    (8 * GiB, 8 * GiB, 0, False),
    (8 * GiB, 8 * GiB - 100 * MiB, 0, False),       # the RAM free moves a little: not sent
    (8 * GiB, 6 * GiB, 0, True),                    # an eighth or more
    (100 * MiB, 150 * MiB, 0, False),               # under MIN_CHANGE
    (8 * GiB, 8 * GiB - 100 * MiB, 8 * GiB, True),  # the caches hold more than the new limit: now
    (0, 0, 0, False),
])
def test_worth_sending(current, new, held, expected) -> None:
    from mullama.hardware.cache_ram import worth_sending

    assert worth_sending(current, new, held) is expected


async def test_memory_another_program_takes_shrinks_the_caches_at_the_next_recheck() -> None:
    life, launcher, events = make(devices=Devices(gpus=(), host=host(32 * GiB, 30 * GiB)), held=3 * GiB)
    life.release(await life.acquire(A))
    life.release(await life.acquire(B))
    (a,), (b,) = launcher.of(A.name), launcher.of(B.name)
    assert a.load_cache_ram == b.load_cache_ram == 8 * GiB
    life.cache_ram._probe = lambda: Devices(gpus=(), host=host(32 * GiB, 30 * GiB - 200 * MiB))
    await life.cache_ram.recheck(life.loaded())
    assert not a.cache_limits and not b.cache_limits  # a small move is not sent
    life.cache_ram._probe = lambda: Devices(gpus=(), host=host(32 * GiB, GiB))  # a program took 29 GiB
    await life.cache_ram.recheck(life.loaded())
    # pool: 1 GiB free + 2 x 3 GiB held - 3.2 GiB reserve = 3.8 GiB: 1.9 GiB each, below the 3 GiB each holds
    assert a.cache_limits[-1] == b.cache_limits[-1] < 2 * GiB and a.held == a.cache_limits[-1]
    life.cache_ram._probe = lambda: Devices(gpus=(), host=host(32 * GiB, 30 * GiB))  # and gave it back
    await life.cache_ram.recheck(life.loaded())
    assert a.cache_limits[-1] == b.cache_limits[-1] == 8 * GiB
    assert sum(1 for kind, _ in events if kind == "cache_ram_allotted") == 4
    await life.shutdown()


async def test_the_recheck_task_goes_on_after_a_failed_turn(monkeypatch) -> None:
    from mullama.serving import cache_ram as serving_cache_ram

    life, launcher, _ = make(devices=Devices(gpus=(), host=host(32 * GiB, 30 * GiB)), held=3 * GiB)
    life.release(await life.acquire(A))
    (a,) = launcher.of(A.name)
    probes = iter([RuntimeError("psutil went away"), Devices(gpus=(), host=host(32 * GiB, GiB))])

    def probe() -> Devices:
        got = next(probes, Devices(gpus=(), host=host(32 * GiB, GiB)))
        if isinstance(got, Exception):
            raise got
        return got

    monkeypatch.setattr(serving_cache_ram, "RECHECK_S", 0.01)
    life.cache_ram._probe = probe
    task = asyncio.create_task(life.cache_ram.run(life.loaded))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if a.cache_limits:
            break
    task.cancel()
    assert a.cache_limits and a.cache_limits[-1] < 3 * GiB  # the turn after the failure shrank it
    await life.shutdown()
