"""Predictive prefetch: guess which model the next request will want, so it can be loaded ahead of time.

When models swap in and out of a memory budget, the first request after a switch pays the whole swap
(unload the old runner, start and load the new one). Traffic is often regular: a chat UI alternates
between a drafting model and a reviewing model, an agent calls the same two models in turn. A
predictor watches the sequence of requested models and, when the current model has gone idle, names
the model most likely to be asked for next; the lifecycle (``lifecycle.py``) loads it
(reason ``"prefetch"``) if the predictor is confident enough (``prefetch_min_confidence``).

A predictor is pure: no asyncio, no I/O, no clocks, no logging; the supervisor calls ``observe`` for
every generation request and ``predict`` when a model goes idle. Built-ins (``PREDICTORS``):
``markov``. ``make_predictor`` turns the ``prefetch`` setting (``"none"``, a built-in name, or
``package.module:Class``) into an instance.

``Prefetcher`` drives it: it feeds every requested model to the predictor; once the server has been
idle for ``prefetch_idle`` seconds it asks for the likely next model and loads it -- evicting idle
models only when the prediction's confidence reaches ``prefetch_min_confidence``, and using free
memory only at half that.
"""

from __future__ import annotations

import asyncio
import difflib
import math
import time
import types
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from mullama.core import errors
from mullama.core.errors import ConfigError
from mullama.core.plugins import load_class_instance

if TYPE_CHECKING:
    from mullama.models.entry import ModelEntry
    from mullama.serving.lifecycle import Lifecycle

log = structlog.get_logger("mullama.swapping")

#: Decimal places kept for the (possibly decayed) weights and probabilities that ``snapshot`` shows.
SNAPSHOT_DIGITS = 6


