"""The core allotment (hardware/cores.py): disjoint blocks while there are enough cores, the oldest runner
keeps its block, per-model threads exact, the server-wide threads a cap, one thread each when cores run out."""

from __future__ import annotations

import pytest

from mullama.hardware.cores import Allotment, CoreDemand, allot


def _a(cores, *demands):
    return allot(cores, [CoreDemand(*d) if isinstance(d, tuple) else CoreDemand(d) for d in demands])


@pytest.mark.parametrize("cores, demands, want", [
    ([0, 1], ["a"], {"a": Allotment((0, 1), 2)}),
    ([0, 1], ["a", "b"], {"a": Allotment((0,), 1), "b": Allotment((1,), 1)}),
    ([0, 1, 2, 3, 4], ["a", "b"], {"a": Allotment((0, 1, 2), 3), "b": Allotment((3, 4), 2)}),
    # more runners than cores: one thread each, round robin
    ([0, 1], ["a", "b", "c"], {"a": Allotment((0,), 1), "b": Allotment((1,), 1), "c": Allotment((0,), 1)}),
    # the server-wide threads caps a share, the cores stay the runner's
    ([0, 1, 2, 3], [("a", 0, 2)], {"a": Allotment((0, 1, 2, 3), 2)}),
    ([0, 1, 2, 3], [("a", 0, 2), ("b", 0, 2)], {"a": Allotment((0, 1), 2), "b": Allotment((2, 3), 2)}),
    # a per-model threads is exact and takes its cores first
    ([0, 1, 2, 3], [("a", 0, 0), ("b", 3, 0)], {"b": Allotment((0, 1, 2), 3), "a": Allotment((3,), 1)}),
    ([0, 1], [("a", 4, 0)], {"a": Allotment((0, 1), 4)}),  # asked for more than there are: as asked
    ([0, 1], [("a", 2, 0), ("b", 0, 0)], {"a": Allotment((0, 1), 2), "b": Allotment((0,), 1)}),
    ([0, 1], [("a", 2, 0), ("b", 1, 0)], {"a": Allotment((0, 1), 2), "b": Allotment((0,), 1)}),
    # the machine's own core ids (a cpuset), in any order
    ([7, 3, 5, 9], ["a", "b"], {"a": Allotment((3, 5), 2), "b": Allotment((7, 9), 2)}),
    ([0, 1], [], {}),
    # a model all on a GPU (or RPC workers) needs one thread; the CPU-bound ones get the rest
    ([0, 1, 2, 3], [("g", 0, 0, True), ("c", 0, 0)], {"g": Allotment((0,), 1), "c": Allotment((1, 2, 3), 3)}),
    ([0, 1], [("g", 0, 0, True)], {"g": Allotment((0,), 1)}),
    ([0], [("c", 0, 0), ("g", 0, 0, True)], {"g": Allotment((0,), 1), "c": Allotment((0,), 1)}),  # nothing free
    ([0, 1, 2], [("g", 2, 0, True)], {"g": Allotment((0, 1), 2)}),  # a per-model threads still wins
])
def test_allotments(cores, demands, want) -> None:
    assert _a(cores, *demands) == want


def test_the_oldest_runner_keeps_its_cores_when_another_arrives_and_gets_them_back_when_it_leaves() -> None:
    alone = _a(range(4), "old")
    two = _a(range(4), "old", "new")
    assert set(two["old"].cores) < set(alone["old"].cores) and two["old"].cores[0] == alone["old"].cores[0]
    assert not set(two["old"].cores) & set(two["new"].cores)
    assert _a(range(4), "old") == alone


def test_no_cores_is_an_error() -> None:
    with pytest.raises(ValueError):
        allot([], [CoreDemand("a")])


def test_a_model_planned_all_off_the_cpu_is_light_unless_weights_stay_on_the_host() -> None:
    from types import SimpleNamespace

    from mullama.serving.cores import demand

    cfg = SimpleNamespace(threads=0, threads_explicit=False)
    full = SimpleNamespace(full_offload=True, pinned_cpu_bytes=0)
    assert demand("m", cfg, full).light  # type: ignore[arg-type]
    assert not demand("m", cfg, SimpleNamespace(full_offload=True, pinned_cpu_bytes=1)).light  # type: ignore[arg-type]
    assert not demand("m", cfg, SimpleNamespace(full_offload=False, pinned_cpu_bytes=0)).light  # type: ignore[arg-type]
    assert not demand("m", cfg, None).light  # type: ignore[arg-type]
