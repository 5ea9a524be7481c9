"""Where a model's layers go: how many on which GPU, what stays on the host, and whether it fits.

Pure functions over a ``ModelCost`` (bytes, from a GGUF header and the runner's
no-alloc fit report) and a ``Devices`` snapshot: no I/O, no logging, no
environment. ``plan`` returns a ``Placement`` or raises ``NoFit`` with a message
that says what did not fit and by how much.

Rules taken from upstream, and where from:

* The unit of placement is a layer. llama.cpp (``llama_model_base::load_tensors``
  in the vendored tree) numbers the repeating blocks ``0 .. n_layer-1`` and the
  output head (output norm + output matrix) ``n_layer``, and offloads the *last*
  ``n_gpu_layers`` of these ``n_layer + 1`` units: the output head is the first
  unit to go to a GPU, layer 0 the last. So ``n_gpu_layers = n_layer`` keeps
  *layer 0* on the host, not the output head, and an output head that does not
  fit on any GPU means nothing is offloaded. (Older llama.cpp moved the output
  only when ``n_gpu_layers > n_layer``; the vendored one does not, and a planner
  that believed otherwise would under-count the VRAM of the tight case.)
* The input layer (token embeddings) always stays on the host (same function:
  "there is very little benefit to offloading the input layer"). A model with
  tied embeddings loads that matrix twice: once as input, once as output.
* A layer's KV cache lives with the layer (``offload_kqv`` on), so it moves with
  it; ``kv_per_layer`` is the fit report's context bytes spread evenly over the
  repeating layers (ceil), which over-counts a little for models whose layers
  differ (sliding-window attention).
* Each GPU that holds at least one layer pays a compute buffer (``compute_gpu``);
  the host always pays ``compute_cpu``. Both come from the fit report, measured at
  the fit's own layout; the caller may re-fit with the planned layout to refine
  them, as Ollama's fit → layout → fit loop does.
* Layers are split across GPUs with ``split_mode = layer``: device 0 gets the
  earliest offloaded units, the last device the latest (and so the output head).
  ``tensor_split`` holds the layer counts per GPU as floats. llama.cpp maps unit
  ``x`` of ``n`` offloaded units to the first device whose cumulative share
  exceeds ``x / n``, so integer counts that sum to ``n_gpu_layers`` reproduce the
  plan exactly. A GPU with share 0 gets nothing, which is why ``tensor_split`` has
  one entry per GPU of the machine (zeros included) whenever there are two or
  more; an all-zero or empty split would make llama.cpp split by free memory.
* Automatic distribution is Ollama's ``findBestFit``/``greedyFit``
  (llm/server.go): fill from the last unit backwards, the last GPU first, each
  GPU up to ``f × (free − reserve)`` bytes (its compute buffer included), then the
  GPU before it; binary-search the smallest ``f`` in (0, 1] that still places the
  most units, which balances utilisation. Unlike Ollama's default this spreads
  over every GPU (Ollama's ``OLLAMA_SCHED_SPREAD``), as llama.cpp's own default
  split does.
* ``gpu_reserve`` is kept free on every GPU (llama.cpp's ``--fit`` keeps 1 GiB,
  Ollama a per-library minimum plus ``OLLAMA_GPU_OVERHEAD``).
* The host part must fit ``ram_available + swap_free`` (Ollama, Linux) and
  ``ram_budget`` when given. With ``require_full`` it must fit RAM alone, and an
  automatic plan must offload every unit: the caller is asking "would this run
  without spilling?", and the answer "no" is what lets it evict another model
  first (Ollama's ``ErrLoadRequiredFull``). On a machine without GPUs
  ``require_full`` only applies the RAM rule, since evicting cannot create a GPU.
* An explicit ``n_gpu_layers`` or ``tensor_split`` is honoured, not adjusted
  (llama.cpp's fit also steps aside when either is set): an explicit split
  without an explicit count offloads every unit, and a GPU that would be
  overfilled raises ``NoFit``. ``n_gpu_layers`` above ``n_layer + 1`` means all.
* Tensor buffer overrides (``-ot``, ``--cpu-moe``) take weights out of their layer
  whatever the layout (``hardware.overrides`` works out which): ``host_pinned``
  bytes are always on the host, ``gpu_pinned[i]`` always on GPU *i*, which then
  pays its compute buffer even with no layer; ``layer_weights`` and the head are
  what is left to follow the layers. So ``--cpu-moe`` shrinks every unit to its
  attention and KV, and more of them fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mullama import wire
from mullama.core.errors import ConfigError, NoFit
from mullama.core.units import format_size
from mullama.hardware.devices import Devices, Gpu, Host

_SEARCH_STEPS = 40  # halvings of the capacity factor: 2**-40 is far below one byte per GiB


@dataclass(frozen=True)
class ModelCost:
    """Bytes a model needs, by where they can go.

    ``output_weights`` is the output head (+ output norm); llama.cpp offloads it
    first, with any ``n_gpu_layers >= 1``. ``input_weights`` (token embeddings)
    never leaves the host. ``total`` is the footprint with everything on the host.
    """

    n_layer: int
    layer_weights: tuple[int, ...]
    kv_per_layer: int
    output_weights: int
    input_weights: int
    compute_gpu: int
    compute_cpu: int
    host_pinned: int = 0              # weights tensor overrides keep on the host, whatever the layout
    gpu_pinned: tuple[int, ...] = ()  # weights tensor overrides put on GPU i, whatever the layout

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_weights", tuple(int(w) for w in self.layer_weights))
        object.__setattr__(self, "gpu_pinned", tuple(int(w) for w in self.gpu_pinned))
        if self.n_layer < 0 or len(self.layer_weights) != self.n_layer:
            raise ValueError(f"layer_weights has {len(self.layer_weights)} entries "
                             f"for n_layer={self.n_layer}")
        sizes = (*self.layer_weights, self.kv_per_layer, self.output_weights, self.input_weights,
                 self.compute_gpu, self.compute_cpu, self.host_pinned, *self.gpu_pinned)
        if any(s < 0 for s in sizes):
            raise ValueError("ModelCost sizes must be non-negative")

    @property
    def total(self) -> int:
        return sum(self.units()) + self.input_weights + self.compute_cpu + self.host_pinned + sum(self.gpu_pinned)

    def pinned_on(self, n_gpus: int) -> tuple[int, ...]:
        """``gpu_pinned`` for a machine of ``n_gpus`` (zeros added; overrides name only GPUs it has)."""
        return (*self.gpu_pinned[:n_gpus], *(0,) * (n_gpus - len(self.gpu_pinned)))

    def units(self) -> tuple[int, ...]:
        """Offloadable units in llama.cpp's order: each repeating layer with its KV, then the output head."""
        return (*(w + self.kv_per_layer for w in self.layer_weights), self.output_weights)


