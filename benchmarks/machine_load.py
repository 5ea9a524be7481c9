"""Machine load probes for the benchmarks: /proc/stat CPU ticks, the share of CPU other
processes use while a side runs, waiting for a quiet machine, load average and CPU pressure.

Split from ``engine_vs_llama_bench.py``; import with ``benchmarks/`` on sys.path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def cpu_times() -> dict[str, int]:
    """Aggregate /proc/stat CPU ticks (user, nice, system, idle, iowait, irq, softirq, steal)."""
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
        names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
        return dict(zip(names, map(int, parts)))
    except (OSError, ValueError, IndexError):
        return {}


def busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far."""
    t = cpu_times()
    if not t:
        return 0, 0
    total = sum(t.values())
    return total - t["idle"] - t["iowait"], total


def own_ticks() -> float:
    """CPU ticks used by this process and its waited-for children (llama-bench)."""
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Share of the machine's CPU time that other processes used between start() and stop(), in %."""

    def start(self) -> None:
        self.b0, self.t0 = busy_ticks()
        self.o0 = own_ticks()

    def stop(self) -> float:
        b1, t1 = busy_ticks()
        total = t1 - self.t0
        if total <= 0:
            return float("nan")
        return max(0.0, (b1 - self.b0 - (own_ticks() - self.o0)) / total * 100)


def wait_quiet(threshold: float, timeout: float) -> float:
    """Wait until the machine is at most `threshold` % busy over one second (or `timeout` s passed).

    Returns the busy % of the last one-second sample.
    """
    deadline = time.monotonic() + timeout
    while True:
        b0, t0 = busy_ticks()
        time.sleep(1.0)
        b1, t1 = busy_ticks()
        busy = (b1 - b0) / (t1 - t0) * 100 if t1 > t0 else 0.0
        if busy <= threshold or time.monotonic() >= deadline:
            return busy
        time.sleep(2.0)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_pressure() -> str:
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""
