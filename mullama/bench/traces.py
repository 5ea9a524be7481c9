"""Production request traces: read one, cut a window, scale it to this machine, describe it.

Formats (the header line says which):

* ``azure``: the Azure LLM inference traces (``TIMESTAMP,ContextTokens,GeneratedTokens``; AzurePublicDataset,
  the Splitwise paper's data, CC-BY 4.0): wall-clock timestamps, prompt and output token counts.
* ``burstgpt``: BurstGPT (``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``): seconds
  from the trace start, the serving model (``ChatGPT``, ``GPT-4``) that a workload maps to its own models.

``read`` parses; ``select`` (pure) cuts the window, changes the speed, samples, scales and caps the token
counts; ``stats`` (pure) describes a trace: rate over time, burstiness, length distributions.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from mullama.core.errors import ConfigError

FORMATS = {
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "burstgpt": ("Timestamp", "Model", "Request tokens", "Response tokens"),
}


class TraceError(ConfigError):
    """A trace file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class TraceRow:
    t: float              # seconds from the first request of the trace (of the window, after select)
    prompt_tokens: int
    output_tokens: int
    model: str = ""       # the trace's own model column (BurstGPT); "" when it has none
    key: str = ""         # the row as read (time and tokens): what a `pattern = "hash"` model choice hashes


def detect(header: Sequence[str]) -> str:
    cols = {c.strip() for c in header}
    for name, needed in FORMATS.items():
        if set(needed) <= cols:
            return name
    raise TraceError(f"unknown trace columns {list(header)}; expected those of "
                     + " or ".join(f"{n} ({', '.join(c)})" for n, c in FORMATS.items()))


def read(path: str | Path, fmt: str = "auto") -> list[TraceRow]:
    """Every request of the trace, in time order, ``t`` from the first one."""
    path = Path(path).expanduser()
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: empty trace")
        kind = detect(header) if fmt == "auto" else fmt
        if kind not in FORMATS:
            raise TraceError(f"{path}: unknown trace format {fmt!r} (known: {', '.join(FORMATS)})")
        col = {c.strip(): i for i, c in enumerate(header)}
        missing = [c for c in FORMATS[kind] if c not in col]
        if missing:
            raise TraceError(f"{path}: a {kind} trace needs the columns {', '.join(missing)}")
        rows: list[tuple[float, int, int, str]] = []
        for line, rec in enumerate(reader, start=2):
            if not rec:
                continue
            try:
                if kind == "azure":
                    ts = datetime.fromisoformat(rec[col["TIMESTAMP"]].strip()[:26]).timestamp()
                    rows.append((ts, int(rec[col["ContextTokens"]]), int(rec[col["GeneratedTokens"]]), ""))
                else:
                    rows.append((float(rec[col["Timestamp"]]), int(float(rec[col["Request tokens"]])),
                                 int(float(rec[col["Response tokens"]])), rec[col["Model"]].strip()))
            except (ValueError, IndexError) as exc:
                raise TraceError(f"{path}:{line}: not a {kind} row ({exc})") from None
    if not rows:
        raise TraceError(f"{path}: no requests")
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    return [TraceRow(t - t0, p, o, m, key=f"{t!r}:{p}:{o}") for t, p, o, m in rows]


def select(rows: Sequence[TraceRow], *, start_s: float = 0.0, duration_s: float | None = None, speed: float = 1.0,
           sample: float = 1.0, seed: int = 0, token_scale: float = 1.0, max_prompt_tokens: int | None = None,
           max_output_tokens: int | None = None, limit: int | None = None) -> list[TraceRow]:
    """The requests of ``[start_s, start_s + duration_s)``, each kept with probability ``sample`` (seeded),
    at most ``limit`` of them; times from the window's start divided by ``speed`` (2: twice as fast); token
    counts times ``token_scale``, capped, at least 1."""
    if speed <= 0 or not 0 < sample <= 1 or token_scale <= 0:
        raise TraceError("speed and token_scale must be > 0, sample in (0, 1]")
    end = math.inf if duration_s is None else start_s + duration_s
    rng = random.Random(f"{seed}:trace-sample")
    out: list[TraceRow] = []
    for r in rows:
        if not start_s <= r.t < end or (sample < 1 and rng.random() >= sample):
            continue
        p = max(1, round(r.prompt_tokens * token_scale))
        o = max(1, round(r.output_tokens * token_scale))
        out.append(replace(r, t=(r.t - start_s) / speed, prompt_tokens=min(p, max_prompt_tokens or p),
                           output_tokens=min(o, max_output_tokens or o)))
        if limit is not None and len(out) >= limit:
            break
    return out


def _dist(xs: Sequence[float]) -> dict[str, float]:
    s = sorted(xs)
    def pick(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))]

    return {"mean": round(statistics.fmean(s), 1), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
            "max": s[-1]}


def stats(rows: Sequence[TraceRow]) -> dict:
    """Requests, duration, mean rate, the busiest and quietest minute, burstiness (the coefficient of
    variation of the gaps between arrivals: 1 for Poisson, higher for bursts), and the token lengths."""
    if not rows:
        return {"requests": 0}
    span = rows[-1].t - rows[0].t
    gaps = [b.t - a.t for a, b in itertools.pairwise(rows)]
    per_min: dict[int, int] = {}
    for r in rows:
        per_min[int(r.t // 60)] = per_min.get(int(r.t // 60), 0) + 1
    minutes = [per_min.get(m, 0) / 60 for m in range(int(span // 60) + 1)]
    mean_gap = statistics.fmean(gaps) if gaps else 0.0
    out = {
        "requests": len(rows), "duration_s": round(span, 1),
        "rate_per_s": round(len(rows) / span, 3) if span > 0 else None,
        "rate_per_s_by_minute": {"min": round(min(minutes), 3), "p50": round(statistics.median(minutes), 3),
                                 "max": round(max(minutes), 3)},
        "burstiness_cv": round(statistics.pstdev(gaps) / mean_gap, 2) if len(gaps) > 1 and mean_gap > 0 else None,
        "prompt_tokens": _dist([r.prompt_tokens for r in rows]),
        "output_tokens": _dist([r.output_tokens for r in rows]),
    }
    models = sorted({r.model for r in rows if r.model})
    if models:
        out["models"] = {m: sum(1 for r in rows if r.model == m) for m in models}
    return out
