"""Summaries of request records: throughput, latency percentiles, errors, swaps, preemptions,
prefix-cache hit rate; markdown tables, side by side across configurations (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

QS = (50, 95, 99)


def percentile(xs: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no data."""
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def _pcts(prefix: str, xs: Sequence[float]) -> dict[str, float | None]:
    return {f"{prefix}_p{q}": _r(percentile(xs, q)) for q in QS}


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def tpot(r: dict) -> float | None:
    """Time per output token after the first: (end to end - TTFT) / (tokens - 1); None below 2 tokens."""
    n = r.get("completion_tokens") or 0
    if n < 2 or r.get("ttft_ms") is None or r.get("e2e_ms") is None:
        return None
    return (r["e2e_ms"] - r["ttft_ms"]) / (n - 1)


def summarize(records: list[dict], wall_s: float, counters: dict[str, float] | None = None) -> dict[str, Any]:
    """One configuration × phase. ``wall_s``: the phase's wall time (summed over repetitions);
    ``counters``: the server's counter deltas over the phase (swaps, preemptions)."""
    ok = [r for r in records if r["ok"]]
    done = [r for r in records if r["ok"] or r["cancelled"]]
    tokens = sum(r["completion_tokens"] or 0 for r in done)
    ttft = [r["ttft_ms"] for r in records if r["ttft_ms"] is not None and not r["cancelled"]]
    gaps = [g for r in done for g in r["gaps_ms"]]
    e2e = [r["e2e_ms"] for r in ok]
    prompt = [r for r in done if r["prompt_tokens"] and r["cached_tokens"] is not None]
    hits = sum(r["cached_tokens"] for r in prompt)
    queried = sum(r["prompt_tokens"] for r in prompt)
    profiles = [r["profile"] for r in records if r.get("profile")]
    c = counters or {}
    errors: dict[str, int] = {}
    for r in records:
        if r["error"]:
            key = f"HTTP {r['status']}" if r["status"] and r["status"] != 200 else r["error"].split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    out: dict[str, Any] = {
        "requests": len(records),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "cancelled": sum(r["cancelled"] for r in records),
        "wall_s": _r(wall_s),
        "completion_tokens": tokens,
        "tok_s": _r(tokens / wall_s if wall_s else None, 2),
        "req_s": _r(len(ok) / wall_s if wall_s else None),
        "mean_in_flight": _r(sum(r["e2e_ms"] for r in records) / 1000 / wall_s if wall_s else None, 2),
        **_pcts("ttft_ms", ttft),
        **_pcts("tpot_ms", [tpot(r) for r in ok if tpot(r) is not None]),
        **_pcts("itl_ms", gaps),
        **_pcts("e2e_ms", e2e),
        "prefix_hit_rate": _r(hits / queried if queried else None, 4),
        "preemptions": (
            c.get("scheduler.preemptions", 0)
            if counters is not None
            else sum(p.get("preemptions", 0) for p in profiles)
            if profiles
            else None
        ),
        **{
            k: (c.get(src, 0) if counters is not None else None)
            for k, src in (
                ("hot_swaps", "models.swaps"),
                ("loads", "models.loads"),
                ("evictions", "models.evictions"),
                ("deadline_expired", "scheduler.deadline_expired"),
            )
        },
        "profiled": len(profiles),
        # a swap: one model unloaded for another (an eviction) or a variant hot swap
        "swaps": (c.get("models.evictions", 0) + c.get("models.swaps", 0)) if counters is not None else None,
    }
    if profiles:
        out.update(_pcts("server_queue_ms", [p.get("queue_ms", 0) for p in profiles]))
        out.update(
            _pcts(
                "server_itl_ms",
                [p["inter_token_ms_p50"] for p in profiles if p.get("completion_tokens", 0) >= 2],
            )
        )
    classes = sorted({r["class"] for r in records if r.get("class")})
    if classes:
        out["classes"] = {k: class_summary([r for r in records if r.get("class") == k]) for k in classes}
    return out


def class_summary(records: list[dict]) -> dict[str, Any]:
    ttft = [r["ttft_ms"] for r in records if r["ttft_ms"] is not None and not r["cancelled"]]
    return {
        "requests": len(records),
        "ok": sum(r["ok"] for r in records),
        "errors": sum(bool(r["error"]) for r in records),
        **_pcts("ttft_ms", ttft),
        **_pcts("e2e_ms", [r["e2e_ms"] for r in records if r["ok"]]),
    }


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if nd == 0 or abs(v) >= 1000:
            return f"{v:.0f}"
        return f"{v:.{nd}f}"
    return str(v)


COLUMNS = (
    ("tok/s", "tok_s", 1),
    ("req/s", "req_s", 2),
    ("ok", "ok", 0),
    ("errors", "errors", 0),
    ("TTFT p50/p95/p99 ms", "ttft_ms", 0),
    ("TPOT p50/p95/p99 ms", "tpot_ms", 1),
    ("ITL p50/p95/p99 ms", "itl_ms", 1),
    ("E2E p50/p95/p99 ms", "e2e_ms", 0),
    ("prefix hit", "prefix_hit_rate", 0),
    ("preempt", "preemptions", 0),
    ("swaps", "swaps", 0),
)


