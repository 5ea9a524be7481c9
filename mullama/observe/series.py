"""Serving over time, for charts: one sample a second, kept in memory (``GET /internal/stats``).

``/metrics`` answers "how much so far"; a dashboard or a notebook wants "how it went": tokens per
second, time to first token and queue depth, second by second, from before the page was opened.
``Series`` keeps that: the supervisor's sampler calls ``sample`` once per ``interval`` with the queue,
the memory and each runner's token counters (prompt tokens in, tokens out: counted by the runner as it
decodes, so a long generation shows as the steady rate it is, not as a burst when it ends), and every
finished request is told to ``request_done``. Rates are over the time since the previous sample;
latency percentiles are over the requests that finished in the last ``window`` seconds (None when
none did), so a quiet minute shows as a gap rather than a stale number.
Bounded: ``keep`` samples (an hour at the default interval) and the requests of one window.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from typing import Any

INTERVAL_S = 1.0
KEEP = 3600
WINDOW_S = 30.0


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending list; None for an empty one."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Series:
    def __init__(self, *, interval: float = INTERVAL_S, keep: int = KEEP, window: float = WINDOW_S) -> None:
        self.interval = interval
        self.window = window
        self.samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(1, keep))
        self._done: collections.deque[tuple[float, float | None, float | None]] = collections.deque()
        self._requests = 0
        self._last_mono: float | None = None
        self._counters: dict[str, tuple[int, int]] = {}  # model -> (tokens in, tokens out) at the last sample

    def request_done(self, mono: float, profile: Mapping[str, Any]) -> None:
        """A finished request (its X-Profile); ``mono`` is when it finished (time.monotonic())."""
        completion = int(profile.get("completion_tokens") or 0)
        self._requests += 1
        ttft = float(profile.get("time_to_first_token_ms") or 0.0) if completion >= 1 else None
        itl = float(profile.get("inter_token_ms_p50") or 0.0) if completion >= 2 else None
        self._done.append((mono, ttft, itl))

    def sample(self, wall: float, mono: float, *, running: int, waiting: int, memory: Mapping[str, int],
               counters: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
        """Close the current interval: its rates, the window's percentiles, the queue and memory now.

        ``counters``: each serving runner's cumulative (prompt tokens in, tokens out). A runner that was
        not asked this time keeps its last values; one whose counts went down is a new process."""
        prompt_tokens = tokens = 0
        for model, (tin, tout) in counters.items():
            last_in, last_out = self._counters.get(model, (0, 0))
            if tin < last_in or tout < last_out:  # a restarted runner counts from zero
                last_in = last_out = 0
            prompt_tokens += tin - last_in
            tokens += tout - last_out
            self._counters[model] = (tin, tout)
        elapsed = mono - self._last_mono if self._last_mono is not None else self.interval
        elapsed = max(elapsed, 1e-3)
        self._last_mono = mono
        while self._done and self._done[0][0] < mono - self.window:
            self._done.popleft()
        ttfts = sorted(t for _, t, _ in self._done if t is not None)
        itls = sorted(i for _, _, i in self._done if i is not None)
        row = {
            "t": round(wall, 3),
            "tokens_per_s": round(tokens / elapsed, 2),
            "prompt_tokens_per_s": round(prompt_tokens / elapsed, 2),
            "requests_per_s": round(self._requests / elapsed, 3),
            "ttft_ms_p50": _round(percentile(ttfts, 50)), "ttft_ms_p95": _round(percentile(ttfts, 95)),
            "itl_ms_p50": _round(percentile(itls, 50)), "itl_ms_p95": _round(percentile(itls, 95)),
            "running": running, "waiting": waiting, "memory": dict(memory),
        }
        self._requests = 0
        self.samples.append(row)
        return row

    def forget(self, model: str) -> None:
        """A runner that stopped: its next one counts from zero."""
        self._counters.pop(model, None)

    def since(self, t: float | None = None) -> list[dict[str, Any]]:
        """Samples taken after epoch second ``t`` (all of them for None), oldest first."""
        if t is None:
            return list(self.samples)
        return [s for s in self.samples if s["t"] > t]

    def describe(self, since: float | None = None) -> dict[str, Any]:
        return {"interval_s": self.interval, "window_s": self.window, "samples": self.since(since)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
