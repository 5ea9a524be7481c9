"""How far a simulated run is from a real one: per configuration × phase, the relative error of each
headline number (pure; ``mullama sim run --against RUN_DIR``)."""

from __future__ import annotations

from typing import Any

METRICS = (  # (column, summary key, counted: compare as a difference, not a ratio)
    ("TTFT p50", "ttft_ms_p50", False),
    ("TTFT p95", "ttft_ms_p95", False),
    ("E2E p50", "e2e_ms_p50", False),
    ("ITL p50", "itl_ms_p50", False),
    ("tok/s", "tok_s", False),
    ("swaps", "swaps", True),
    ("preempt", "preemptions", True),
)


def error(real: float | None, sim: float | None) -> float | None:
    """(sim − real) / real; None where either is missing or real is 0."""
    if real is None or sim is None or real == 0:
        return None
    return (sim - real) / real


def compare(real: dict[str, dict[str, dict]], sim: dict[str, dict[str, dict]]) -> list[dict[str, Any]]:
    """One row per configuration × phase present in both: {config, phase, metric: (real, sim, error)}. Two runs of
    one configuration each are compared whatever their names (a plain `mullama bench` run is "mullama")."""
    pairs = {c: c for c in real if c in sim}
    if not pairs and len(real) == 1 and len(sim) == 1:
        pairs = {next(iter(real)): next(iter(sim))}
    rows = []
    for config, phases in real.items():
        for phase, r in phases.items():
            s = (sim.get(pairs.get(config, "")) or {}).get(phase)
            if s is None:
                continue
            label = config if pairs.get(config) == config else f"{config} ↔ {pairs[config]}"
            row: dict[str, Any] = {"config": label, "phase": phase}
            for _, key, counted in METRICS:
                rv, sv = r.get(key), s.get(key)
                row[key] = (rv, sv, None if counted else error(rv, sv))
            for klass, rc in (r.get("classes") or {}).items():
                sc = (s.get("classes") or {}).get(klass) or {}
                row[f"class {klass} TTFT p50"] = (rc.get("ttft_ms_p50"), sc.get("ttft_ms_p50"),
                                                  error(rc.get("ttft_ms_p50"), sc.get("ttft_ms_p50")))
            rows.append(row)
    return rows


def median_abs_error(rows: list[dict[str, Any]], key: str) -> float | None:
    errs = sorted(abs(row[key][2]) for row in rows if key in row and row[key][2] is not None)
    if not errs:
        return None
    mid = len(errs) // 2
    return errs[mid] if len(errs) % 2 else (errs[mid - 1] + errs[mid]) / 2


def _cell(v: tuple, counted: bool) -> str:
    real, sim, err = v
    if real is None and sim is None:
        return "—"
    fmt = (lambda x: "—" if x is None else f"{x:.0f}") if counted or (real or 0) >= 100 else \
        (lambda x: "—" if x is None else f"{x:.1f}")
    if counted:
        return f"{fmt(real)} → {fmt(sim)}"
    return f"{fmt(real)} → {fmt(sim)} ({err * 100:+.0f}%)" if err is not None else f"{fmt(real)} → {fmt(sim)}"


def markdown(rows: list[dict[str, Any]], first: str = "Real", second: str = "simulated") -> str:
    if not rows:
        return "No configuration × phase is in both runs.\n"
    extra = sorted({k for row in rows for k in row if k.startswith("class ")})
    cols = [(name, key, counted) for name, key, counted in METRICS] + [(k, k, False) for k in extra]
    lines = ["| configuration | phase | " + " | ".join(c[0] for c in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for row in rows:
        lines.append(f"| {row['config']} | {row['phase']} | "
                     + " | ".join(_cell(row.get(key, (None, None, None)), counted) for _, key, counted in cols) + " |")
    summary = []
    for name, key, counted in cols:
        if not counted:
            m = median_abs_error(rows, key)
            if m is not None:
                summary.append(f"{name} {m * 100:.0f}%")
    lines += ["", f"{first} → {second} (relative error). Median absolute error over the rows: "
              + ", ".join(summary) + "."]
    return "\n".join(lines) + "\n"
