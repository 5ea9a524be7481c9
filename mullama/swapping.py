"""Moving models in ahead of demand: quantisation hot-swap and predictive prefetch.

``Variants`` holds which variant of a family serves requests that name only
the family (``smollm2`` / ``smollm2:latest`` / an alias of the family), and
switches it: the new variant loads while the old one keeps serving when the
memory allows both (the old one is protected from eviction during that load);
otherwise the switch flips first, the old variant drains and unloads, and the
new one loads. Either way new requests move over atomically at the flip and
requests already running finish on the old variant: no request fails.

``Prefetcher`` feeds every requested model to a predictor
(``prefetch.py``); once the server has been idle for ``prefetch_idle``
seconds it asks for the likely next model and loads it -- evicting idle
models only when the prediction's confidence reaches
``prefetch_min_confidence``, and using free memory only at half that.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from mullama import errors
from mullama.catalog import Catalog, ModelEntry
from mullama.lifecycle import Lifecycle

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
                    life._spawn(life.unload(old_rt, reason=f"swapped_out:{new.name}"))  # noqa: SLF001
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


class Prefetcher:
    def __init__(self, predictor: Any, lifecycle: Lifecycle, resolve: Callable[[str], ModelEntry],
                 busy: Callable[[], bool], emit: Callable[..., None], *, idle_s: float, min_confidence: float) -> None:
        self.predictor = predictor
        self._lifecycle, self._resolve, self._busy, self._emit = lifecycle, resolve, busy, emit
        self.idle_s, self.min_confidence = idle_s, min_confidence
        self._last: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=64)

    def observe(self, model: str) -> None:
        """A request for ``model`` arrived."""
        self._cancel()
        self._last = model
        if self.predictor is not None:
            self.predictor.observe(model)

    def idle(self) -> None:
        """A request ended: (re)start the idle timer; it prefetches only if nothing runs when it fires."""
        if self.predictor is None or self._last is None:
            return
        self._cancel()
        self._timer = asyncio.get_running_loop().call_later(
            self.idle_s, lambda: self._lifecycle._spawn(self._prefetch()))  # noqa: SLF001

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _prefetch(self) -> None:
        self._timer = None
        current = self._last
        if current is None or self._busy() or self._lifecycle.closing:
            return
        guess = self.predictor.predict(current)
        if guess is None:
            return
        target, confidence = guess
        if confidence < self.min_confidence / 2:
            return
        try:
            entry = self._resolve(target)
        except errors.MullamaError:
            return
        rt = self._lifecycle.runtime(entry)
        if rt.serving or (rt.load_task is not None and not rt.load_task.done()):
            return
        may_evict = confidence >= self.min_confidence
        protect = frozenset() if may_evict else frozenset(r.name for r in self._lifecycle.loaded())
        record = {"model": entry.name, "from": current, "confidence": round(confidence, 3), "evict": may_evict,
                  "at": time.time()}
        self._emit("prefetch", model=entry.name, **{"from": current}, confidence=record["confidence"],
                   evict=may_evict)
        try:
            await self._lifecycle.ensure_loaded(rt, reason="prefetch", protect=protect)
            record["ok"] = True
        except errors.MullamaError as exc:
            record.update(ok=False, error=str(exc))
            log.info("prefetch_skipped", model=entry.name, reason=str(exc))
        self.history.append(record)

    def snapshot(self) -> dict[str, Any]:
        return {"predictor": self.predictor.snapshot() if self.predictor is not None else None,
                "idle_s": self.idle_s, "min_confidence": self.min_confidence, "last": self._last,
                "history": list(self.history)}
