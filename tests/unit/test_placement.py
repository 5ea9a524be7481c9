"""placement.plan and friends: table-driven, over injected Devices; no hardware."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mullama import wire
from mullama.hardware.devices import Devices, Gpu, Host
from mullama.core.errors import ConfigError, NoFit
from mullama.hardware.placement import ModelCost, Placement, cost_from_fit, plan
from mullama.core.units import format_size

MiB = 1 << 20
GiB = 1 << 30
RESERVE = 256 * MiB

# 30 layers of 100 MiB + 10 MiB KV (110 MiB units), a 200 MiB output head, 200 MiB input layer.
# Everything on one GPU: 30 * 110 + 200 + 300 compute = 3800 MiB.
COST = ModelCost(n_layer=30, layer_weights=(100 * MiB,) * 30, kv_per_layer=10 * MiB, output_weights=200 * MiB,
                 input_weights=200 * MiB, compute_gpu=300 * MiB, compute_cpu=50 * MiB)
UNIT = 110 * MiB
FULL_GPU = 3800 * MiB
PLENTY = Host(ram_total=64 * GiB, ram_available=48 * GiB, swap_total=0, swap_free=0)


def machine(*free: int, host: Host = PLENTY) -> Devices:
    return Devices(gpus=tuple(Gpu(index=i, name=f"GPU{i}", uuid=f"GPU-{i}", total=max(f, 24 * GiB), free=f)
                              for i, f in enumerate(free)), host=host)


def utilisation(p: Placement, devices: Devices) -> list[tuple[float, float]]:
    """(used / usable, one unit / usable) for each GPU that holds layers."""
    return [(b / (g.free - RESERVE), max(COST.units()) / (g.free - RESERVE))
            for b, g, n in zip(p.gpu_bytes, devices.gpus, p.layers_per_gpu) if n]


def llama_cpp_devices(tensor_split: tuple[float, ...], n_gpu_layers: int, n_layer: int) -> list[int | None]:
    """The device of units 0..n_layer as llama.cpp's load_tensors picks it (float32 maths); None: CPU."""
    splits = np.cumsum(np.array(tensor_split, dtype=np.float32), dtype=np.float32)
    splits = splits / splits[-1]
    start, act = max(n_layer + 1 - n_gpu_layers, 0), min(n_gpu_layers, n_layer + 1)
    return [None if il < start else int(np.searchsorted(splits, np.float32(il - start) / np.float32(act),
                                                         side="right"))
            for il in range(n_layer + 1)]


# ---------------------------------------------------------------- automatic