def _cell(s: dict, key: str, nd: int) -> str:
    if key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        return " / ".join(_fmt(s.get(f"{key}_p{q}"), nd) for q in QS)
    if key == "prefix_hit_rate":
        v = s.get(key)
        return "—" if v is None else f"{v * 100:.0f}%"
    return _fmt(s.get(key), nd)


def markdown(summaries: dict[str, dict[str, dict]]) -> str:
    """One row per configuration × phase: {config: {phase: summary}}."""
    lines = [
        "| configuration | phase | " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for config, phases in summaries.items():
        for phase, s in phases.items():
            lines.append(
                f"| {config} | {phase} | " + " | ".join(_cell(s, k, nd) for _, k, nd in COLUMNS) + " |"
            )
    return "\n".join(lines) + "\n"


def class_table(summaries: dict[str, dict[str, dict]]) -> str:
    """TTFT / E2E by request class, configurations side by side (priority/deadline mixes)."""
    rows = []
    for config, phases in summaries.items():
        for phase, s in phases.items():
            for k, cs in (s.get("classes") or {}).items():
                rows.append(
                    f"| {config} | {phase} | {k} | {cs['ok']}/{cs['requests']} | "
                    f"{_cell(cs, 'ttft_ms', 0)} | {_cell(cs, 'e2e_ms', 0)} |"
                )
    if not rows:
        return ""
    return (
        "\n".join(
            [
                "| configuration | phase | class | ok | TTFT p50/p95/p99 ms | E2E p50/p95/p99 ms |",
                "|---|---|---|---:|---:|---:|",
                *rows,
            ]
        )
        + "\n"
    )


RATIO_KEYS = (
    ("tok/s", "tok_s", True),
    ("req/s", "req_s", True),
    ("TTFT p50", "ttft_ms_p50", False),
    ("TTFT p95", "ttft_ms_p95", False),
    ("TPOT p50", "tpot_ms_p50", False),
    ("E2E p50", "e2e_ms_p50", False),
    ("E2E p95", "e2e_ms_p95", False),
)


def significant(v: float) -> str:
    """A value with three significant digits, never fewer decimals than it needs (0.31, 4.62, 319.7, 1672)."""
    a = abs(v)
    return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"


def ratio_cell(v: float, base: float, up: bool) -> str:
    """``v / base`` and its operands; bold only when it is better by the 2 decimals shown (> 1 where more is
    better, < 1 where less is)."""
    r = v / base
    text = f"{r:.2f}×"
    better = round(r, 2) > 1 if up else round(r, 2) < 1
    return f"{f'**{text}**' if better else text} ({significant(v)} / {significant(base)})"


def ratio_table(summaries: dict[str, dict[str, dict]], baseline: str) -> str:
    """Each configuration against ``baseline``, per phase: value / baseline (tok/s > 1 is better;
    latencies < 1 are better); the better ratios are bold."""
    base = summaries.get(baseline) or {}
    others = [c for c in summaries if c != baseline]
    if not base or not others:
        return ""
    head = (
        "| phase | configuration | "
        + " | ".join(f"{n} ({'↑' if up else '↓'} better)" for n, _, up in RATIO_KEYS)
        + " |"
    )
    lines = [head, "|---|---|" + "---:|" * len(RATIO_KEYS)]
    for phase, b in base.items():
        for c in others:
            s = summaries[c].get(phase)
            if s is None:
                continue
            cells = []
            for _, key, up in RATIO_KEYS:
                v, bv = s.get(key), b.get(key)
                cells.append(ratio_cell(v, bv, up) if v is not None and bv else "—")
            lines.append(f"| {phase} | {c} vs {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def merge(records: Iterable[dict], config: str, phase: str) -> list[dict]:
    return [r for r in records if r.get("config") == config and r.get("phase") == phase]


def trace_table(source: dict, records: Sequence[dict]) -> str:
    """A replayed trace's own statistics next to what was sent (prompt tokens as the server counted them,
    chat template included; output tokens as generated), per request."""
    sent_p = [r["prompt_tokens"] for r in records if r.get("prompt_tokens") is not None]
    sent_o = [r["completion_tokens"] for r in records if r.get("completion_tokens") is not None]

    def row(name: str, trace: dict, sent: list[int]) -> str:
        got = [percentile(sent, q) for q in (50, 90)] + [max(sent)] if sent else [None] * 3
        return (f"| {name} | {trace['p50']} / {trace['p90']} / {trace['max']} | "
                + " / ".join(_fmt(v, 0) for v in got) + " |")

    rate = source.get("rate_per_s_by_minute", {})
    return "\n".join([
        "| | trace | sent |", "|---|---|---|",
        f"| requests | {source['requests']} in {source['duration_s']} s | {len(records)} |",
        (f"| rate /s (mean; by minute min / p50 / max) | {source['rate_per_s']} ({rate.get('min')} / "
         f"{rate.get('p50')} / {rate.get('max')}) | |"),
        f"| burstiness (CV of arrival gaps; Poisson 1) | {source['burstiness_cv']} | |",
        row("prompt tokens p50 / p90 / max", source["prompt_tokens"], sent_p),
        row("output tokens p50 / p90 / max", source["output_tokens"], sent_o),
    ]) + "\n"
