#!/usr/bin/env python3
"""What the agent APIs cost on ``mullama serve`` (issue 13), one run, sides alternating:

1. Tool-call overhead: the same chat (greedy, ``max_tokens`` 48) without tools, with two tools and
   ``tool_choice`` auto, and with ``tool_choice`` required. SmolLM2's template knows no tools, so the
   generic JSON format applies: the answer is grammar-constrained from its first token. Read from the
   X-Profile of each request: prompt tokens (the tools' definitions lengthen the prompt), the runner's
   prefill, the time before the first token as the supervisor saw it (total minus decode: parsing,
   rendering, grammar compilation, queue, prefill) and decode milliseconds per token (sampling under
   the grammar included).
2. ``n`` = 4 against four separate concurrent requests: the same prompt (~600 tokens, new each round
   so no earlier round's cache helps), temperature 0.8, ``max_tokens`` 32. Wall time until all four
   answers are in, and the prompt tokens the runner evaluated (prompt tokens of every choice minus
   the runner's cached-token counter, ``/internal/kv``).

    python benchmarks/agent_apis.py --threads 2 --reps 5 --out results/agent-apis.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from supervisor_vs_runner import Supervisor

MODEL = "smollm2:q4_1"
ASK = [{"role": "user", "content": "What is the weather in Paris, and what time is it there?"}]
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                        "unit": {"enum": ["celsius", "fahrenheit"]}},
                       "required": ["city", "unit"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "The local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
]
VARIANTS = {
    "no tools": {},
    "tools, auto": {"tools": TOOLS, "tool_choice": "auto"},
    "tools, required": {"tools": TOOLS, "tool_choice": "required"},
}
STORY = ("The old lighthouse keeper climbed the stairs every evening, counting each of the two hundred steps, "
         "and at the top he wiped the salt from the great lens before lighting the lamp. ") * 18


async def _chat(session: aiohttp.ClientSession, url: str, body: dict) -> dict:
    async with session.post(url + "/v1/chat/completions", json={"model": MODEL, **body},
                            headers={"X-Profile": "true"}) as r:
        out = await r.json()
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {out}")
        return out


async def tool_overhead(session: aiohttp.ClientSession, url: str, reps: int) -> dict[str, dict[str, list[float]]]:
    keys = ("prompt", "prefill_ms", "before_ms", "ms_per_token", "tokens")
    out: dict[str, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in VARIANTS}
    for rep in range(reps):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            # a new first message each time: the prefix cache never hides the prefill
            msgs = [{"role": "system", "content": f"Session {rep}-{name}."}, *ASK]
            r = await _chat(session, url, {"messages": msgs, "temperature": 0, "max_tokens": 48, **VARIANTS[name]})
            p = r["profile"]
            out[name]["prompt"].append(p["prompt_tokens"])
            out[name]["prefill_ms"].append(p["prefill_ms"])
            out[name]["before_ms"].append(p["total_ms"] - p["decode_ms"])
            if p["completion_tokens"] >= 2:
                out[name]["ms_per_token"].append(p["decode_ms"] / (p["completion_tokens"] - 1))
            out[name]["tokens"].append(p["completion_tokens"])
    return out


async def _cached(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + f"/internal/kv/{MODEL}") as r:
        return (await r.json())["cached_tokens"]


async def choices(session: aiohttp.ClientSession, url: str, reps: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {k: {"wall_ms": [], "evaluated": []} for k in ("n=4", "4 requests")}
    for rep in range(reps):
        for side in (("n=4", "4 requests") if rep % 2 == 0 else ("4 requests", "n=4")):
            msgs = [{"role": "user", "content": f"Story {rep} {side}: {STORY} Continue the story."}]
            body = {"messages": msgs, "temperature": 0.8, "seed": rep, "max_tokens": 32}
            before = await _cached(session, url)
            t0 = time.perf_counter()
            if side == "n=4":
                results = [await _chat(session, url, {**body, "n": 4})]
                prompts = 4 * results[0]["usage"]["prompt_tokens"]
            else:
                results = await asyncio.gather(*(_chat(session, url, body) for _ in range(4)))
                prompts = sum(r["usage"]["prompt_tokens"] for r in results)
            out[side]["wall_ms"].append((time.perf_counter() - t0) * 1000)
            out[side]["evaluated"].append(prompts - (await _cached(session, url) - before))
    return out


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(tools: dict, n4: dict, a: argparse.Namespace) -> str:
    base = tools["no tools"]
    lines = [f"Threads {a.threads}, n_parallel {a.parallel}, {a.reps} rounds (medians).", "",
             ("| request | prompt tokens | prefill ms | before 1st token ms | ratio | decode ms/token | ratio "
              "| completion tokens |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in tools.items():
        lines.append(f"| {name} | {_med(m['prompt']):.0f} | {_med(m['prefill_ms']):.1f} | {_med(m['before_ms']):.1f} | "
                     f"{_med(m['before_ms']) / _med(base['before_ms']):.2f}x | {_med(m['ms_per_token']):.2f} | "
                     f"{_med(m['ms_per_token']) / _med(base['ms_per_token']):.2f}x | {_med(m['tokens']):.0f} |")
    one, four = n4["n=4"], n4["4 requests"]
    lines += ["", "| four answers to one prompt | wall ms | prompt tokens evaluated |", "|---|---:|---:|",
              f"| n=4 (one prefill) | {_med(one['wall_ms']):.0f} | {_med(one['evaluated']):.0f} |",
              f"| 4 concurrent requests | {_med(four['wall_ms']):.0f} | {_med(four['evaluated']):.0f} |",
              (f"| ratio n=4 / 4 requests | {_med(one['wall_ms']) / _med(four['wall_ms']):.2f}x | "
               f"{_med(one['evaluated']) / _med(four['evaluated']):.2f}x |")]
    return "\n".join(lines) + "\n"


async def main_async(a: argparse.Namespace) -> tuple[dict, dict]:
    server = Supervisor(a)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            await server.ready(session)
            await tool_overhead(session, server.url, 1)  # warm-up: page cache, grammar paths
            tools = await tool_overhead(session, server.url, a.reps)
            n4 = await choices(session, server.url, a.reps)
            return tools, n4
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--flash-attn", choices=["on", "off"], default="on")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out")
    p.add_argument("--json")
    a = p.parse_args(argv)
    tools, n4 = asyncio.run(main_async(a))
    table = summarize(tools, n4, a)
    print(table)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(table)
    if a.json:
        Path(a.json).write_text(json.dumps({"tools": tools, "choices": n4}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
