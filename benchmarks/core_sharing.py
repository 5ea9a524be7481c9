#!/usr/bin/env python3
"""Two models on one CPU box: the supervisor's core allotment (``cpu_allotment = "spread"``) against every
runner on every core (``"off"``), one run, servers alternating (spread, off, off, spread, ...).

Each server loads SmolLM2 Q4_1 and Q8_0 (2 slots each, threads 0: the allotment decides, or every core
with ``off``), then runs two phases of closed-loop streaming completions (max_tokens 64, ignore_eos):

* **both busy**: two clients per model at once, for ``--seconds``;
* **alternating**: two clients on one model while the other is idle, switching every ``--seconds / 4``
  (the allotment's cost: a busy runner keeps its half of the cores while the other idles).

Reported per server and phase: aggregate tok/s, each model's tok/s, and the gaps between tokens of a
stream (p50, p99, max): the cliff the allotment removes shows as multi-second gaps.

    python benchmarks/core_sharing.py [--reps 2] [--seconds 20] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from supervisor_harness import Server, base_settings, q8_variant

MODELS = ("smollm2:q4_1", "smollm2:q8_0")
PROMPT = "Write a long story about a lighthouse keeper and the sea."


async def stream_once(session: aiohttp.ClientSession, url: str, model: str, gaps: list[float]) -> int:
    body = {"model": model, "prompt": PROMPT, "max_tokens": 64, "ignore_eos": True, "stream": True,
            "temperature": 0}
    tokens, last = 0, None
    async with session.post(url + "/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                now = time.perf_counter()
                if last is not None:
                    gaps.append(now - last)
                last = now
                tokens += 1
    return tokens


async def clients(url: str, plan: list[tuple[float, str]], per_model: int, out: dict) -> None:
    """``plan``: (until, model busy or "both") windows; closed-loop clients run while their model is busy."""
    start = time.perf_counter()
    end = start + plan[-1][0]

    async def client(model: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            while (now := time.perf_counter()) < end:
                busy = next(m for until, m in plan if now - start < until)
                if busy not in (model, "both"):
                    await asyncio.sleep(0.05)
                    continue
                n = await stream_once(session, url, model, out["gaps"])
                out["tokens"][model] += n

    await asyncio.gather(*(client(m) for m in MODELS for _ in range(per_model)))
    out["seconds"] = time.perf_counter() - start


def measure(mode: str, seconds: float, workdir: Path) -> dict[str, dict]:
    srv = Server(workdir, base_settings(threads=0, threads_batch=0, n_parallel=2, cpu_allotment=mode,
                                        log_level="warning"))
    try:
        for m in MODELS:  # load both before timing
            status, body = srv.call("POST", "/v1/completions", {"model": m, "prompt": "Hi", "max_tokens": 1})
            assert status == 200, body
        time.sleep(1.0)
        results = {}
        for phase, plan in (("both busy", [(seconds, "both")]),
                            ("alternating", [(seconds * (i + 1) / 4, MODELS[i % 2]) for i in range(4)])):
            out = {"tokens": dict.fromkeys(MODELS, 0), "gaps": []}
            asyncio.run(clients(srv.url, plan, 2, out))
            results[phase] = out
        return results
    finally:
        srv.stop()


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    q8_variant()
    order = [m for r in range(args.reps) for m in (("spread", "off") if r % 2 == 0 else ("off", "spread"))]
    runs: dict[str, list[dict]] = {"spread": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, mode in enumerate(order):
            runs[mode].append(measure(mode, args.seconds, Path(tmp) / f"{i}-{mode}"))
            print(f"run {i + 1}/{len(order)} ({mode}) done", file=sys.stderr)
    head = (f"| cpu_allotment | phase | tok/s (all) | {MODELS[0]} tok/s | {MODELS[1]} tok/s | gap p50 ms | "
            "gap p99 ms | gap max ms |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for mode in ("spread", "off"):
        for phase in ("both busy", "alternating"):
            rs = [r[phase] for r in runs[mode]]
            total = statistics.median(sum(r["tokens"].values()) / r["seconds"] for r in rs)
            per = [statistics.median(r["tokens"][m] / r["seconds"] for r in rs) for m in MODELS]
            gaps = [g for r in rs for g in r["gaps"]]
            lines.append(f"| {mode} | {phase} | {total:.1f} | {per[0]:.1f} | {per[1]:.1f} | "
                         f"{pct(gaps, 0.5) * 1000:.0f} | {pct(gaps, 0.99) * 1000:.0f} | {max(gaps) * 1000:.0f} |")
    text = "\n".join(lines) + (f"\n\n({args.reps} runs of each, alternating, {args.seconds:g} s per phase; "
                               "tok/s: median over runs; gaps: all streams of all runs)\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
