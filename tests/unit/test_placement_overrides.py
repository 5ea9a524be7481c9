"""Tensor buffer overrides in the placement plan: the weights an override sends to the host leave the
GPU budget for RAM (so more layers fit), those sent to a GPU are counted there, and a model or a pattern
they do not touch plans exactly as before. Synthetic tensor lists, fake machines, one real GGUF."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import gguf
import numpy as np
import pytest

from mullama import wire
from mullama.config.tensors import expand_overrides
from mullama.core.errors import NoFit
from mullama.hardware.devices import Devices, Gpu, Host
from mullama.hardware.overrides import HOST, WeightSplit, model_cost, override_target, split_weights
from mullama.hardware.placement import ModelCost, plan
from mullama.models.gguf_header import read_header

MiB = 1 << 20
GiB = 1 << 30
N_LAYER = 8
HOSTMEM = Host(ram_total=64 * GiB, ram_available=48 * GiB, swap_total=0, swap_free=0)
FIT = [wire.DeviceMemory(device="CUDA0", description="GPU", type="gpu", free=0, total=0, model=0, context=32 * MiB,
                         compute=200 * MiB),
       wire.DeviceMemory(device="CPU", description="CPU", type="cpu", free=0, total=0, model=0, context=0,
                         compute=20 * MiB)]


def machine(*free: int) -> Devices:
    return Devices(gpus=tuple(Gpu(index=i, name=f"GPU{i}", uuid=f"GPU-{i}", total=24 * GiB, free=f)
                              for i, f in enumerate(free)), host=HOSTMEM)


def overrides(**cfg) -> tuple[str, ...]:
    return expand_overrides(SimpleNamespace(**({"tensor_overrides": (), "cpu_moe": False, "n_cpu_moe": 0} | cfg)))


def moe(n_layer: int = N_LAYER) -> list[tuple[str, int]]:
    """A MoE model's tensors: 21 MiB of attention, router and shared expert, 300 MiB of experts per layer."""
    tensors = [("token_embd.weight", 50 * MiB)]
    for i in range(n_layer):
        tensors += [(f"blk.{i}.attn_qkv.weight", 16 * MiB), (f"blk.{i}.ffn_gate_inp.weight", MiB),
                    (f"blk.{i}.ffn_up_shexp.weight", 4 * MiB)]
        tensors += [(f"blk.{i}.ffn_{p}_exps.weight", 100 * MiB) for p in ("gate", "up", "down")]
    return tensors + [("output_norm.weight", 0), ("output.weight", 50 * MiB)]


def dense(n_layer: int = N_LAYER) -> list[tuple[str, int]]:
    tensors = [("token_embd.weight", 50 * MiB)]
    for i in range(n_layer):
        tensors += [(f"blk.{i}.attn_qkv.weight", 16 * MiB)]
        tensors += [(f"blk.{i}.ffn_{p}.weight", 100 * MiB) for p in ("gate", "up", "down")]
    return tensors + [("output.weight", 50 * MiB)]


def cost(split: WeightSplit) -> ModelCost:
    return ModelCost(n_layer=N_LAYER, layer_weights=split.layer_weights, kv_per_layer=4 * MiB,
                     output_weights=split.output_weights, input_weights=split.input_weights, compute_gpu=200 * MiB,
                     compute_cpu=20 * MiB, host_pinned=split.host_pinned, gpu_pinned=split.gpu_pinned)


@pytest.mark.parametrize("device, target", [
    ("CPU", HOST), ("CPU_REPACK", HOST), ("CUDA_Host", HOST), ("CUDA0", 0), ("CUDA1", 1), ("Vulkan1", 1),
    ("ROCm0", 0), ("CUDA2", None), ("Metal", None), ("RPC[127.0.0.1:50052]", None), ("CUDA0_Split", None),
])
def test_override_targets(device: str, target: int | None) -> None:
    assert override_target(device, n_gpus=2) == target


def test_cpu_moe_moves_only_the_expert_tensors() -> None:
    split = split_weights(moe(), N_LAYER, overrides(cpu_moe=True), n_gpus=1)
    assert split.layer_weights == (21 * MiB,) * N_LAYER  # attention, router and shared expert stay
    assert (split.host_pinned, split.gpu_pinned, split.matched) == (N_LAYER * 300 * MiB, (0,), 3 * N_LAYER)
    assert (split.output_weights, split.input_weights) == (50 * MiB, 50 * MiB)


def test_n_cpu_moe_moves_the_first_layers_experts() -> None:
    split = split_weights(moe(), N_LAYER, overrides(n_cpu_moe=3), n_gpus=1)
    assert split.layer_weights == (21 * MiB,) * 3 + (321 * MiB,) * 5
    assert split.host_pinned == 3 * 300 * MiB


def test_cpu_moe_lets_more_layers_fit_and_counts_the_experts_in_ram() -> None:
    devices = machine(2 * GiB + 256 * MiB)  # 2 GiB usable
    without = plan(cost(split_weights(moe(), N_LAYER, (), 1)), devices)
    assert (without.n_gpu_layers, without.pinned_cpu_bytes) == (6, 0)  # 200 compute + 50 head + 5 x 325
    with_moe = plan(cost(split_weights(moe(), N_LAYER, overrides(cpu_moe=True), 1)), devices)
    assert with_moe.n_gpu_layers == N_LAYER + 1 and with_moe.full_offload
    assert with_moe.gpu_bytes == (200 * MiB + 50 * MiB + N_LAYER * 25 * MiB,)
    assert with_moe.pinned_cpu_bytes == N_LAYER * 300 * MiB
    assert with_moe.cpu_bytes == N_LAYER * 300 * MiB + 50 * MiB + 20 * MiB
    assert with_moe.processor() == "85%/15% CPU/GPU"  # not "100% GPU": the experts are in RAM
    assert with_moe.total_bytes() == without.total_bytes()  # the same bytes, elsewhere
    assert with_moe.describe()["pinned_cpu_bytes"] == N_LAYER * 300 * MiB