def cost_from_fit(
    n_layer: int,
    layer_weights: Sequence[int],
    output_weights: int,
    input_weights: int,
    fit_devices: Sequence[wire.DeviceMemory],
) -> ModelCost:
    """A ``ModelCost`` from GGUF tensor sizes and the runner's no-alloc fit report.

    KV per layer is the report's context bytes over all devices / ``n_layer``
    (ceil). ``compute_gpu`` is the largest compute buffer of a non-CPU device; when
    the fit ran CPU-only (no such device reported one) the CPU's compute buffer
    stands in, since it was sized for the same graph. ``compute_cpu`` is the
    compute buffer of the host (type ``"cpu"``).
    """
    context = sum(d.context for d in fit_devices)
    kv = -(-context // n_layer) if n_layer > 0 else 0
    compute_cpu = sum(d.compute for d in fit_devices if d.type == "cpu")
    gpu_compute = [d.compute for d in fit_devices if d.type != "cpu" and d.compute > 0]
    return ModelCost(n_layer=n_layer, layer_weights=tuple(layer_weights), kv_per_layer=kv,
                     output_weights=output_weights, input_weights=input_weights,
                     compute_gpu=max(gpu_compute) if gpu_compute else compute_cpu, compute_cpu=compute_cpu)


@dataclass(frozen=True)
class Placement:
    """A plan: what to pass to llama.cpp and the bytes it is expected to take where.

    ``layers_per_gpu`` and ``gpu_bytes`` have one entry per GPU of the machine, in
    device order; the layer counts include the output head as a unit.
    """

    n_gpu_layers: int                 # what to pass to llama.cpp; n_layer + 1 offloads everything
    tensor_split: tuple[float, ...]   # layer counts per GPU as floats; empty with fewer than 2 GPUs
    layers_per_gpu: tuple[int, ...]
    gpu_bytes: tuple[int, ...]        # planned bytes per GPU, compute buffer included
    cpu_bytes: int                    # host: layers not offloaded + their KV + input layer + compute_cpu
    output_on_gpu: bool
    n_layer: int
    pinned_cpu_bytes: int = 0         # the part of cpu_bytes that tensor overrides keep on the host
    # RPC workers' devices (hardware/spread.py): before the GPUs in llama.cpp's device order and in tensor_split
    remote_devices: tuple[str, ...] = ()  # "host:port#index"
    remote_layers: tuple[int, ...] = ()
    remote_bytes: tuple[int, ...] = ()
    rpc_servers: tuple[str, ...] = ()     # the workers' endpoints the runner adds, in order

    @property
    def full_offload(self) -> bool:
        return self.n_gpu_layers >= self.n_layer + 1

    @property
    def cpu_layers(self) -> int:
        """Repeating layers left on the host."""
        return self.n_layer - max(0, self.n_gpu_layers - 1)

    def total_bytes(self) -> int:
        return self.cpu_bytes + sum(self.gpu_bytes) + sum(self.remote_bytes)

    def processor(self) -> str:
        """Like ``ollama ps``: ``"100% GPU"``, ``"100% CPU"``, or ``"48%/52% CPU/GPU"`` by bytes; with RPC
        workers the remote share is its own column: ``"40%/60% CPU/RPC"``, ``"10%/50%/40% CPU/GPU/RPC"``."""
        if self.remote_bytes:
            total = self.total_bytes()
            parts = [("CPU", self.cpu_bytes), ("GPU", sum(self.gpu_bytes)), ("RPC", sum(self.remote_bytes))]
            parts = [(name, max(1, round(100 * b / total))) for name, b in parts if b]
            parts[-1] = (parts[-1][0], 100 - sum(p for _, p in parts[:-1]))
            return "/".join(f"{p}%" for _, p in parts) + " " + "/".join(name for name, _ in parts)
        if self.n_gpu_layers == 0 and not any(self.gpu_bytes):
            return "100% CPU"
        if self.full_offload and not self.pinned_cpu_bytes:
            return "100% GPU"
        total = self.total_bytes()
        cpu = round(100 * self.cpu_bytes / total) if total else 50
        cpu = min(99, max(1, cpu))  # a split model never reads as all on one side
        return f"{cpu}%/{100 - cpu}% CPU/GPU"

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for the API."""
        return {
            "n_gpu_layers": self.n_gpu_layers, "tensor_split": list(self.tensor_split),
            "layers_per_gpu": list(self.layers_per_gpu), "gpu_bytes": list(self.gpu_bytes),
            "cpu_bytes": self.cpu_bytes, "pinned_cpu_bytes": self.pinned_cpu_bytes, "output_on_gpu": self.output_on_gpu,
            "full_offload": self.full_offload, "processor": self.processor(),
            "total_bytes": self.total_bytes(),
            "remote": [{"device": d, "layers": n, "bytes": b}
                       for d, n, b in zip(self.remote_devices, self.remote_layers, self.remote_bytes)],
            "rpc_servers": list(self.rpc_servers),
        }


def plan(
    cost: ModelCost,
    devices: Devices,
    *,
    n_gpu_layers: int = -1,
    tensor_split: Sequence[float] = (),
    require_full: bool = False,
    ram_budget: int | None = None,
    gpu_reserve: int = 256 << 20,
    model: str = "model",
) -> Placement:
    """Place ``cost`` on ``devices``; raises ``NoFit`` (what, how much) or ``ConfigError`` (bad arguments).

    ``n_gpu_layers=-1`` plans automatically; ``>= 0`` and a non-zero
    ``tensor_split`` are user overrides, honoured or refused. See the module
    docstring for the rules.
    """
    gpus = devices.gpus
    split = _check_args(n_gpu_layers, tensor_split, len(gpus), ram_budget, gpu_reserve)
    units = cost.units()
    usable = tuple(max(0, g.free - gpu_reserve) for g in gpus)
    pinned = cost.pinned_on(len(gpus))
    _check_pinned(cost, gpus, usable, model, gpu_reserve)
    wanted = len(units) if n_gpu_layers < 0 else min(n_gpu_layers, len(units))

    if not gpus or wanted == 0:
        counts = (0,) * len(gpus)
    elif split:
        counts = _counts_from_split(split, wanted)
        _check_split(cost, gpus, usable, counts, split, model, gpu_reserve)
    else:
        counts = balance(units[len(units) - wanted:], usable, cost.compute_gpu, pinned)
        if n_gpu_layers >= 0 and sum(counts) < wanted:
            raise NoFit(_vram_short(f"{model} with n_gpu_layers={n_gpu_layers}:", cost, usable, counts,
                                    wanted, gpu_reserve))

    placement = _placement(cost, len(gpus), counts)
    if require_full and gpus and n_gpu_layers < 0 and placement.n_gpu_layers < len(units):
        raise NoFit(_vram_short(f"{model} does not fit fully in VRAM:", cost, usable, counts, len(units),
                                gpu_reserve))
    _check_host(placement, devices.host, ram_budget, require_full, model)
    return placement


# ---------------------------------------------------------------- argument checks


def _check_args(n_gpu_layers: int, tensor_split: Sequence[float], n_gpus: int, ram_budget: int | None,
                gpu_reserve: int) -> tuple[float, ...]:
    """Validate the overrides; returns the split to honour (empty: none, or meaningless on < 2 GPUs)."""
    if n_gpu_layers < -1:
        raise ConfigError(f"n_gpu_layers must be -1 (automatic) or >= 0, got {n_gpu_layers}")
    if ram_budget is not None and ram_budget < 0:
        raise ConfigError(f"ram_budget must be >= 0 bytes, got {ram_budget}")
    if gpu_reserve < 0:
        raise ConfigError(f"gpu_reserve must be >= 0 bytes, got {gpu_reserve}")
    split = tuple(float(s) for s in tensor_split)
    if any(not math.isfinite(s) or s < 0 for s in split):
        raise ConfigError(f"tensor_split entries must be finite and >= 0, got {list(tensor_split)}")
    if n_gpus < 2 or not any(split):
        return ()  # llama.cpp ignores a split on one device, and splits by free memory when it is all zero
    if len(split) > n_gpus:
        raise ConfigError(f"tensor_split has {len(split)} entries but this machine has {n_gpus} GPUs")
    return split + (0.0,) * (n_gpus - len(split))


# ---------------------------------------------------------------- distribution


def _greedy(units: Sequence[int], usable: Sequence[int], compute: int, factor: float,
            pinned: Sequence[int]) -> list[int]:
    """Ollama's greedyFit: units from the back onto GPUs from the last, each up to ``factor × usable``
    (of which a GPU with pinned weights has already used those and its compute buffer)."""
    counts = [0] * len(usable)
    i = len(units) - 1
    for g in reversed(range(len(usable))):
        cap, used = factor * usable[g], pinned[g] + (compute if pinned[g] else 0)
        while i >= 0:
            need = units[i] + (compute if counts[g] == 0 and not pinned[g] else 0)
            if used + need > cap:
                break
            used += need
            counts[g] += 1
            i -= 1
        if i < 0:
            break
    return counts


def balance(units: Sequence[int], usable: Sequence[int], compute: int, pinned: Sequence[int]) -> tuple[int, ...]:
    """The most units that fit, at the smallest capacity factor that still places them all (balanced)."""
    best = _greedy(units, usable, compute, 1.0, pinned)
    target = sum(best)
    lo, hi = 0.0, 1.0
    for _ in range(_SEARCH_STEPS if target else 0):
        mid = (lo + hi) / 2
        counts = _greedy(units, usable, compute, mid, pinned)
        if sum(counts) >= target:
            hi, best, target = mid, counts, sum(counts)
        else:
            lo = mid
    return tuple(best)


def _counts_from_split(split: Sequence[float], n: int) -> tuple[int, ...]:
    """Layers per GPU as llama.cpp derives them: unit x goes to the first GPU whose cumulative share > x/n."""
    total = sum(split)
    cum = [sum(split[: j + 1]) for j in range(len(split))]
    counts = [0] * len(split)
    for x in range(n):
        j = next((j for j, c in enumerate(cum) if c * n > x * total), len(split) - 1)
        counts[j] += 1
    return tuple(counts)


def _blocks(units: Sequence[int], counts: Sequence[int]) -> list[tuple[int, ...]]:
    """The units each GPU holds: a contiguous block, device 0 the earliest offloaded."""
    start = len(units) - sum(counts)
    blocks = []
    for c in counts:
        blocks.append(tuple(units[start:start + c]))
        start += c
    return blocks


def _placement(cost: ModelCost, n_gpus: int, counts: Sequence[int]) -> Placement:
    units = cost.units()
    k = sum(counts)
    gpu_bytes = tuple(sum(b) + p + cost.compute_gpu if b or p else 0
                      for b, p in zip(_blocks(units, counts), cost.pinned_on(n_gpus)))
    return Placement(
        n_gpu_layers=k,
        tensor_split=tuple(float(c) for c in counts) if n_gpus >= 2 and k else (),
        layers_per_gpu=tuple(counts),
        gpu_bytes=gpu_bytes,
        cpu_bytes=sum(units[: len(units) - k]) + cost.input_weights + cost.compute_cpu + cost.host_pinned,
        output_on_gpu=k >= 1,
        n_layer=cost.n_layer,
        pinned_cpu_bytes=cost.host_pinned,
    )


# ---------------------------------------------------------------- refusals


def _check_split(cost: ModelCost, gpus: Sequence[Gpu], usable: Sequence[int], counts: Sequence[int],
                 split: Sequence[float], model: str, reserve: int) -> None:
    for gpu, room, block, pinned in zip(gpus, usable, _blocks(cost.units(), counts), cost.pinned_on(len(gpus))):
        need = sum(block) + pinned + cost.compute_gpu if block or pinned else 0
        if need > room:
            raise NoFit(
                f"{model}: tensor_split {list(split)} puts {len(block)} layers ({format_size(need)} with the "
                f"compute buffer) on GPU {gpu.index} ({gpu.name}) but {format_size(room)} is usable there "
                f"(free minus {format_size(reserve)} reserve); over by {format_size(need - room)}")


def _check_pinned(cost: ModelCost, gpus: Sequence[Gpu], usable: Sequence[int], model: str, reserve: int) -> None:
    for gpu, room, pinned in zip(gpus, usable, cost.pinned_on(len(gpus))):
        need = pinned + cost.compute_gpu if pinned else 0
        if need > room:
            raise NoFit(f"{model}: tensor_overrides put {format_size(pinned)} of weights on GPU {gpu.index} "
                        f"({gpu.name}), {format_size(need)} with the compute buffer, but {format_size(room)} is "
                        f"usable there (free minus {format_size(reserve)} reserve); over by {format_size(need - room)}")


def _vram_short(what: str, cost: ModelCost, usable: Sequence[int], counts: Sequence[int], wanted: int,
                reserve: int) -> str:
    """'needs X of VRAM but Y is usable; missing Z' for ``wanted`` units of which ``sum(counts)`` fit."""
    units = cost.units()
    placed = sum(counts)
    pinned = cost.pinned_on(len(usable))
    n_used = max(1, sum(1 for c, p in zip(counts, pinned) if c or p))
    need = sum(units[len(units) - wanted:]) + sum(pinned) + cost.compute_gpu * n_used
    have = sum(usable)
    missing = need - have
    why = ""
    if missing <= 0:  # enough in total, but layers cannot be split across GPUs
        missing = sum(units[len(units) - wanted: len(units) - placed])
        why = " (layers cannot be split across GPUs)"
    gpus = f"{len(usable)} GPU{'s' if len(usable) != 1 else ''}"
    return (f"{what} only {placed} of {wanted} layers fit; all {wanted} need {format_size(need)} of VRAM but "
            f"{format_size(have)} is usable on {gpus} (free minus {format_size(reserve)} reserve each); "
            f"missing {format_size(missing)}{why}")


def _check_host(p: Placement, host: Host, ram_budget: int | None, require_full: bool, model: str) -> None:
    free = host.ram_available if require_full else host.available
    limit, said = free, f"{format_size(free)} is free ({'RAM' if require_full else 'RAM + swap'})"
    if ram_budget is not None and ram_budget < free:
        limit, said = ram_budget, f"the RAM budget is {format_size(ram_budget)}"
    if p.cpu_bytes <= limit:
        return
    n = p.cpu_layers
    what = f"{n} CPU layer{'s' if n != 1 else ''}" if n else "its input layer and compute buffer"
    raise NoFit(f"{model} needs {format_size(p.cpu_bytes)} of host memory for {what} but {said}; "
                f"short by {format_size(p.cpu_bytes - limit)}")
