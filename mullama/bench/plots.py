"""PNG plots of a run (matplotlib, Agg backend: no display needed).

* ``throughput.png``: completion tok/s against concurrency, one line per configuration (closed-loop
  phases at their client count; open-loop phases at their mean number of requests in flight).
* ``ttft_cdf.png``: the distribution of time to first token, one curve per configuration × phase.
* ``timeline.png``: model residency over the run (loading, ready), swaps and each request's span,
  from ``/internal/models`` history and the request records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def throughput(summaries: dict[str, dict[str, dict]], phases: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for config, ph in summaries.items():
        pts = []
        for label, s in ph.items():
            c = phases.get(label)
            x = c if c is not None else s.get("mean_in_flight")
            if x is not None and s.get("tok_s") is not None:
                pts.append((x, s["tok_s"]))
        pts.sort()
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=config)
    ax.set_xlabel("concurrency (clients, or mean requests in flight)")
    ax.set_ylabel("completion tokens / s")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput vs concurrency")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def ttft_cdf(records: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups: dict[str, list[float]] = {}
    for r in records:
        if r["ttft_ms"] is not None and not r["cancelled"]:
            groups.setdefault(f"{r['config']} {r['phase']}", []).append(r["ttft_ms"])
    for label, xs in groups.items():
        xs.sort()
        ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)
    ax.set_xlabel("time to first token (ms)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of requests")
    ax.set_title("TTFT CDF")
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=7)
    return _save(fig, path)


def residency(models_view: dict | None, t0: float, t1: float) -> dict[str, list[tuple[float, float, str]]]:
    """Per model, (start, end, state) spans relative to ``t0`` (wall seconds), clipped to [t0, t1]."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    for m in (models_view or {}).get("models", []):
        hist = sorted(m.get("history") or [], key=lambda h: h.get("at", 0))
        spans = []
        for i, h in enumerate(hist):
            state = h.get("state")
            start = h.get("at", 0)
            end = hist[i + 1]["at"] if i + 1 < len(hist) else t1
            if state in ("loading", "warming", "ready", "draining", "unloading") and end > t0 and start < t1:
                spans.append((max(start, t0) - t0, min(end, t1) - t0, state))
        if spans:
            out[m["name"]] = spans
    return out


def swap_times(models_view: dict | None) -> list[float]:
    """Wall times of swaps: variant hot swaps, and unloads that made room for another model."""
    out = [sw["at"] for sw in (models_view or {}).get("swaps", []) or [] if sw.get("at")]
    for m in (models_view or {}).get("models", []):
        for h in m.get("history") or []:
            reason = str(h.get("reason") or "")
            if h.get("state") == "unloading" and reason.startswith(("evicted", "swapped_out")):
                out.append(h["at"])
    return sorted(out)


COLORS = {
    "loading": "tab:orange",
    "warming": "gold",
    "ready": "tab:green",
    "draining": "tab:gray",
    "unloading": "tab:red",
}


def _served(r: dict) -> str:
    return (r.get("profile") or {}).get("model") or r["model"] or "(default)"


def _lanes(spans: list[tuple[float, float]]) -> list[int]:
    """The lowest free lane for each (start, end) span, in start order, so overlapping requests stack."""
    ends: list[float] = []
    out = []
    for s, e in spans:
        lane = next((i for i, end in enumerate(ends) if end <= s), len(ends))
        if lane == len(ends):
            ends.append(e)
        else:
            ends[lane] = e
        out.append(lane)
    return out


def timeline(records: list[dict], models_view: dict | None, t0: float, t1: float, path: Path) -> Path:
    """Model residency and swaps over the run (thick bar), each request as a thin bar above it."""
    spans = residency(models_view, t0, t1)
    names = sorted(set(spans) | {_served(r) for r in records})
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.8 * len(names)))
    for y, name in enumerate(names):
        for start, end, state in spans.get(name, []):
            ax.broken_barh([(start, max(end - start, 0.01))], (y - 0.4, 0.3), color=COLORS.get(state, "k"))
        reqs = sorted(
            (r["start_wall"] - t0, r["e2e_ms"] / 1000, r["ok"])
            for r in records
            if _served(r) == name and r.get("start_wall")
        )
        lanes = _lanes([(s, s + d) for s, d, _ in reqs])
        h = 0.45 / max(1, max(lanes, default=0) + 1)
        for (s, d, ok), lane in zip(reqs, lanes):
            ax.broken_barh(
                [(s, d)], (y - 0.05 + lane * h, h * 0.8), color="tab:blue" if ok else "tab:red", alpha=0.6
            )
    for at in swap_times(models_view):
        if t0 <= at <= t1:
            ax.axvline(at - t0, color="tab:purple", lw=0.8, ls="--")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("seconds since the run started")
    ax.set_title("Model residency (thick bars), requests (thin bars, red: failed), swaps (dashed)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (*COLORS.values(), "tab:blue")]
    ax.legend(
        handles,
        [*COLORS, "request"],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