@pytest.mark.parametrize(
    "frees, n_gpu_layers, layers_per_gpu, processor",
    [
        ((), 0, (), "100% CPU"),
        ((8 * GiB,), 31, (31,), "100% GPU"),
        ((RESERVE + FULL_GPU,), 31, (31,), "100% GPU"),              # exactly enough
        ((RESERVE + FULL_GPU - 1,), 30, (30,), "9%/91% CPU/GPU"),   # one byte short: layer 0 stays behind
        ((2 * GiB,), 12, (12,), "58%/42% CPU/GPU"),                 # 1792 MiB: compute + output + 11 layers
        ((RESERVE + 499 * MiB,), 0, (0,), "100% CPU"),               # not even compute + output head
        ((RESERVE // 2,), 0, (0,), "100% CPU"),                      # less free than the reserve
        ((4 * GiB, 4 * GiB), 31, (16, 15), "100% GPU"),             # 2060 / 2040 MiB: the balanced optimum
        ((8 * GiB, 3 * GiB), 31, (25, 6), "100% GPU"),
        ((2 * GiB, 1 * GiB), 16, (13, 3), "44%/56% CPU/GPU"),
        ((2 * GiB, 100 * MiB), 12, (12, 0), "58%/42% CPU/GPU"),     # the second GPU cannot hold anything
        ((100 * MiB, 2 * GiB), 12, (0, 12), "58%/42% CPU/GPU"),
        ((2 * GiB,) * 4, 31, (8, 8, 8, 7), "100% GPU"),
        ((1 * GiB,) * 4, 15, (4, 4, 4, 3), "41%/59% CPU/GPU"),     # 768 MiB: compute + 4 layers or head + 2
        ((20 * GiB, 2 * GiB), 31, (31, 0), "100% GPU"),             # the small GPU would only add utilisation
    ],
    ids=["0gpu", "1gpu-fits", "1gpu-exact", "1gpu-1byte-short", "1gpu-spills", "1gpu-nothing", "1gpu-reserve",
         "2gpu-even", "2gpu-uneven", "2gpu-spills", "2gpu-second-useless", "2gpu-first-useless", "4gpu-fits",
         "4gpu-spills", "2gpu-small-one-unused"],
)
def test_automatic_plan(frees, n_gpu_layers, layers_per_gpu, processor):
    devices = machine(*frees)
    p = plan(COST, devices)
    assert (p.n_gpu_layers, p.layers_per_gpu, p.processor()) == (n_gpu_layers, layers_per_gpu, processor)
    assert sum(p.layers_per_gpu) == p.n_gpu_layers
    assert p.output_on_gpu == (n_gpu_layers > 0)
    assert p.full_offload == (n_gpu_layers == COST.n_layer + 1)
    for used, gpu, n in zip(p.gpu_bytes, devices.gpus, p.layers_per_gpu):
        assert used <= max(0, gpu.free - RESERVE)
        assert (used > 0) == (n > 0)
    offloaded = COST.units()[COST.n_layer + 1 - p.n_gpu_layers:]
    assert p.total_bytes() == COST.total + COST.compute_gpu * sum(1 for n in p.layers_per_gpu if n)
    assert sum(p.gpu_bytes) == sum(offloaded) + COST.compute_gpu * sum(1 for n in p.layers_per_gpu if n)
    split = tuple(float(n) for n in layers_per_gpu) if len(frees) >= 2 and n_gpu_layers else ()
    assert p.tensor_split == split


def test_spill_accounts_host_bytes_layer_by_layer():
    p = plan(COST, machine(2 * GiB))
    assert p.cpu_layers == 19
    assert p.cpu_bytes == 19 * UNIT + COST.input_weights + COST.compute_cpu
    assert p.gpu_bytes == (COST.compute_gpu + COST.output_weights + 11 * UNIT,)


def test_output_head_goes_first_so_a_tight_gpu_keeps_layer_zero_on_the_host():
    # llama.cpp offloads the last n_gpu_layers of [layer 0 .. layer 29, output]: n_gpu_layers=30 moves the
    # output head and layers 1..29, and keeps layer 0 (not the output head) on the CPU.
    p = plan(COST, machine(RESERVE + FULL_GPU - 1))
    assert (p.n_gpu_layers, p.output_on_gpu, p.cpu_layers, p.full_offload) == (30, True, 1, False)
    assert p.cpu_bytes == UNIT + COST.input_weights + COST.compute_cpu


def test_an_output_head_that_fits_nowhere_keeps_everything_on_the_host():
    big_head = ModelCost(n_layer=4, layer_weights=(10 * MiB,) * 4, kv_per_layer=0, output_weights=2 * GiB,
                         input_weights=0, compute_gpu=0, compute_cpu=0)
    p = plan(big_head, machine(1 * GiB))
    assert (p.n_gpu_layers, p.processor()) == (0, "100% CPU")


@pytest.mark.parametrize(
    "frees",
    [(4 * GiB, 4 * GiB), (8 * GiB, 3 * GiB), (3 * GiB, 8 * GiB), (2 * GiB, 1 * GiB), (20 * GiB, 5 * GiB),
     (2 * GiB, 3 * GiB, 5 * GiB, 7 * GiB), (1 * GiB,) * 4, (900 * MiB, 6 * GiB, 1200 * MiB)],
)
def test_automatic_plan_balances_utilisation_within_one_layer(frees):
    devices = machine(*frees)
    used = utilisation(plan(COST, devices), devices)
    assert len(used) >= 2
    spread = max(u for u, _ in used) - min(u for u, _ in used)
    assert spread <= max(share for _, share in used) + 1e-9, used


@pytest.mark.parametrize("frees", [(4 * GiB, 4 * GiB), (8 * GiB, 3 * GiB), (2 * GiB, 1 * GiB), (2 * GiB,) * 4,
                                   (100 * MiB, 2 * GiB), (20 * GiB, 2 * GiB),
                                   (900 * MiB, 6 * GiB, 1200 * MiB)])
def test_tensor_split_reproduces_the_plan_in_llama_cpp(frees):
    p = plan(COST, machine(*frees))
    on = llama_cpp_devices(p.tensor_split, p.n_gpu_layers, COST.n_layer)
    assert [on.count(g) for g in range(len(frees))] == list(p.layers_per_gpu)
    assert on.count(None) == COST.n_layer + 1 - p.n_gpu_layers
    assert on[-1] == max(g for g, n in enumerate(p.layers_per_gpu) if n)  # the output head: last GPU in use
    # and the plan is a fixed point when its own split and count are passed back as overrides
    again = plan(COST, machine(*frees), n_gpu_layers=p.n_gpu_layers, tensor_split=p.tensor_split)
    assert again == p


# ---------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "frees, n_gpu_layers, layers_per_gpu",
    [
        ((8 * GiB,), 5, (5,)),
        ((8 * GiB,), 0, (0,)),
        ((8 * GiB,), 999, (31,)),            # more than there are: all
        ((), 20, ()),                         # no GPUs: CPU, whatever was asked
        ((4 * GiB, 4 * GiB), 10, (5, 5)),
        ((8 * GiB, 3 * GiB), 10, (9, 1)),        # head on GPU1 (2816 MiB usable) is already 18% of it
    ],
)
def test_explicit_n_gpu_layers_is_honoured(frees, n_gpu_layers, layers_per_gpu):
    p = plan(COST, machine(*frees), n_gpu_layers=n_gpu_layers)
    assert p.layers_per_gpu == layers_per_gpu
    assert p.n_gpu_layers == sum(layers_per_gpu)


def test_explicit_n_gpu_layers_bytes():
    p = plan(COST, machine(8 * GiB), n_gpu_layers=5)
    assert p.gpu_bytes == (COST.compute_gpu + COST.output_weights + 4 * UNIT,)
    assert p.cpu_bytes == 26 * UNIT + COST.input_weights + COST.compute_cpu
    assert p.output_on_gpu and p.cpu_layers == 26


def test_explicit_n_gpu_layers_that_does_not_fit_raises_no_fit():
    with pytest.raises(NoFit) as info:
        plan(COST, machine(2 * GiB), n_gpu_layers=20, model="m:7b")
    message = str(info.value)
    assert message.startswith("m:7b with n_gpu_layers=20: only 12 of 20 layers fit")
    need = COST.compute_gpu + COST.output_weights + 19 * UNIT
    assert f"need {format_size(need)} of VRAM but {format_size(2 * GiB - RESERVE)} is usable" in message
    assert f"missing {format_size(need - (2 * GiB - RESERVE))}" in message


@pytest.mark.parametrize(
    "split, n_gpu_layers, layers_per_gpu",
    [
        ((1, 1), -1, (16, 15)),
        ((3, 1), -1, (24, 7)),
        ((0, 1), 5, (0, 5)),
        ((1,), 4, (4, 0)),                   # shorter than the GPU list: the rest get nothing
        ((0.5, 0.5), 31, (16, 15)),
    ],
)
def test_explicit_tensor_split_is_honoured(split, n_gpu_layers, layers_per_gpu):
    p = plan(COST, machine(8 * GiB, 8 * GiB), n_gpu_layers=n_gpu_layers, tensor_split=split)
    assert p.layers_per_gpu == layers_per_gpu
    assert p.tensor_split == tuple(float(n) for n in layers_per_gpu)
    on = llama_cpp_devices(split + (0.0,) * (2 - len(split)), p.n_gpu_layers, COST.n_layer)
    assert [on.count(g) for g in range(2)] == list(layers_per_gpu)  # same as llama.cpp with the user's split


def test_explicit_tensor_split_that_overfills_a_gpu_raises_no_fit():
    with pytest.raises(NoFit) as info:
        plan(COST, machine(2 * GiB, 2 * GiB), tensor_split=(1, 0), model="m")
    message = str(info.value)
    assert "tensor_split [1.0, 0.0] puts 31 layers" in message and "on GPU 0 (GPU0)" in message
    assert f"{format_size(2 * GiB - RESERVE)} is usable there" in message
    assert f"over by {format_size(FULL_GPU - (2 * GiB - RESERVE))}" in message


@pytest.mark.parametrize("split", [(), (0, 0), (0.0,)])
def test_an_empty_or_all_zero_split_means_automatic(split):
    assert plan(COST, machine(8 * GiB, 3 * GiB), tensor_split=split) == plan(COST, machine(8 * GiB, 3 * GiB))


def test_a_split_on_a_single_gpu_is_ignored():
    assert plan(COST, machine(2 * GiB), tensor_split=(3, 1)) == plan(COST, machine(2 * GiB))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"n_gpu_layers": -2}, "n_gpu_layers must be -1"),
        ({"tensor_split": (1, -1)}, "tensor_split entries"),
        ({"tensor_split": (1, float("nan"))}, "tensor_split entries"),
        ({"tensor_split": (1, 1, 1)}, "3 entries but this machine has 2 GPUs"),
        ({"ram_budget": -1}, "ram_budget"),
        ({"gpu_reserve": -1}, "gpu_reserve"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        plan(COST, machine(8 * GiB, 8 * GiB), **kwargs)


# ---------------------------------------------------------------- require_full


def test_require_full_passes_when_everything_fits():
    assert plan(COST, machine(8 * GiB), require_full=True).full_offload


def test_require_full_fails_with_the_missing_vram():
    with pytest.raises(NoFit) as info:
        plan(COST, machine(2 * GiB), require_full=True, model="qwen:7b")
    usable = 2 * GiB - RESERVE
    assert str(info.value) == (
        f"qwen:7b does not fit fully in VRAM: only 12 of 31 layers fit; "
        f"all 31 need {format_size(FULL_GPU)} of VRAM but {format_size(usable)} is usable on 1 GPU "
        f"(free minus 256.0 MiB reserve each); "
        f"missing {format_size(FULL_GPU - usable)}")


def test_require_full_names_fragmentation_when_the_total_would_fit():
    # 2 x 600 MiB usable = the 1200 MiB of three 400 MiB units, but each GPU holds only one of them
    cost = ModelCost(n_layer=2, layer_weights=(400 * MiB,) * 2, kv_per_layer=0, output_weights=400 * MiB,
                     input_weights=0, compute_gpu=0, compute_cpu=0)
    with pytest.raises(NoFit, match=r"only 2 of 3 layers fit.*missing 400\.0 MiB \(layers cannot be split"):
        plan(cost, machine(RESERVE + 600 * MiB, RESERVE + 600 * MiB), require_full=True)


def test_require_full_accepts_a_user_asking_for_fewer_layers():
    assert plan(COST, machine(2 * GiB), require_full=True, n_gpu_layers=5).n_gpu_layers == 5


def test_require_full_on_a_cpu_only_machine_needs_ram_without_swap():
    host = Host(ram_total=8 * GiB, ram_available=2 * GiB, swap_total=8 * GiB, swap_free=8 * GiB)
    assert plan(COST, machine(host=host)).n_gpu_layers == 0  # swap counts normally
    with pytest.raises(NoFit, match=r"but 2\.0 GiB is free \(RAM\); short by"):
        plan(COST, machine(host=host), require_full=True)


# ---------------------------------------------------------------- host memory


def test_host_too_small_raises_no_fit_with_numbers():
    host = Host(ram_total=4 * GiB, ram_available=600 * MiB, swap_total=1 * GiB, swap_free=200 * MiB)
    with pytest.raises(NoFit) as info:
        plan(COST, machine(2 * GiB, host=host), model="smollm2:q4_1")
    need = 19 * UNIT + COST.input_weights + COST.compute_cpu
    assert str(info.value) == (
        f"smollm2:q4_1 needs {format_size(need)} of host memory for 19 CPU layers but "
        f"{format_size(800 * MiB)} is free (RAM + swap); short by {format_size(need - 800 * MiB)}")


def test_swap_counts_towards_host_memory():
    host = Host(ram_total=4 * GiB, ram_available=1 * GiB, swap_total=4 * GiB, swap_free=4 * GiB)
    assert plan(COST, machine(host=host)).cpu_bytes == COST.total  # 3.8 GiB host part, 5 GiB available


@pytest.mark.parametrize("budget, fits", [(COST.total, True), (COST.total - 1, False), (100 * GiB, True)])
def test_ram_budget_tighter_than_ram_wins(budget, fits):
    if fits:
        assert plan(COST, machine(), ram_budget=budget).cpu_bytes == COST.total
        return
    with pytest.raises(NoFit, match=r"for 30 CPU layers but the RAM budget is .*; short by 1 B"):
        plan(COST, machine(), ram_budget=budget)


def test_ram_budget_looser_than_ram_leaves_ram_in_charge():
    host = Host(ram_total=4 * GiB, ram_available=1 * GiB, swap_total=0, swap_free=0)
    with pytest.raises(NoFit, match=r"is free \(RAM \+ swap\)"):
        plan(COST, machine(host=host), ram_budget=100 * GiB)


def test_full_offload_still_needs_host_memory_for_the_input_layer():
    host = Host(ram_total=1 * GiB, ram_available=100 * MiB, swap_total=0, swap_free=0)
    with pytest.raises(NoFit, match="for its input layer and compute buffer but 100.0 MiB is free"):
        plan(COST, machine(8 * GiB, host=host))


# ---------------------------------------------------------------- edge cases


def test_zero_layer_model():
    head_only = ModelCost(n_layer=0, layer_weights=(), kv_per_layer=0, output_weights=50 * MiB,
                          input_weights=50 * MiB, compute_gpu=10 * MiB, compute_cpu=1 * MiB)
    on_gpu = plan(head_only, machine(1 * GiB))
    assert (on_gpu.n_gpu_layers, on_gpu.full_offload, on_gpu.processor(), on_gpu.cpu_layers) == (
        1, True, "100% GPU", 0)
    on_cpu = plan(head_only, machine())
    assert (on_cpu.n_gpu_layers, on_cpu.processor(), on_cpu.cpu_bytes) == (0, "100% CPU", 101 * MiB)
    assert plan(head_only, machine(1 * GiB), n_gpu_layers=0).processor() == "100% CPU"


def test_zero_sized_model_fits_anywhere():
    nothing = ModelCost(n_layer=3, layer_weights=(0, 0, 0), kv_per_layer=0, output_weights=0, input_weights=0,
                        compute_gpu=0, compute_cpu=0)
    host = Host(ram_total=0, ram_available=0, swap_total=0, swap_free=0)
    assert plan(nothing, machine(host=host)).total_bytes() == 0
    assert plan(nothing, machine(1 * GiB, 1 * GiB, host=host)).n_gpu_layers == 4


def _placement(n_gpu_layers: int, cpu: int, gpu: tuple[int, ...], n_layer: int = 30) -> Placement:
    return Placement(n_gpu_layers=n_gpu_layers, tensor_split=(), layers_per_gpu=(n_gpu_layers,),
                     gpu_bytes=gpu, cpu_bytes=cpu, output_on_gpu=n_gpu_layers > 0, n_layer=n_layer)


@pytest.mark.parametrize(
    "placement, expected",
    [
        (_placement(0, 1000, (0,)), "100% CPU"),
        (_placement(31, 50, (950,)), "100% GPU"),         # the input layer on the host does not count
        (_placement(15, 480, (520,)), "48%/52% CPU/GPU"),
        (_placement(30, 1, (999,)), "1%/99% CPU/GPU"),     # rounds to 0% but is split: never "0%"
        (_placement(1, 999, (1,)), "99%/1% CPU/GPU"),
        (_placement(1, 0, (0,)), "50%/50% CPU/GPU"),       # no bytes at all, yet split
    ],
)
def test_processor_strings(placement, expected):
    assert placement.processor() == expected


def test_placement_describe_is_json_able():
    summary = json.loads(json.dumps(plan(COST, machine(2 * GiB, 1 * GiB)).describe()))
    assert summary["n_gpu_layers"] == 16 and summary["layers_per_gpu"] == [13, 3]
    assert summary["tensor_split"] == [13.0, 3.0] and summary["processor"] == "44%/56% CPU/GPU"
    assert summary["full_offload"] is False and summary["output_on_gpu"] is True


# ---------------------------------------------------------------- ModelCost and cost_from_fit


def test_model_cost_total_and_validation():
    assert COST.total == 30 * UNIT + 200 * MiB + 200 * MiB + 50 * MiB
    assert ModelCost(n_layer=2, layer_weights=[1, 2], kv_per_layer=0, output_weights=0, input_weights=0,
                     compute_gpu=0, compute_cpu=0).layer_weights == (1, 2)
    with pytest.raises(ValueError, match="3 entries for n_layer=2"):
        ModelCost(n_layer=2, layer_weights=(1, 2, 3), kv_per_layer=0, output_weights=0, input_weights=0,
                  compute_gpu=0, compute_cpu=0)
    with pytest.raises(ValueError, match="non-negative"):
        ModelCost(n_layer=1, layer_weights=(1,), kv_per_layer=-1, output_weights=0, input_weights=0,
                  compute_gpu=0, compute_cpu=0)


def _dev(type_: str, context: int, compute: int, name: str = "CUDA0") -> wire.DeviceMemory:
    return wire.DeviceMemory(device=name, description=name, type=type_, free=8 * GiB, total=8 * GiB,
                                 model=0, context=context, compute=compute)


@pytest.mark.parametrize(
    "fit, kv, compute_gpu, compute_cpu",
    [
        ([_dev("gpu", 300, 5000), _dev("gpu", 100, 7000, "CUDA1"), _dev("cpu", 0, 40, "CPU")], 134, 7000, 40),
        ([_dev("cpu", 301, 900, "CPU")], 101, 900, 900),                     # CPU-only: CPU compute stands in
        ([_dev("gpu", 0, 0), _dev("cpu", 300, 900, "CPU")], 100, 900, 900),  # a GPU that got no layers
        ([_dev("igpu", 30, 60, "Vulkan0"), _dev("cpu", 0, 8, "CPU")], 10, 60, 8),
        ([], 0, 0, 0),
    ],
    ids=["two-gpus", "cpu-only", "idle-gpu", "igpu", "empty"],
)
def test_cost_from_fit(fit, kv, compute_gpu, compute_cpu):
    cost = cost_from_fit(3, [10, 20, 30], 7, 5, fit)
    assert (cost.kv_per_layer, cost.compute_gpu, cost.compute_cpu) == (kv, compute_gpu, compute_cpu)
    assert (cost.n_layer, cost.layer_weights) == (3, (10, 20, 30))
    assert (cost.output_weights, cost.input_weights) == (7, 5)


def test_cost_from_fit_with_zero_layers():
    cost = cost_from_fit(0, [], 7, 5, [_dev("cpu", 100, 9, "CPU")])
    assert (cost.kv_per_layer, cost.units()) == (0, (7,))
