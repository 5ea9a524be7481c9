"""The memory phase profile: RSS (and VRAM where NVML sees a GPU) of each server process at start,
after load, during one request and during concurrent requests.

"start" and "after load" are one reading each; the two request phases are the peak of readings
every 50 ms while the requests run. Processes come from ``Target.pids()``: mullama's supervisor
and each runner, or llama-server's one process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import psutil

PHASES = ("start", "after load", "one request", "concurrent")
MiB = 2**20


def rss(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def vram_by_pid() -> dict[int, int] | None:
    """GPU memory per pid over every NVML device; None without NVML or a GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver / no GPU: the NVML error classes vary by version
        return None
    out: dict[int, int] = {}
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                out[p.pid] = out.get(p.pid, 0) + (p.usedGpuMemory or 0)
        return out
    except Exception:  # noqa: BLE001
        return out
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def reading(pids: dict[str, int]) -> dict[str, dict[str, int | None]]:
    vram = vram_by_pid()
    return {
        label: {"rss": rss(pid), "vram": (vram.get(pid, 0) if vram is not None else None)}
        for label, pid in pids.items()
    }


def _peak(into: dict[str, dict[str, Any]], r: dict[str, dict[str, Any]]) -> None:
    for label, vals in r.items():
        cur = into.setdefault(label, {"rss": None, "vram": None})
        for k, v in vals.items():
            if v is not None and (cur[k] is None or v > cur[k]):
                cur[k] = v


async def peak_during(pids_of, work: Awaitable, interval: float = 0.05) -> dict[str, dict[str, Any]]:
    """Peak reading per process while ``work`` runs; ``pids_of()`` is asked on every tick (runners come
    and go)."""
    peak: dict[str, dict[str, Any]] = {}
    task = asyncio.ensure_future(work)
    while not task.done():
        _peak(peak, await asyncio.to_thread(lambda: reading(pids_of())))  # pids_of may ask the server
        await asyncio.wait([task], timeout=interval)
    await task
    _peak(peak, reading(pids_of()))
    return peak


def table(profiles: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> str:
    """Markdown: one row per phase; per target, its processes' RSS (MiB) and their sum (+ VRAM)."""
    cols: list[tuple[str, str]] = []
    for target, phases in profiles.items():
        labels: list[str] = []
        for ph in PHASES:
            labels += [x for x in phases.get(ph, {}) if x not in labels]
        cols += [(target, x) for x in labels]
        if len(labels) > 1:
            cols.append((target, "total"))
    any_vram = any(v.get("vram") for ph in profiles.values() for r in ph.values() for v in r.values())
    head = "| phase | " + " | ".join(f"{t}: {x} RSS MiB" for t, x in cols)
    head += " | " + " | ".join(f"{t} VRAM MiB" for t in profiles) if any_vram else ""
    lines = [head + " |", "|---|" + "---:|" * (len(cols) + (len(profiles) if any_vram else 0))]
    for ph in PHASES:
        cells = []
        for t, x in cols:
            r = profiles[t].get(ph)
            if r is None:
                cells.append("—")
                continue
            v = sum((r[k]["rss"] or 0) for k in r) if x == "total" else (r.get(x) or {}).get("rss")
            cells.append(f"{v / MiB:.0f}" if v else "—")
        if any_vram:
            for phases in profiles.values():
                r = phases.get(ph) or {}
                cells.append(f"{sum((v['vram'] or 0) for v in r.values()) / MiB:.0f}")
        lines.append(f"| {ph} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