def test_the_experts_in_ram_must_fit_the_ram() -> None:
    small = Devices(gpus=machine(8 * GiB).gpus, host=Host(ram_total=2 * GiB, ram_available=GiB, swap_total=0,
                                                          swap_free=0))
    with pytest.raises(NoFit, match="needs 2.4 GiB of host memory"):
        plan(cost(split_weights(moe(), N_LAYER, overrides(cpu_moe=True), 1)), small)


@pytest.mark.parametrize("patterns", [overrides(cpu_moe=True), overrides(n_cpu_moe=4), ("nothing_like_this=CPU",),
                                      (r"blk\.99\.=CUDA0",)])
def test_a_dense_model_or_a_pattern_matching_nothing_changes_nothing(patterns) -> None:
    plain = split_weights(dense(), N_LAYER, (), 1)
    split = split_weights(dense(), N_LAYER, patterns, 1)
    assert split == plain and split.matched == 0
    assert sum(plain.layer_weights) + plain.output_weights + plain.input_weights == sum(s for _, s in dense())
    for free in (GiB, 2 * GiB, 8 * GiB):
        assert plan(cost(split), machine(free)) == plan(cost(plain), machine(free))
    nothing = split_weights(moe(), N_LAYER, ("nothing_like_this=CPU",), 1)
    assert nothing == split_weights(moe(), N_LAYER, (), 1)


def test_the_first_matching_override_wins() -> None:
    patterns = (r"blk\.0\.ffn_up_exps=CUDA0", *overrides(cpu_moe=True))
    split = split_weights(moe(), N_LAYER, patterns, n_gpus=1)
    assert split.gpu_pinned == (100 * MiB,)
    assert split.host_pinned == N_LAYER * 300 * MiB - 100 * MiB


def test_overrides_to_a_gpu_are_counted_on_that_gpu() -> None:
    split = split_weights(moe(), N_LAYER, ("exps=CUDA1",), n_gpus=2)
    assert (split.host_pinned, split.gpu_pinned) == (0, (0, N_LAYER * 300 * MiB))
    p = plan(cost(split), machine(2 * GiB, 4 * GiB))
    assert p.full_offload and p.processor() == "100% GPU"
    assert sum(p.gpu_bytes) == sum(cost(split).units()) + N_LAYER * 300 * MiB + 2 * 200 * MiB
    assert p.gpu_bytes[1] >= N_LAYER * 300 * MiB + 200 * MiB
    only_pinned = plan(cost(split), machine(2 * GiB, 4 * GiB), n_gpu_layers=0)  # the GPU gets them all the same
    assert only_pinned.gpu_bytes == (0, N_LAYER * 300 * MiB + 200 * MiB) and only_pinned.n_gpu_layers == 0
    assert only_pinned.processor() != "100% CPU"
    with pytest.raises(NoFit, match=r"tensor_overrides put 2.3 GiB of weights on GPU 1 \(GPU1\)"):
        plan(cost(split), machine(8 * GiB, 2 * GiB))
    beyond = split_weights(moe(), N_LAYER, ("exps=CUDA1",), n_gpus=1)  # no GPU 1 here: left to the layers
    assert beyond == split_weights(moe(), N_LAYER, (), 1)


def test_tied_embeddings_are_matched_as_input_and_as_output() -> None:
    tensors = [t for t in dense() if t[0] != "output.weight"]
    split = split_weights(tensors, N_LAYER, (), 1, tied=True)
    assert (split.input_weights, split.output_weights) == (50 * MiB, 50 * MiB)
    moved = split_weights(tensors, N_LAYER, ("token_embd=CPU",), 1, tied=True)
    assert (moved.input_weights, moved.output_weights, moved.host_pinned, moved.matched) == (0, 0, 100 * MiB, 2)


def write_moe(path: Path) -> Path:
    w = gguf.GGUFWriter(str(path), "qwen3moe")
    w.add_block_count(2)
    w.add_tensor("token_embd.weight", np.zeros((16, 8), np.float32))
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((8, 8), np.float32))
        for p in ("gate", "up", "down"):
            w.add_tensor(f"blk.{i}.ffn_{p}_exps.weight", np.zeros((4, 8, 8), np.float32))
    w.add_tensor("output.weight", np.zeros((16, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_model_cost_from_a_gguf_header(tmp_path: Path) -> None:
    header = read_header(write_moe(tmp_path / "moe.gguf"))
    assert len(header.tensors) == 10 and sum(s for _, s in header.tensors) == (
        sum(header.layer_bytes) + header.output_bytes + header.input_bytes)
    plain = model_cost(header, FIT, (), n_gpus=1)
    assert (plain.layer_weights, plain.output_weights, plain.host_pinned) == (header.layer_bytes, 512, 0)
    moved = model_cost(header, FIT, overrides(cpu_moe=True), n_gpus=1)
    assert moved.layer_weights == (256, 256) and moved.host_pinned == 2 * 3 * 1024
    assert moved.total == plain.total
    fake = dataclasses.replace(header, tensors=())  # a header without its tensor list: overrides are not seen
    assert model_cost(fake, FIT, overrides(cpu_moe=True), n_gpus=1) == plain
