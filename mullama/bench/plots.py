"""PNG plots of a run (matplotlib, Agg backend: no display needed). Each answers its workload's question.

* ``throughput.png``: completion tok/s. A sweep (closed-loop client counts, or Poisson rates) is a line
  per configuration over the setting that was swept; anything else (one phase, a trace, a burst, mixed
  phases) is bars per phase, one per configuration, each labelled with its value.
* ``ttft_cdf.png``: the distribution of time to first token, one curve per configuration (× phase when
  there are several), and one panel per request class when the workload has classes.
* ``timeline.png``: model residency over the run (loading, ready, ...), swaps, and each request's span,
  coloured by how it ended (ok, cancelled by its client, deadline missed, failed), on the row of the model
  that served it (or that it asked for); the configuration × phase spans are shaded and labelled, and
  when the run recorded the machine's CPU, a lower panel shows ours against other processes'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SWEEP_AXES = {"closed": "clients (closed loop)", "poisson": "offered load (requests/s, Poisson)"}


def sweep_axis(phases: dict[str, tuple[str, float | None]]) -> str | None:
    """The x-axis label when the phases sweep one setting ({label: (mode, setting)}), else None."""
    modes = {mode for mode, x in phases.values() if x is not None}
    if len(phases) < 2 or len(modes) != 1 or any(x is None for _, x in phases.values()):
        return None
    return SWEEP_AXES.get(modes.pop())


def throughput(summaries: dict[str, dict[str, dict]], phases: dict[str, tuple[str, float | None]],
               path: Path) -> Path:
    """``phases``: {phase label: (mode, swept setting: clients or offered rate; None for the others)}."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    axis = sweep_axis(phases)
    if axis is not None:
        for config, ph in summaries.items():
            pts = sorted((phases[label][1], s["tok_s"]) for label, s in ph.items()
                         if label in phases and s.get("tok_s") is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=config)
        ax.set_xlabel(axis)
        ax.set_title("Throughput over the swept setting")
    else:
        labels = list(dict.fromkeys(label for ph in summaries.values() for label in ph))
        if len(labels) == 1:  # one phase (a trace, a burst): a bar per configuration, named on the axis
            ys = [(ph.get(labels[0]) or {}).get("tok_s") or 0.0 for ph in summaries.values()]
            bars = ax.bar(range(len(ys)), ys, 0.6, color=[f"C{i}" for i in range(len(ys))])
            ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=8, padding=2)
            ax.set_xticks(range(len(ys)), list(summaries), fontsize=8)
            ax.set_xlabel("configuration")
            ax.set_title(f"Throughput by configuration ({labels[0]})")
        else:
            width = 0.8 / max(1, len(summaries))
            for i, (config, ph) in enumerate(summaries.items()):
                xs = [j + (i - (len(summaries) - 1) / 2) * width for j in range(len(labels))]
                ys = [(ph.get(label) or {}).get("tok_s") or 0.0 for label in labels]
                bars = ax.bar(xs, ys, width * 0.9, label=config)
                ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=7, padding=2)
            ax.set_xticks(range(len(labels)), labels, fontsize=8)
            ax.set_xlabel("phase")
            ax.set_title("Throughput by configuration and phase")
    ax.set_ylabel("completion tokens / s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, axis="y")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, frameon=False)
    return _save(fig, path)


def ttft_cdf(records: list[dict], path: Path) -> Path:
    classes = sorted({r.get("class") for r in records if r.get("class")})
    panels: list[str | None] = classes or [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 if len(panels) == 1 else 4.2 * len(panels), 4.2),
                             sharey=True, squeeze=False)
    several = len({r.get("phase") for r in records}) > 1
    for ax, klass in zip(axes[0], panels):
        groups: dict[str, list[float]] = {}
        for r in records:
            if klass is not None and r.get("class") != klass:
                continue
            label = f"{r['config']} · {r['phase']}" if several else r["config"]
            xs = groups.setdefault(label, [])
            if r["ttft_ms"] is not None and not r["cancelled"]:
                xs.append(r["ttft_ms"])
        for label, xs in groups.items():
            xs.sort()
            if xs:
                ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=f"{label} (n={len(xs)})")
        if not any(groups.values()):
            ax.text(0.5, 0.5, "no request here got a first token\n(cancelled or failed: see the summary)",
                    ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_xlabel("time to first token (ms)")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"class {klass}" if klass else "TTFT CDF", fontsize=10)
        ax.grid(alpha=0.3)
        if any(groups.values()):
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("fraction of requests")
    if classes:
        fig.suptitle("Time to first token by request class (cancelled requests left out)", fontsize=10)
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
OUTCOMES = {"ok": "tab:blue", "cancelled by its client": "0.35", "deadline missed": "tab:pink",
            "failed": "tab:red"}


