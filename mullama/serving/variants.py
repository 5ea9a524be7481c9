"""Quantisation hot-swap: which variant of a family serves, and switching it without failing a request.

``Variants`` holds which variant of a family serves requests that name only
the family (``smollm2`` / ``smollm2:latest`` / an alias of the family), and
switches it: the new variant loads while the old one keeps serving when the
memory allows both (the old one is protected from eviction during that load);
otherwise the switch flips first, the old variant drains and unloads, and the
new one loads. Either way new requests move over atomically at the flip and
requests already running finish on the old variant: no request fails.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from mullama.core import errors
from mullama.models.catalog import Catalog, ModelEntry
from mullama.serving.lifecycle import Lifecycle

log = structlog.get_logger("mullama.swapping")


class Variants:
    def __init__(self, lifecycle: Lifecycle, catalog: Callable[[], Catalog], aliases: dict[str, str],
                 emit: Callable[..., None]) -> None:
        self._lifecycle, self._catalog, self._aliases, self._emit = lifecycle, catalog, aliases, emit
        self.serving: dict[str, str] = {}      # family -> variant chosen at run time
        self.history: deque[dict[str, Any]] = deque(maxlen=64)
        self._switching: set[str] = set()

    def route(self, name: str, entry: ModelEntry) -> ModelEntry:
        """The entry a request for ``name`` (resolved to ``entry``) goes to, after run-time switches."""
        variant = self.serving.get(entry.family)
        if variant is None or entry.variant == variant:
            return entry
        base = name.lower().removesuffix(":latest")
        if base != entry.family and self._aliases.get(base, "").lower() != entry.family:
            return entry  # the client named this exact variant
        return self._catalog().resolve(f"{entry.family}:{variant}")

    def current(self, family: str) -> ModelEntry:
        catalog = self._catalog()
        variant = self.serving.get(family)
        return catalog.resolve(f"{family}:{variant}") if variant else catalog.default_variant(family)

    async def switch(self, family: str, variant: str) -> dict[str, Any]:
        catalog = self._catalog()
        new = catalog.resolve(f"{family}:{variant}")
        if new.family != family:
            raise errors.InvalidArgument(f"{family}:{variant} resolves to {new.name}, which is not of family {family}")
        if family in self._switching:
            raise errors.InvalidState(f"a variant switch of {family} is already in progress")
        old = self.current(family)
        if old.name == new.name:
            return {"family": family, "variant": new.variant, "model": new.name, "previous": old.name,
                    "mode": "unchanged", "swap_ms": 0.0}
        self._switching.add(family)
        t0 = time.perf_counter()
        life = self._lifecycle
        old_rt, new_rt = life.runtimes.get(old.name), life.runtime(new)
        self._emit("swap_started", family=family, model=new.name, replaced=old.name)
        try:
            mode = "parallel"
            try:
                await life.ensure_loaded(new_rt, reason="swap",
                                         protect=frozenset({old.name}) if old_rt and old_rt.serving else frozenset())
            except errors.NoFit:
                mode = "drain"  # both do not fit: flip, drain the old one, load the new one
            self.serving[family] = new.variant
            if old_rt is not None and old_rt.serving:
                if mode == "drain":
                    await life.unload(old_rt, reason=f"swapped_out:{new.name}")
                else:
                    life.spawn(life.unload(old_rt, reason=f"swapped_out:{new.name}"))
            if mode == "drain":
                await life.ensure_loaded(new_rt, reason="swap")
        finally:
            self._switching.discard(family)
        record = {"family": family, "variant": new.variant, "model": new.name, "previous": old.name, "mode": mode,
                  "swap_ms": round((time.perf_counter() - t0) * 1000, 1), "at": time.time()}
        self.history.append(record)
        life.counters["swaps"] += 1
        self._emit("swap", model=new.name, replaced=old.name, family=family, mode=mode, swap_ms=record["swap_ms"])
        log.info("variant_switched", **{k: v for k, v in record.items() if k != "at"})
        return record