class Predictor(Protocol):
    """What the supervisor calls; a custom predictor is any class with these, built with no arguments."""

    name: str

    def observe(self, model: str) -> None:
        """A request for ``model`` arrived (called for every generation request, in arrival order)."""

    def predict(self, current: str) -> tuple[str, float] | None:
        """The most likely next model other than ``current`` and its probability; None without evidence."""

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view for ``GET /internal/models``: at least ``name``."""


class MarkovPredictor:
    """A first-order Markov chain over model *switches*.

    Consecutive requests for the same model are collapsed: the chain learns "after a run of A comes
    B", not "after A comes A" (which would drown every switch in self-loops and is no use to a
    prefetcher anyway: the current model is already loaded). ``predict(current)`` is the successor
    with the largest weight among the switches observed out of ``current``, with probability
    ``weight(current -> next) / weight(current -> *)``; ties go to the alphabetically first name so
    the answer never depends on dict order.

    ``min_observations``: how many switches out of ``current`` must have been seen before it predicts
    at all; one switch is an anecdote, and a wrong prefetch evicts a model someone may still want.

    ``decay`` (0 < decay <= 1, default 1.0: no decay): each new switch out of A first multiplies A's
    existing outgoing weights by ``decay``, then adds 1 to the switch just seen. The weight of a
    switch seen k switches-out-of-A ago is ``decay**k``, so when the traffic changes (A used to be
    followed by B, now by C) the chain follows it after a few switches instead of being outvoted by
    the whole history. Decay is per source model, counted in switches, not in time: a model that is
    rarely left keeps its evidence however busy the others are. ``min_observations`` counts raw
    switches, not decayed weight.

    Memory: one weight per observed (from, to) pair of model names; the supervisor observes only
    resolved catalog names, so this is bounded by the catalog's size squared.
    """

    name = "markov"

    def __init__(self, *, min_observations: int = 2, decay: float = 1.0) -> None:
        if (isinstance(min_observations, bool) or not isinstance(min_observations, int)
                or min_observations < 1):
            raise ConfigError(f"prefetch: min_observations must be an integer >= 1, got {min_observations!r}")
        if (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay)
                or not 0.0 < decay <= 1.0):
            raise ConfigError(f"prefetch: decay must be a number in (0, 1] (1 = no decay), got {decay!r}")
        self.min_observations = min_observations
        self.decay = float(decay)
        self.last: str | None = None             # the model of the current run
        self.requests = 0                         # every observe() call
        self._weights: dict[str, dict[str, float]] = {}  # from -> to -> (decayed) switch count
        self._switches: dict[str, int] = {}       # from -> raw number of switches out of it

    def observe(self, model: str) -> None:
        self.requests += 1
        previous, self.last = self.last, model
        if previous is None or previous == model:
            return  # the first request, or the same run going on
        row = self._weights.setdefault(previous, {})
        if self.decay != 1.0:
            for to in row:
                row[to] *= self.decay
        row[model] = row.get(model, 0.0) + 1.0
        self._switches[previous] = self._switches.get(previous, 0) + 1

    def predict(self, current: str) -> tuple[str, float] | None:
        if self._switches.get(current, 0) < self.min_observations:
            return None
        row = {to: w for to, w in self._weights.get(current, {}).items() if to != current and w > 0.0}
        total = sum(row.values())
        if not row or total <= 0.0:
            return None
        best = min(row, key=lambda to: (-row[to], to))  # largest weight; ties: alphabetically first
        return best, row[best] / total

    def snapshot(self) -> dict[str, Any]:
        models = sorted(set(self._weights) | {to for row in self._weights.values() for to in row}
                        | ({self.last} if self.last is not None else set()))
        predictions: dict[str, dict[str, Any] | None] = {}
        for model in models:
            guess = self.predict(model)
            predictions[model] = (None if guess is None else
                                  {"model": guess[0], "confidence": round(guess[1], SNAPSHOT_DIGITS)})
        return {
            "name": self.name,
            "min_observations": self.min_observations,
            "decay": self.decay,
            "last": self.last,
            "requests": self.requests,
            "switches": dict(sorted(self._switches.items())),
            "transitions": {src: {to: round(w, SNAPSHOT_DIGITS) for to, w in sorted(row.items())}
                            for src, row in sorted(self._weights.items())},
            "predictions": predictions,
        }


PREDICTORS: Mapping[str, type[MarkovPredictor]] = types.MappingProxyType(
    {MarkovPredictor.name: MarkovPredictor})
DISABLED = "none"

_REQUIRED = ("observe", "predict", "snapshot")


def make_predictor(spec: str) -> Predictor | None:
    """A new predictor from the ``prefetch`` setting; None for ``"none"`` (prefetch off).

    Names ignore case and surrounding blanks. A custom ``package.module:Class`` is imported, called
    with no arguments and checked for a ``name`` string and the ``observe``/``predict``/``snapshot``
    methods. Any failure is a ``ConfigError`` that names the spec and what went wrong.
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if not text:
        raise ConfigError(f"prefetch: expected 'none', a predictor name ({_known()}) or "
                          f"'package.module:Class', got {spec!r}")
    if ":" not in text:
        name = text.lower()
        if name == DISABLED:
            return None
        if name in PREDICTORS:
            return PREDICTORS[name]()
        match = difflib.get_close_matches(name, [DISABLED, *sorted(PREDICTORS)], n=1, cutoff=0.6)
        hint = (f" (did you mean {match[0]!r}?)" if match else
                " (a custom predictor is written 'package.module:Class')" if "." in text else "")
        raise ConfigError(f"prefetch: unknown predictor {text!r}{hint}; known: 'none', {_known()}, "
                          "or 'package.module:Class'")
    return _load(text)


def _load(path: str) -> Predictor:
    return load_class_instance(path, setting="prefetch", kind="predictor", methods=_REQUIRED,
                               doc="a predictor has a 'name' string and observe, predict and snapshot methods")


def _known() -> str:
    return ", ".join(repr(n) for n in PREDICTORS)


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
            self.idle_s, lambda: self._lifecycle.spawn(self._prefetch()))

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
