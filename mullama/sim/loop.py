"""Simulated time: a heap of (time, order, callback). Nothing sleeps; ``run`` jumps from event to event."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class Loop:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self.events = 0

    def at(self, t: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` at simulated second ``t`` (never before now); same-time events run in the order added."""
        heapq.heappush(self._heap, (max(t, self.now), next(self._order), fn))

    def after(self, dt: float, fn: Callable[[], None]) -> None:
        self.at(self.now + dt, fn)

    def run(self, until: float | None = None) -> None:
        while self._heap and (until is None or self._heap[0][0] <= until):
            self.now, _, fn = heapq.heappop(self._heap)
            self.events += 1
            fn()
