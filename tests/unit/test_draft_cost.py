"""A draft model's bytes in the placement plan (``hardware/draft.py``): its weights, KV cache and compute
buffer go where llama.cpp puts them, and a GPU the target alone fills no longer takes both."""

from __future__ import annotations

import dataclasses

import pytest

from mullama.hardware.devices import Devices, Gpu, Host
from mullama.hardware.draft import kv_bytes, with_draft
from mullama.hardware.placement import ModelCost, plan
from mullama.models.gguf_header import read_header

MiB, GiB = 1 << 20, 1 << 30
COST = ModelCost(n_layer=30, layer_weights=(100 * MiB,) * 30, kv_per_layer=10 * MiB, output_weights=200 * MiB,
                 input_weights=200 * MiB, compute_gpu=300 * MiB, compute_cpu=50 * MiB)
HOST = Host(ram_total=64 * GiB, ram_available=48 * GiB, swap_total=0, swap_free=0)


@pytest.fixture(scope="module")
def draft(smollm_path):
    return read_header(smollm_path)  # SmolLM2-135M: 30 layers, 576 wide, 9 heads, 3 of them for K/V


def weights(h) -> int:
    return sum(h.layer_bytes) + h.output_bytes


def test_the_kv_cache_is_every_layer_s_k_and_v_rows_for_every_cell(draft):
    assert kv_bytes(draft, 4096, "f16", "f16") == 30 * 4096 * 2 * 192 * 2  # 192 = 3 heads of 64
    assert kv_bytes(draft, 4096, "q8_0", "f16") == 30 * 4096 * (6 * 34 + 192 * 2)  # 6 blocks of 32 in 34 bytes


def test_without_gpus_the_draft_is_host_memory(draft):
    out = with_draft(COST, draft, n_ctx=4096, type_k="f16", type_v="f16", draft_gpu_layers=-1, n_gpus=0)
    extra = weights(draft) + kv_bytes(draft, 4096, "f16", "f16") + draft.input_bytes + COST.compute_cpu
    assert out.host_pinned == extra and out.gpu_pinned == ()
    assert out.total == COST.total + extra


def test_all_draft_layers_go_to_the_first_gpu_but_its_input_layer(draft):
    out = with_draft(COST, draft, n_ctx=4096, type_k="f16", type_v="f16", draft_gpu_layers=-1, n_gpus=2)
    on_gpu = weights(draft) + kv_bytes(draft, 4096, "f16", "f16") + COST.compute_gpu
    assert out.gpu_pinned == (on_gpu, 0) and out.host_pinned == draft.input_bytes


def test_a_partial_draft_is_split_by_its_units(draft):
    out = with_draft(COST, draft, n_ctx=1024, type_k="f16", type_v="f16", draft_gpu_layers=10, n_gpus=1)
    total = weights(draft) + kv_bytes(draft, 1024, "f16", "f16")
    assert out.gpu_pinned == (total * 10 // 31 + COST.compute_gpu,)
    assert out.host_pinned == total - total * 10 // 31 + draft.input_bytes
    zero = with_draft(COST, draft, n_ctx=1024, type_k="f16", type_v="f16", draft_gpu_layers=0, n_gpus=1)
    assert zero.gpu_pinned == () and zero.host_pinned == total + draft.input_bytes + COST.compute_cpu


def test_a_gpu_the_target_alone_fills_keeps_fewer_target_layers_with_the_draft(draft):
    big = dataclasses.replace(draft, layer_bytes=tuple(300 * MiB for _ in draft.layer_bytes))  # a 9 GiB draft
    gpu = Devices(gpus=(Gpu(index=0, name="GPU0", uuid="GPU-0", total=24 * GiB, free=12 * GiB),), host=HOST)
    alone = plan(COST, gpu)
    both = plan(with_draft(COST, big, n_ctx=4096, type_k="f16", type_v="f16", draft_gpu_layers=-1, n_gpus=1), gpu)
    assert alone.full_offload and not both.full_offload
    assert both.gpu_bytes[0] <= 12 * GiB - 256 * MiB < alone.gpu_bytes[0] + 9 * GiB
