"""The draft model of speculative decoding in the placement plan (pure).

A runner that speculates with a draft model (``[speculative] draft_model``) loads it next to the target,
with a context of the target's shape (``runner_ext/spec_draft.cpp``): its weights, a KV cache of the same
``n_ctx`` and a compute buffer. Those bytes join the target's cost where llama.cpp puts them, so a plan
that fits the target alone cannot overfill a device once the draft loads.

- Where: the draft's ``draft_gpu_layers`` of its ``n_layer + 1`` units (repeating layers and the output
  head) go to the GPU, the rest stays on the host; ``-1`` is all of them. With several GPUs llama.cpp
  spreads the draft by free memory; the plan counts it on the first GPU (the one that fills first).
- The KV cache: ``n_ctx`` cells of every layer, K and V of ``n_head_kv * n_embd / n_head`` elements each,
  in the target's cache types.
- The compute buffer is taken to be the target's: the same vocabulary and batch sizes size the logits,
  which dominate it for a model small enough to draft.
"""

from __future__ import annotations

import dataclasses

import gguf

from mullama.hardware.placement import ModelCost
from mullama.models.gguf_header import GgufHeader


def kv_bytes(header: GgufHeader, n_ctx: int, type_k: str, type_v: str) -> int:
    """The KV cache of ``n_ctx`` cells for ``header``'s model in these cache types."""
    n_head = header.n_head or 1
    n_embd_kv = (header.n_head_kv or n_head) * (header.n_embd or 0) // n_head
    per_cell = sum(_row_bytes(t, n_embd_kv) for t in (type_k, type_v))
    return header.n_layer * n_ctx * per_cell


def _row_bytes(cache_type: str, n: int) -> int:
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[cache_type.upper()]]
    return -(-n // block) * size


def with_draft(cost: ModelCost, draft: GgufHeader, *, n_ctx: int, type_k: str, type_v: str,
               draft_gpu_layers: int, n_gpus: int) -> ModelCost:
    """``cost`` with the draft model's bytes added: on the host, on the first GPU, or split between them."""
    units = draft.n_layer + 1
    on_gpu = 0 if n_gpus == 0 else units if draft_gpu_layers < 0 else min(draft_gpu_layers, units)
    compute = cost.compute_gpu if on_gpu else cost.compute_cpu
    total = (sum(draft.layer_bytes) + draft.output_bytes + kv_bytes(draft, n_ctx, type_k, type_v))
    gpu = total * on_gpu // units
    host = total - gpu + draft.input_bytes + (0 if on_gpu else compute)
    if not gpu:
        return dataclasses.replace(cost, host_pinned=cost.host_pinned + host)
    pinned = list(cost.pinned_on(n_gpus))
    pinned[0] += gpu + compute
    return dataclasses.replace(cost, host_pinned=cost.host_pinned + host, gpu_pinned=tuple(pinned))
