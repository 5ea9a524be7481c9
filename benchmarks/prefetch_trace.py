#!/usr/bin/env python3
"""Swap-induced latency with predictive prefetch vs without, on a seeded two-model trace.

The trace (``make_trace``, seeded): runs that alternate between two models A and B; each run is
2..5 requests sent back to back (0.05-0.2 s after each response), and between runs the client
"thinks" for 1.5-3 s. A budget that holds exactly one model (``memory_budget = "420MiB"``,
n_ctx 2048) makes every switch a swap.

For each configuration (``prefetch = "none"``, then ``"markov"``) a fresh ``mullama serve`` is
started (``tests/integration/supervisor_harness.py``) over SmolLM2 Q4_1 (A) and Q8_0 (B), the same
trace is replayed, and every request's time to first token is recorded (streaming
``/v1/chat/completions``, max_tokens 8, temperature 0).

Swap-induced latency of a run = TTFT of its first request minus the median TTFT of the requests
within runs (not first in their run) of the same configuration; the very first run is left out
(it is a cold start in both). Reported: p50 and mean per configuration and the reduction in %.
With the Markov predictor the first few switches are unpredicted (it needs ``min_observations``
switches out of a model), so the mean includes that warm-up; the p50 mostly does not.
``--reps N`` repeats both configurations in ABBA order (each on a fresh server) and pools the switches,
so that load from the rest of the machine does not land on one configuration only.

    .venv/bin/python benchmarks/prefetch_trace.py --out benchmarks/results/prefetch.md \\
        --json benchmarks/results/prefetch.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("smollm2:q4_1", "smollm2:q8_0")
CONFIGS = ("none", "markov")
PROMPTS = ("Name a fruit.", "Say hello in French.", "What colour is the sky?", "Count to three.")


@dataclass(frozen=True)
class TraceRequest:
    index: int
    run: int
    model: str
    first_in_run: bool
    gap_after: float  # seconds the client waits after this response before the next request


def make_trace(seed: int = 7, runs: int = 12, models: tuple[str, str] = ("A", "B"),
               run_length: tuple[int, int] = (2, 5), gap: tuple[float, float] = (0.05, 0.2),
               think: tuple[float, float] = (1.5, 3.0)) -> list[TraceRequest]:
    """Runs alternating between ``models[0]`` and ``models[1]`` (starting with the first); pure and seeded.

    Within a run the gap after each response is uniform in ``gap``; after a run's last request it is
    a think time uniform in ``think`` (0 after the trace's very last request).
    """
    if runs < 1 or run_length[0] < 1 or run_length[0] > run_length[1]:
        raise ValueError(f"bad trace shape: runs={runs}, run_length={run_length}")
    rng = random.Random(seed)
    out: list[TraceRequest] = []
    for run in range(runs):
        model = models[run % 2]
        length = rng.randint(*run_length)
        for i in range(length):
            last = i == length - 1
            pause = 0.0 if last and run == runs - 1 else rng.uniform(*(think if last else gap))
            out.append(TraceRequest(index=len(out), run=run, model=model, first_in_run=i == 0,
                                    gap_after=round(pause, 4)))
    return out


# ---------------------------------------------------------------------- measuring


def stream_ttft(url: str, model: str, prompt: str, max_tokens: int,
                timeout: float = 300.0) -> tuple[float, float]:
    """(seconds to the first content token, seconds to the end) of one streaming chat completion."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "ignore_eos": True}
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    ttft = None
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            for raw in resp:
                if ttft is None and raw.startswith(b"data: {"):
                    msg = json.loads(raw[6:])
                    choices = msg.get("choices") or [{}]
                    if (choices[0].get("delta") or {}).get("content"):
                        ttft = time.perf_counter() - t0
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{model}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
    total = time.perf_counter() - t0
    return (ttft if ttft is not None else total), total


def replay(config: str, trace: list[TraceRequest], a: argparse.Namespace) -> dict[str, Any]:
    """Start a fresh server with ``prefetch = config``, replay ``trace``, return its records and events."""
    from supervisor_harness import Server, base_settings

    with tempfile.TemporaryDirectory(prefix=f"mullama-prefetch-{config}-") as tmp:
        work = Path(tmp)
        events_path = work / "events.jsonl"
        settings = base_settings(memory_budget=a.memory_budget, prefetch=config,
                                 prefetch_min_confidence=a.min_confidence, prefetch_idle=a.idle,
                                 event_log=str(events_path), log_level="warning")
        server = Server(work, settings)  # raises RuntimeError (with the log) if it never says "serving on"
        if not server.port:  # it exited before listening: the harness saw stderr end
            server.kill()
            text = server.log_text()
            if "prefetch" in text:
                raise SystemExit("prefetch_trace: the server refuses the prefetch settings "
                                 f"(config.py does not know them yet?):\n{text[-2000:]}")
            raise SystemExit(f"prefetch_trace: mullama serve exited during start-up:\n{text[-2000:]}")
        records: list[dict[str, Any]] = []
        snapshot: Any = None
        try:
            for req in trace:
                model = MODELS[0] if req.model == "A" else MODELS[1]
                start = time.monotonic()  # the same clock as the events' "mono" (one machine)
                ttft, total = stream_ttft(server.url, model, PROMPTS[req.index % len(PROMPTS)], a.max_tokens)
                records.append({**asdict(req), "model": model, "start_mono": start,
                                "ttft_ms": round(ttft * 1000, 2), "total_ms": round(total * 1000, 2)})
                print(f"[{config}] #{req.index:3d} run {req.run:2d} {model:13s} "
                      f"{'switch' if req.first_in_run else '      '} ttft {ttft * 1000:8.1f} ms",
                      file=sys.stderr, flush=True)
                time.sleep(req.gap_after)
            status, snapshot = server.call("GET", "/internal/models", timeout=30)
            if status != 200:
                snapshot = None
        finally:
            server.stop()
        events = []
        if events_path.exists():
            for line in events_path.read_text().splitlines():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    kinds = ("prefetch", "model_loading", "model_evicted", "model_ready")
    events = [e for e in events if e.get("event") in kinds]
    mark_prefetched(records, events)
    return {"config": config, "requests": records, "summary": summarize(records),
            "events": events, "internal_models": snapshot}


def mark_prefetched(records: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """Flag each switch: was its model prefetched since the previous request, and ready before this one?"""
    for prev, rec in zip([None, *records], records):
        if not rec["first_in_run"]:
            continue
        since = prev["start_mono"] if prev is not None else float("-inf")
        mine = [e for e in events
                if e.get("model") == rec["model"] and since <= e.get("mono", 0.0) < rec["start_mono"]]
        rec["prefetched"] = any(e["event"] == "prefetch" for e in mine)
        rec["ready_before"] = any(e["event"] == "model_ready" and e.get("reason") == "prefetch" for e in mine)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Swap-induced latency per switch (excluding the first run) against the median within-run TTFT."""
    within = [r["ttft_ms"] for r in records if not r["first_in_run"]]
    base = statistics.median(within) if within else 0.0
    swaps = [{"run": r["run"], "model": r["model"], "ttft_ms": r["ttft_ms"],
              "swap_ms": round(r["ttft_ms"] - base, 2), "prefetched": r.get("prefetched", False),
              "ready_before": r.get("ready_before", False)}
             for r in records if r["first_in_run"] and r["run"] > 0]
    return {"within_run_ttft_p50_ms": round(base, 2), **_stats([s["swap_ms"] for s in swaps]),
            "per_switch": swaps}


def pool(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration over all repetitions: each switch against its own server's within-run median."""
    within = [r["summary"]["within_run_ttft_p50_ms"] for r in reps]
    switches = [s for r in reps for s in r["summary"]["per_switch"]]
    return {"within_run_ttft_p50_ms": round(statistics.median(within), 2),
            **_stats([s["swap_ms"] for s in switches]),
            "prefetched": sum(s["prefetched"] for s in switches),
            "ready_before": sum(s["ready_before"] for s in switches)}


def _stats(values: list[float]) -> dict[str, Any]:
    return {"switches": len(values), "swap_p50_ms": round(statistics.median(values), 2) if values else None,
            "swap_mean_ms": round(statistics.fmean(values), 2) if values else None}


def reduction(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return round(100.0 * (before - after) / before, 1)


def table(results: dict[str, Any], a: argparse.Namespace) -> str:
    none, markov = results["runs"]["none"]["summary"], results["runs"]["markov"]["summary"]
    red = results["reduction_pct"]
    n_prefetch = sum(1 for rep in results["runs"]["markov"]["reps"] for e in rep["events"]
                     if e.get("event") == "prefetch")

    def fmt(v: float | None, unit: str = " ms") -> str:
        return "n/a" if v is None else f"{v:.0f}{unit}"

    lines = [
        "Swap-induced latency (TTFT of a run's first request minus the within-run median TTFT), "
        f"seed {a.seed}, {a.reps} repetition(s) per configuration, "
        f"{a.runs} runs alternating SmolLM2 Q4_1 / Q8_0, memory budget {a.memory_budget} (one model), "
        f"prefetch_min_confidence {a.min_confidence}, prefetch_idle {a.idle}:",
        "",
        "| prefetch | switches | within-run TTFT p50 | swap-induced p50 | swap-induced mean |",
        "|---|---:|---:|---:|---:|",
        f"| none | {none['switches']} | {fmt(none['within_run_ttft_p50_ms'])} | {fmt(none['swap_p50_ms'])} "
        f"| {fmt(none['swap_mean_ms'])} |",
        f"| markov | {markov['switches']} | {fmt(markov['within_run_ttft_p50_ms'])} "
        f"| {fmt(markov['swap_p50_ms'])} | {fmt(markov['swap_mean_ms'])} |",
        f"| **reduction** | | | **{fmt(red['p50'], ' %')}** | **{fmt(red['mean'], ' %')}** |",
        "",
        f"With markov: {n_prefetch} prefetches issued; {markov['prefetched']} of {markov['switches']} "
        f"switches had their model prefetched, {markov['ready_before']} of them ready before the request "
        "came. "
        "Target: at least 40% lower.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--reps", type=int, default=1, help="repetitions per configuration, run in ABBA order")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--memory-budget", default="420MiB")
    p.add_argument("--min-confidence", type=float, default=0.6)
    p.add_argument("--idle", default="0.5s", help="prefetch_idle")
    p.add_argument("--out", type=Path, help="markdown table")
    p.add_argument("--json", type=Path, help="raw results")
    a = p.parse_args(argv)
    if a.reps < 1 or a.runs < 2:
        p.error("--reps must be >= 1 and --runs >= 2 (the first run is a cold start and does not count)")

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from supervisor_harness import q8_variant

    q8_variant()  # the second model, made once
    trace = make_trace(a.seed, a.runs)
    print(f"trace: {len(trace)} requests in {a.runs} runs, seed {a.seed}", file=sys.stderr, flush=True)
    reps: dict[str, list[dict[str, Any]]] = {config: [] for config in CONFIGS}
    for rep in range(a.reps):  # ABBA...: load from the rest of the machine hits both alike
        for config in (CONFIGS if rep % 2 == 0 else CONFIGS[::-1]):
            print(f"rep {rep + 1}/{a.reps}: prefetch = {config!r}", file=sys.stderr, flush=True)
            reps[config].append(replay(config, trace, a))
    runs = {config: {"summary": pool(done), "reps": done} for config, done in reps.items()}
    none, markov = runs["none"]["summary"], runs["markov"]["summary"]
    results = {"seed": a.seed, "runs_in_trace": a.runs, "reps": a.reps, "memory_budget": a.memory_budget,
               "min_confidence": a.min_confidence, "idle": a.idle, "max_tokens": a.max_tokens,
               "trace": [asdict(r) for r in trace], "runs": runs,
               "reduction_pct": {"p50": reduction(none["swap_p50_ms"], markov["swap_p50_ms"]),
                                 "mean": reduction(none["swap_mean_ms"], markov["swap_mean_ms"])}}
    text = table(results, a)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
