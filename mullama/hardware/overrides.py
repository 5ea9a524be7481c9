"""Which weights tensor buffer overrides take out of the layer plan, and where they put them. Pure.

llama.cpp tries the overrides (``REGEX=DEVICE``, already expanded: see ``config.tensors``) in order on
every tensor's name with ``std::regex_search``; the first that matches decides the tensor's buffer type,
whatever device its layer has. Here ``re.search`` does the same on the GGUF header's tensor names (the
patterns were checked at start to be ECMAScript-compatible), and the bytes of each matched tensor leave
its layer (or the head, or the input layer) for:

* the host, when DEVICE is a host buffer type: ``CPU`` and its variants (``CPU_REPACK``, ...) or a
  GPU backend's pinned host memory (``CUDA_Host``, ``Vulkan_Host``, ...);
* GPU *i*, when DEVICE is a backend name with index *i* (``CUDA1``, ``Vulkan1``, ``ROCm1``, ``SYCL1``)
  and the machine has that GPU: ``devices`` numbers GPUs as llama.cpp does (PCI bus order);
* nowhere else: a DEVICE without an index (``Metal``, ``RPC[...]``) or past the last GPU leaves the
  tensor in its layer's count, and the runner refuses a device it does not know.

A tensor that no override matches follows its layer, as before. The output head of a model with tied
embeddings is the embedding matrix loaded a second time, under its input name: it is counted (and
matched) twice, once as input and once as output, as ``loading`` always counted it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from mullama import wire
from mullama.hardware.placement import ModelCost, cost_from_fit
from mullama.models.gguf_header import GgufHeader, tensor_part

HOST = -1  # the target of a host buffer type
_GPU_DEVICE = re.compile(r"[A-Za-z]+?(\d+)")


def override_target(device: str, n_gpus: int) -> int | None:
    """``HOST``, a GPU index, or None (the tensor stays in its layer's count) for a buffer type's name."""
    if device.upper().startswith("CPU") or device.endswith("_Host"):
        return HOST
    m = _GPU_DEVICE.fullmatch(device)
    if m and int(m.group(1)) < n_gpus:
        return int(m.group(1))
    return None


@dataclasses.dataclass(frozen=True)
class WeightSplit:
    """Weight bytes by where they go: with their layer (per layer, head, input) or pinned by an override."""

    layer_weights: tuple[int, ...]
    output_weights: int
    input_weights: int
    host_pinned: int = 0
    gpu_pinned: tuple[int, ...] = ()
    matched: int = 0  # tensors an override moved (a tied output counted again)


def split_weights(tensors: Sequence[tuple[str, int]], n_layer: int, overrides: Sequence[str], n_gpus: int,
                  *, tied: bool = False) -> WeightSplit:
    """``tensors`` ((name, bytes), a GGUF's) sorted by where ``overrides`` send them on a machine of ``n_gpus``.

    ``tied``: the output head is the input layer's tensors again (no output matrix in the file).
    """
    rules = []
    for entry in overrides:
        pattern, _, device = entry.partition("=")
        rules.append((re.compile(pattern), override_target(device, n_gpus)))
    layers = [0] * n_layer
    parts = {"input": 0, "output": 0}
    host, gpus, matched = 0, [0] * n_gpus, 0
    for name, size in tensors:
        part = tensor_part(name)
        places = (part, "output") if tied and part == "input" else (part,)
        target = next((t for rx, t in rules if rx.search(name)), None)  # first match wins; None: no override
        if target is not None:
            matched += len(places)
            if target == HOST:
                host += size * len(places)
            else:
                gpus[target] += size * len(places)
            continue
        for place in places:
            if isinstance(place, int):
                layers[place] += size if place < n_layer else 0
            else:
                parts[place] += size
    return WeightSplit(layer_weights=tuple(layers), output_weights=parts["output"], input_weights=parts["input"],
                       host_pinned=host, gpu_pinned=tuple(gpus), matched=matched)


def model_cost(header: GgufHeader, fit_devices: Sequence[wire.DeviceMemory], overrides: Sequence[str],
               n_gpus: int) -> ModelCost:
    """The ``ModelCost`` of ``header``'s model with ``overrides`` applied, sized by the runner's fit report.

    Without overrides, or with a header that lists no tensors, every weight follows its layer.
    """
    tied = header.output_bytes * 100 < header.input_bytes  # no output matrix: the embeddings serve again
    if overrides and header.tensors:
        split = split_weights(header.tensors, header.n_layer, overrides, n_gpus, tied=tied)
    else:
        output = header.output_bytes + (header.input_bytes if tied else 0)
        split = WeightSplit(layer_weights=header.layer_bytes, output_weights=output,
                            input_weights=header.input_bytes)
    cost = cost_from_fit(header.n_layer, split.layer_weights, split.output_weights, split.input_weights,
                         fit_devices)
    return dataclasses.replace(cost, host_pinned=split.host_pinned, gpu_pinned=split.gpu_pinned)