def outcome(r: dict) -> str:
    if r.get("cancelled"):
        return "cancelled by its client"
    if r.get("ok"):
        return "ok"
    return "deadline missed" if r.get("status") == 408 else "failed"


def rows_of(records: Sequence[dict]) -> list[str]:
    """The timeline row of each record: the model that served it, else the one it asked for, else the model
    that served the other requests that named none (the server's default)."""
    served = [(r.get("profile") or {}).get("model") for r in records]
    default = Counter(s for r, s in zip(records, served) if s and not r.get("model")).most_common(1)
    fallback = default[0][0] if default else "the default model"
    return [s or r.get("model") or fallback for r, s in zip(records, served)]


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


def timeline(records: list[dict], models_view: dict | None, t0: float, t1: float, path: Path,
             segments: Sequence[tuple[str, float, float]] = (), load: Sequence[dict[str, Any]] = ()) -> Path:
    """Model residency and swaps (thick bars), each request as a thin bar above; ``segments``: (label, start,
    end) wall spans of the configurations × phases; ``load``: CPU samples ({at, ours, other} in %)."""
    spans = residency(models_view, t0, t1)
    rows = rows_of(records)
    names = sorted(set(spans) | set(rows))
    height = 1.6 + 0.8 * len(names)
    if load:
        fig, (ax, lax) = plt.subplots(2, 1, figsize=(9, height + 1.4), sharex=True,
                                      gridspec_kw={"height_ratios": [height, 1.4]})
    else:
        fig, ax = plt.subplots(figsize=(9, height))
    for i, (label, start, end) in enumerate(segments):
        ax.axvspan(start - t0, end - t0, color="0.93" if i % 2 else "0.97", zorder=0)
        ax.text((start + end) / 2 - t0, len(names) - 0.45, label, ha="center", va="bottom", fontsize=7)
    for y, name in enumerate(names):
        for start, end, state in spans.get(name, []):
            ax.broken_barh([(start, max(end - start, 0.01))], (y - 0.4, 0.3), color=COLORS.get(state, "k"))
        reqs = sorted((r["start_wall"] - t0, r["e2e_ms"] / 1000, outcome(r))
                      for r, row in zip(records, rows) if row == name and r.get("start_wall") is not None and r.get("e2e_ms"))
        lanes = _lanes([(s, s + d) for s, d, _ in reqs])
        h = 0.45 / max(1, max(lanes, default=0) + 1)
        if reqs:  # one call per row: a run of thousands of requests draws in a second
            ax.barh([y - 0.05 + lane * h + h * 0.4 for lane in lanes], [d for _, d, _ in reqs], h * 0.8,
                    left=[s for s, _, _ in reqs], color=[OUTCOMES[how] for _, _, how in reqs], alpha=0.7)
    for at in swap_times(models_view):
        if t0 <= at <= t1:
            ax.axvline(at - t0, color="tab:purple", lw=0.8, ls="--")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) + (0.1 if segments else -0.4))
    ax.set_title("Model residency (thick bars), requests (thin bars), swaps (dashed)", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (*COLORS.values(), *OUTCOMES.values())]
    ax.legend(handles, [*COLORS, *(f"request: {k}" for k in OUTCOMES)], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    if load:
        xs = [s["at"] - t0 for s in load]
        lax.stackplot(xs, [s["ours"] for s in load], [s["other"] for s in load],
                      colors=["tab:blue", "tab:red"], alpha=0.6, labels=["the servers under test", "other processes"])
        lax.set_ylabel("CPU %", fontsize=8)
        lax.set_ylim(0, 100)
        lax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        lax.set_xlabel("seconds since the run started")
    else:
        ax.set_xlabel("seconds since the run started")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
