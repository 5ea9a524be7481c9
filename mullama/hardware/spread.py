"""Placement over RPC workers too: what does not fit this machine goes to remote devices.

``plan_spread`` wraps ``placement.plan``, pure like it. Remote devices are devices (llama.cpp's RPC
backend makes a worker's CPU or GPU one), with these rules on top:

* **Local first.** The plan on this machine alone (its GPUs, then host memory up to ``ram_budget``) wins
  when it fits; workers are used only for what does not, so a model that fits pays no network round trips.
* **Layer order.** llama.cpp puts RPC devices *before* local GPUs in its device list and gives device 0
  the earliest offloaded layers, so a spread model is: host (input layer, layers ``0 .. h-1``), the
  workers (the next layers, the first worker the earliest), local GPUs (the last layers and the output
  head). With no local GPU the last worker holds the output head, and its compute buffer.
* **As little remote as needed.** Local GPUs take what they would alone (``placement.balance``); the host
  keeps as many of the remaining layers as its limit allows; the rest is balanced over the workers by
  their free memory (the same smallest-capacity-factor search as over GPUs), each worker that holds a
  layer paying a compute buffer. No reserve is kept on a worker beyond what it reports free (its
  operator limits that with ``mullama rpc-worker --mem``).
* Overrides (``n_gpu_layers``, ``tensor_split``) and ``require_full`` keep their local meaning: they
  never spill to workers (``require_full`` asks "does it fit here without spilling?").
* A refusal names every device it counted and every configured worker it could not use.
"""

from __future__ import annotations

from collections.abc import Sequence

from mullama.core.errors import NoFit
from mullama.core.units import format_size
from mullama.hardware.devices import Devices
from mullama.hardware.placement import ModelCost, Placement, balance, plan


def plan_spread(cost: ModelCost, devices: Devices, *, n_gpu_layers: int = -1, tensor_split: Sequence[float] = (),
                require_full: bool = False, ram_budget: int | None = None, gpu_reserve: int = 256 << 20,
                model: str = "model") -> Placement:
    """``placement.plan``, then the workers for what does not fit; NoFit names the devices counted."""
    try:
        return plan(cost, devices, n_gpu_layers=n_gpu_layers, tensor_split=tensor_split, require_full=require_full,
                    ram_budget=ram_budget, gpu_reserve=gpu_reserve, model=model)
    except NoFit as exc:
        local_refusal = str(exc)
    if not devices.remote and not devices.remote_skipped:
        raise NoFit(local_refusal)
    if not devices.remote or n_gpu_layers >= 0 or any(tensor_split) or require_full:
        raise NoFit(f"{local_refusal}; {counted(devices, ram_budget, gpu_reserve)}")
    return _spill(cost, devices, ram_budget, gpu_reserve, model)


def _host_limit(devices: Devices, ram_budget: int | None) -> int:
    return devices.host.available if ram_budget is None else min(ram_budget, devices.host.available)


def counted(devices: Devices, ram_budget: int | None, gpu_reserve: int) -> str:
    """'counted: host ..., GPU 0 ..., RPC ...; not counted: ...' for a refusal."""
    host = _host_limit(devices, ram_budget)
    parts = [f"host {format_size(host)}" + (" (ram_budget)" if ram_budget is not None else "")]
    parts += [f"GPU {g.index} {format_size(max(0, g.free - gpu_reserve))}" for g in devices.gpus]
    parts += [f"RPC {d.label} {format_size(d.free)}" for d in devices.remote]
    text = "counted: " + ", ".join(parts)
    if devices.remote_skipped:
        text += "; not counted: " + ", ".join(devices.remote_skipped)
    return text


def _spill(cost: ModelCost, devices: Devices, ram_budget: int | None, gpu_reserve: int, model: str) -> Placement:
    units = cost.units()
    gpus, remote = devices.gpus, devices.remote
    usable = tuple(max(0, g.free - gpu_reserve) for g in gpus)
    local = balance(units, usable, cost.compute_gpu, cost.pinned_on(len(gpus))) if gpus else ()
    rest = len(units) - sum(local)
    limit = _host_limit(devices, ram_budget)
    fixed = cost.input_weights + cost.compute_cpu + cost.host_pinned
    if fixed > limit:
        raise NoFit(f"{model}: its input layer and compute buffer alone need {format_size(fixed)} of host memory "
                    f"but {format_size(limit)} is there; {counted(devices, ram_budget, gpu_reserve)}")
    kept, used = 0, fixed
    while kept < rest and used + units[kept] <= limit:
        used += units[kept]
        kept += 1
    free = tuple(d.free for d in remote)
    far = balance(units[kept:rest], free, cost.compute_gpu, (0,) * len(remote))
    if sum(far) < rest - kept:
        need = sum(units[kept:rest]) + cost.compute_gpu * max(1, sum(1 for c in far if c))
        raise NoFit(f"{model}: {rest - kept} layers ({format_size(need)} with a compute buffer) do not fit this "
                    f"machine and only {sum(far)} fit the RPC workers ({format_size(sum(free))} free there); "
                    f"{counted(devices, ram_budget, gpu_reserve)}")
    return _placement(cost, devices, kept, far, local)


def _placement(cost: ModelCost, devices: Devices, kept: int, far: Sequence[int], local: Sequence[int]) -> Placement:
    units = cost.units()
    used = {d.endpoint for d, c in zip(devices.remote, far) if c}
    remote = [(d, c) for d, c in zip(devices.remote, far) if d.endpoint in used]  # a used worker's every device
    blocks, start = [], kept
    for c in [c for _, c in remote] + list(local):
        blocks.append(units[start:start + c])
        start += c
    remote_bytes = tuple(sum(b) + cost.compute_gpu if b else 0 for b in blocks[:len(remote)])
    pinned = cost.pinned_on(len(devices.gpus))
    gpu_bytes = tuple(sum(b) + p + cost.compute_gpu if b or p else 0 for b, p in zip(blocks[len(remote):], pinned))
    counts = [c for _, c in remote] + list(local)
    return Placement(
        n_gpu_layers=sum(counts), tensor_split=tuple(float(c) for c in counts) if len(counts) >= 2 else (),
        layers_per_gpu=tuple(local), gpu_bytes=gpu_bytes,
        cpu_bytes=sum(units[:kept]) + cost.input_weights + cost.compute_cpu + cost.host_pinned,
        output_on_gpu=True, n_layer=cost.n_layer, pinned_cpu_bytes=cost.host_pinned,
        remote_devices=tuple(d.label for d, _ in remote), remote_layers=tuple(c for _, c in remote),
        remote_bytes=remote_bytes, rpc_servers=tuple(dict.fromkeys(d.endpoint for d, _ in remote)))
