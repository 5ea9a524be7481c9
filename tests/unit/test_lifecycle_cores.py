"""The supervisor's core allotment over fake runners: a loading runner carries its cores and threads in its
load, the runners already there shrink to make room, and get the cores back when it leaves or crashes;
per-model threads are exact; ``cpu_allotment = "off"`` changes nothing."""

from __future__ import annotations

import asyncio

from lifecycle_fakes import entry, make

from mullama.serving.cores import Cores

A, B, C = entry("alpha:q4_1"), entry("beta:q8_0"), entry("gamma:q4_1")


def _with_cores(life, cores) -> None:
    life.cores = Cores(life.settings, life._emit, cores=cores)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_runners_split_the_cores_and_get_them_back() -> None:
    life, launcher, events = make()
    _with_cores(life, [0, 1, 2, 3])
    life.release(await life.acquire(A))
    (a,) = launcher.of(A.name)
    assert a.load_cpu == ((0, 1, 2, 3), 4, 4)
    life.release(await life.acquire(B))
    await _settle()
    (b,) = launcher.of(B.name)
    assert b.load_cpu == ((2, 3), 2, 2)
    assert a.cpu[-1] == ((0, 1), 2, 2)  # the older runner keeps the first cores, shrunk
    assert life.runtimes[A.name].cpu.cores == (0, 1) and life.runtimes[B.name].cpu.cores == (2, 3)
    assert ("cores_allotted", {"model": A.name, "cores": [0, 1], "threads": 2, "before": [0, 1, 2, 3]}) in events

    await life.unload(life.runtimes[B.name])
    await _settle()
    assert a.cpu[-1] == ((0, 1, 2, 3), 4, 4)
    assert life.runtimes[B.name].cpu is None
    await life.shutdown()


async def test_a_crashed_runner_frees_its_cores() -> None:
    life, launcher, _ = make()
    _with_cores(life, [0, 1])
    life.release(await life.acquire(A))
    life.release(await life.acquire(B))
    await _settle()
    (a,), (b,) = launcher.of(A.name), launcher.of(B.name)
    assert a.cpu[-1] == ((0,), 1, 1) and b.load_cpu == ((1,), 1, 1)
    b.crash()
    await _settle()
    assert a.cpu[-1] == ((0, 1), 2, 2)
    await life.shutdown()


async def test_more_runners_than_cores_run_one_thread_each() -> None:
    life, launcher, _ = make()
    _with_cores(life, [0, 1])
    for e in (A, B, C):
        life.release(await life.acquire(e))
    await _settle()
    assert launcher.of(C.name)[0].load_cpu == ((0,), 1, 1)
    assert [rt.cpu.threads for rt in life.runtimes.values()] == [1, 1, 1]
    await life.shutdown()


async def test_per_model_threads_are_exact_and_the_server_wide_value_caps() -> None:
    life, launcher, _ = make({"threads": 1, "models": {"beta": {"threads": 3, "threads_batch": 2}}})
    _with_cores(life, [0, 1, 2, 3])
    life.release(await life.acquire(A))
    assert launcher.of(A.name)[0].load_cpu == ((0, 1, 2, 3), 1, 1)  # capped at the server-wide 1
    life.release(await life.acquire(B))
    await _settle()
    assert launcher.of(B.name)[0].load_cpu == ((0, 1, 2), 3, 2)
    assert launcher.of(A.name)[0].cpu[-1] == ((3,), 1, 1)
    await life.shutdown()


async def test_off_leaves_threads_and_affinity_alone() -> None:
    life, launcher, events = make({"cpu_allotment": "off", "threads": 2})
    life.release(await life.acquire(A))
    life.release(await life.acquire(B))
    await _settle()
    assert all(r.load_cpu == ((), 2, 0) and r.cpu == [] for r in launcher.started)
    assert not any(kind == "cores_allotted" for kind, _ in events)
    assert life.runtimes[A.name].cpu is None
    await life.shutdown()
