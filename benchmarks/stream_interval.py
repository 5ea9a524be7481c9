#!/usr/bin/env python3
"""What ``stream_interval`` trades at one stream: tok/s against the gaps between streamed tokens.

Two ``mullama serve`` (SmolLM2 Q4_1, 2 threads, 8 slots, flash attention), one with ``stream_interval``
20 ms (the default) and one with 0 (a wake-up for every token, as llama-server streams), one streaming
chat client of 128 tokens (``ignore_eos``); the servers take turns, three requests a turn, the first turn
dropped. Prints each server's tok/s (completion tokens ÷ end to end, p50 and mean), TTFT p50 and the
inter-token gap p50 as the client sees it.

    python benchmarks/stream_interval.py [--rounds 6]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mullama.bench import servers

BASE = {"threads": 2, "threads_batch": 2, "n_parallel": 8, "n_ctx": 8192, "flash_attn": "on", "log_level": "warning"}


async def one(s: aiohttp.ClientSession, url: str, text: str) -> tuple[float, float, list[float]]:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": text}], "max_tokens": 128,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = last = 0.0
    gaps: list[float] = []
    tokens = 0
    async with s.post(url + "/v1/chat/completions", json=body) as r:
        async for line in r.content:
            if not line.startswith(b"data: {"):
                continue
            d = json.loads(line[6:])
            if d.get("usage"):
                tokens = d["usage"]["completion_tokens"]
            if d.get("choices") and (d["choices"][0].get("delta") or {}).get("content"):
                now = time.perf_counter()
                if first:
                    gaps.append((now - last) * 1000)
                else:
                    first = now
                last = now
    return tokens / (time.perf_counter() - t0), (first - t0) * 1000, gaps


async def run(a: argparse.Namespace, targets: dict[str, servers.MullamaServe]) -> None:
    rows: dict[str, list[tuple[float, float, list[float]]]] = {k: [] for k in targets}
    async with aiohttp.ClientSession() as s:
        for i in range(a.rounds + 1):
            order = list(targets.items())
            if i % 2:
                order.reverse()
            for name, target in order:
                for j in range(3):
                    r = await one(s, target.url, f"Tell me story number {i}-{j} about the sea.")
                    if i:
                        rows[name].append(r)
    print("| stream_interval | tok/s p50 | tok/s mean | TTFT p50 ms | inter-token p50 ms | requests |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in rows.items():
        print(f"| {name} | {statistics.median(r[0] for r in rs):.1f} | {statistics.mean(r[0] for r in rs):.1f} | "
              f"{statistics.median(r[1] for r in rs):.0f} | {statistics.median(g for r in rs for g in r[2]):.1f} | "
              f"{len(rs)} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args()
    targets: dict[str, servers.MullamaServe] = {}
    try:
        targets["20ms"] = servers.MullamaServe({**BASE, "stream_interval": "20ms"}, name="20ms")
        targets["0"] = servers.MullamaServe({**BASE, "stream_interval": 0}, name="0")
        asyncio.run(run(a, targets))
    finally:
        for t in targets.values():
            t.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
