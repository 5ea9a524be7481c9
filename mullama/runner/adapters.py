"""The runner's LoRA adapters: the ones its model is loaded with, loading and unloading them at run time,
and the adapter set of a request (by id, as llama-server takes it, or by name).

The C++ Batcher keeps the registry and applies the sets (runner_ext/lora.h); this module is the wire side.
"""

from __future__ import annotations

import asyncio
import math

from mullama import _engine, wire
from mullama.core.errors import InvalidArgument, RequestNotFound


def infos(batcher: _engine.Batcher) -> list[wire.AdapterInfo]:
    return [wire.AdapterInfo(id=a.id, name=a.name, path=a.path, scale=a.scale, alpha=a.alpha, in_use=a.in_use)
            for a in batcher.adapters()]


async def add(batcher: _engine.Batcher, spec: wire.AdapterSpec) -> wire.AdapterInfo:
    """Load ``spec`` (off the event loop: it reads the file and waits for the decode step in progress)."""
    if not math.isfinite(spec.scale):
        raise InvalidArgument("adapter scale must be a finite number")
    adapter_id = await asyncio.to_thread(batcher.add_adapter, spec.path, spec.name, spec.scale)
    added = next((a for a in infos(batcher) if a.id == adapter_id), None)
    if added is None:  # a DELETE of it came in while it loaded
        raise RequestNotFound(f"LoRA adapter {adapter_id} ({spec.path}) was unloaded as soon as it was loaded")
    return added


def request_set(batcher: _engine.Batcher, refs: list[wire.LoraRef] | None) -> list[tuple[int, float]] | None:
    """``refs`` as (id, scale) pairs for ``Batcher.submit``; None (every adapter at its default scale) stays None.
    An id that is not loaded is refused by the Batcher itself."""
    if refs is None:
        return None
    names = {a.name: a.id for a in batcher.adapters()} if any(r.name is not None for r in refs) else {}
    pairs = []
    for i, ref in enumerate(refs):
        if (ref.id is None) == (ref.name is None):
            raise InvalidArgument(f"lora[{i}]: give either 'id' or 'name'")
        if not math.isfinite(ref.scale):
            raise InvalidArgument(f"lora[{i}].scale: expected a finite number")
        if ref.name is not None and ref.name not in names:
            loaded = ", ".join(sorted(names)) or "none"
            raise InvalidArgument(f"lora[{i}]: no adapter named {ref.name!r} is loaded (loaded: {loaded})")
        pairs.append((names[ref.name] if ref.name is not None else ref.id, ref.scale))
    return pairs
