#!/usr/bin/env python3
"""The cost of the supervisor: mullama serve vs its runner direct vs llama-server, one run.

Three servers over SmolLM2-135M-Instruct with the same threads, slots
(n_parallel 8), context, flash attention and unified KV cache:

* ``llama-server`` built from the pinned llama.cpp source (benchmarks/baselines.py);
* a mullama runner reached directly (``python -m mullama.runner``);
* ``mullama serve`` (the full stack: supervisor -> its own runner), through
  ``/v1/completions``.

Measured, servers alternating (ABC, CBA, ...) so that noise hits all alike:

1. Added latency per request: sequential one-token streaming completions of a
   cached prompt; supervisor p50/p95 minus runner-direct p50/p95.
2. Aggregate completion tok/s in a closed loop at 1 and 8 clients
   (max_tokens 128, ignore_eos, streaming) for all three.
3. Swap latency: a second supervisor with a memory budget for one model and
   two variants (Q4_1, Q8_0); alternating requests, each forcing a swap:
   request -> first token, with the files in the page cache.

    python benchmarks/supervisor_vs_runner.py --threads 2 --reps 3 --out results/supervisor.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from baselines import build_tools  # noqa: E402
from engine_vs_llama_bench import cpu_model  # noqa: E402
from runner_vs_llama_server import PROMPTS, LlamaServer, Runner, Server, closed_loop, pctl  # noqa: E402

LATENCY_BLOCK = 20  # requests to one server before the other's turn
_PORT_LINE = re.compile(rb"mullama serving on http://[^:]+:(\d+)")


class Supervisor(Server):
    """``mullama serve`` with a TOML config; requests through the OpenAI completions route."""

    name = "mullama serve"

    def __init__(self, a: argparse.Namespace, *, extra: str = "", models_dir: str | None = None,
                 name: str = "mullama serve") -> None:
        self.name = name
        self.dir = tempfile.TemporaryDirectory(prefix="mullama-bench-")
        cfg = Path(self.dir.name) / "config.toml"
        cfg.write_text(
            f'models_dirs = ["{models_dir or self.dir.name}"]\nthreads = {a.threads}\nthreads_batch = {a.threads}\n'
            f'n_ctx = {a.ctx}\nn_parallel = {a.parallel}\nflash_attn = "{a.flash_attn}"\nlog_level = "warning"\n'
            f'keep_alive = -1\ncache_ram = "{a.cache_ram_mib}MiB"\n{extra}')  # as the runner's load and
        # llama-server's -cram: the three differ only in the layers in front
        env = {k: v for k, v in os.environ.items() if not k.startswith("MULLAMA_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "mullama.cli", "serve", "--config", str(cfg), "--port", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("mullama serve exited during start-up")
            if m := _PORT_LINE.search(line):
                self.url = f"http://127.0.0.1:{int(m.group(1))}"
                break
        else:
            raise TimeoutError("mullama serve did not start")
        # keep draining stderr so the server never blocks on a full pipe
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stderr, stdout=subprocess.DEVNULL)

    def rss(self) -> int:
        import psutil

        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return 0

    async def ready(self, session: aiohttp.ClientSession, model: str = "smollm2:q4_1") -> None:
        async with session.post(self.url + "/api/load", json={"model": model}) as r:
            if r.status != 200:
                raise RuntimeError(f"load failed: {await r.text()}")

    async def request(self, session: aiohttp.ClientSession, prompt: str, max_tokens: int,
                      model: str = "smollm2:q4_1") -> tuple[float, int]:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
                "temperature": 0, "stream_options": {"include_usage": True}}
        t0 = time.perf_counter()
        ttft = None
        n = 0
        async with session.post(self.url + "/v1/completions", json=body) as resp:
            resp.raise_for_status()
            async for raw in resp.content:
                if not raw.startswith(b"data: {"):
                    continue
                msg = json.loads(raw[6:])
                if ttft is None and msg["choices"] and msg["choices"][0].get("text"):
                    ttft = time.perf_counter() - t0
                if msg.get("usage"):
                    n = msg["usage"]["completion_tokens"]
        return (ttft if ttft is not None else time.perf_counter() - t0), n

    def stop(self) -> None:
        super().stop()
        self._drain.wait(5)
        self.dir.cleanup()


async def latency(servers: list[Server], session: aiohttp.ClientSession, n: int) -> list[list[float]]:
    """End-to-end seconds of ``n`` sequential one-token requests of one (cached) prompt per server, the
    servers taking turns in blocks of ``LATENCY_BLOCK`` (so that the machine's drift hits both alike; turn
    by turn, the other runner's decode threads would still be polling when a request comes). The first
    request of a block is not counted."""
    out: list[list[float]] = [[] for _ in servers]
    for b in range(-(-n // LATENCY_BLOCK)):
        for k in (range(len(servers)) if b % 2 == 0 else reversed(range(len(servers)))):
            for i in range(min(LATENCY_BLOCK, n - b * LATENCY_BLOCK) + 1):
                t0 = time.perf_counter()
                await servers[k].request(session, PROMPTS[0], 1)
                if i:
                    out[k].append(time.perf_counter() - t0)
    return out


async def swap_latency(a: argparse.Namespace, session: aiohttp.ClientSession) -> dict:
    from supervisor_harness import models_cache_dir, q8_variant

    q8_variant()
    # a 2048-token context keeps one model at ~250-300 MiB: a 420 MiB budget holds exactly one
    small = argparse.Namespace(**{**vars(a), "ctx": 2048})
    sup = Supervisor(small, extra='memory_budget = "420MiB"\n', models_dir=str(models_cache_dir()), name="swap")
    try:
        await sup.ready(session, "smollm2:q4_1")
        swaps, warm = [], []
        models = ["smollm2:q8_0", "smollm2:q4_1"]
        for i in range(2 * a.reps + 1):
            model = models[i % 2]
            ttft, _ = await sup.request(session, PROMPTS[1], 4, model=model)
            if i > 0:  # the first swap also pays the first read of the Q8_0 file
                swaps.append(ttft)
            ttft_warm, _ = await sup.request(session, PROMPTS[1], 4, model=model)
            warm.append(ttft_warm)
        return {"swap_ttft_p50_ms": pctl(swaps, 0.5) * 1000, "swap_ttft_max_ms": max(swaps) * 1000,
                "resident_ttft_p50_ms": pctl(warm, 0.5) * 1000, "swaps": len(swaps)}
    finally:
        sup.stop()


async def main_async(a: argparse.Namespace) -> dict:
    from mullama.models.assets import default_model_path

    if a.only == "swap":
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            return {"swap": await swap_latency(a, session)}
    model = default_model_path()
    if a.only == "latency":
        servers: list[Server] = [Runner(model, a), Supervisor(a)]
    else:
        tools = build_tools(["llama-server"])
        servers = [LlamaServer(tools["llama-server"], model, a), Runner(model, a), Supervisor(a)]
    runner, sup = servers[-2:]
    results: dict = {"runs": [], "latency": {"runner": [], "supervisor": []}}
    timeout = aiohttp.ClientTimeout(total=600)
    conn = aiohttp.TCPConnector(limit=0, force_close=True)  # llama-server closes streamed connections: same for all
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
            for s in servers:
                await s.ready(session)
            for s in servers:
                await closed_loop(s, session, 2, 1, 16)
            for rep in range(a.reps):
                lat_runner, lat_sup = await latency([runner, sup], session, a.latency_requests)
                results["latency"]["runner"] += lat_runner
                results["latency"]["supervisor"] += lat_sup
                for c in a.concurrency if a.only is None else ():
                    for s in (servers if rep % 2 == 0 else servers[::-1]):
                        r = await closed_loop(s, session, c, max(1, a.requests // c), a.max_tokens)
                        r.update(server=s.name, concurrency=c, rep=rep)
                        results["runs"].append(r)
                        print(f"rep {rep} c={c:2d} {s.name:15s} {r['tok_s']:7.1f} tok/s ttft p50 "
                              f"{r['ttft_p50_ms']:7.1f} ms", file=sys.stderr, flush=True)
        for s in servers:
            s.stop()
        if a.only is None:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                results["swap"] = await swap_latency(a, session)
    finally:
        for s in servers:
            s.stop()
    return results


def summarize(results: dict, a: argparse.Namespace) -> str:
    if a.only == "swap":
        return _swap_line(results["swap"]) + "\n"
    lat = results["latency"]
    r50, s50 = pctl(lat["runner"], 0.5) * 1000, pctl(lat["supervisor"], 0.5) * 1000
    r95, s95 = pctl(lat["runner"], 0.95) * 1000, pctl(lat["supervisor"], 0.95) * 1000

    def med(server: str, c: int, key: str = "tok_s") -> float:
        xs = [r[key] for r in results["runs"] if r["server"] == server and r["concurrency"] == c]
        return statistics.median(xs) if xs else float("nan")

    lines = [
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; threads {a.threads}; n_parallel {a.parallel}; "
        f"n_ctx {a.ctx}; flash attention {a.flash_attn}; max_tokens {a.max_tokens}, ignore_eos, streaming; "
        f"{a.reps} alternating repetitions, medians; {time.strftime('%Y-%m-%d')}.",
        "",
        f"Added latency of the supervisor (one-token requests, {len(lat['runner'])} each): "
        f"p50 runner {r50:.2f} ms, supervisor {s50:.2f} ms → **+{s50 - r50:.2f} ms**; "
        f"p95 runner {r95:.2f} ms, supervisor {s95:.2f} ms → **+{s95 - r95:.2f} ms**.",
        "",
    ]
    if a.only == "latency":
        return "\n".join(lines) + "\n"
    lines += [
        "| clients | llama-server tok/s | runner tok/s | mullama serve tok/s | serve / runner | serve / llama-server "
        "| TTFT p50 ms (ls / runner / serve) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in a.concurrency:
        lt, rt, st = med("llama-server", c), med("mullama runner", c), med("mullama serve", c)
        lines.append(f"| {c} | {lt:.1f} | {rt:.1f} | {st:.1f} | **{st / rt:.3f}×** | **{st / lt:.2f}×** "
                     f"| {med('llama-server', c, 'ttft_p50_ms'):.0f} / {med('mullama runner', c, 'ttft_p50_ms'):.0f}"
                     f" / {med('mullama serve', c, 'ttft_p50_ms'):.0f} |")
    lines += ["", _swap_line(results["swap"])]
    return "\n".join(lines) + "\n"


def _swap_line(sw: dict) -> str:
    return (f"Swap latency (request → first token when the model must be swapped in, n_ctx 2048, budget for one "
            f"model, {sw['swaps']} swaps): p50 **{sw['swap_ttft_p50_ms']:.0f} ms**, max {sw['swap_ttft_max_ms']:.0f} ms;"
            f" the same request with the model resident: {sw['resident_ttft_p50_ms']:.0f} ms.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--flash-attn", choices=["on", "off"], default="on")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--latency-requests", type=int, default=40)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cache-ram-mib", type=int, default=8192,
                   help="host memory for idle slots' prefix caches in all three (their default; 0: in the KV cache)")
    p.add_argument("--only", choices=["swap", "latency"],
                   help="measure only the swap latency, or only the supervisor's added latency")
    p.add_argument("--out")
    p.add_argument("--json")
    a = p.parse_args(argv)
    results = asyncio.run(main_async(a))
    table = summarize(results, a)
    print(table)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(table)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
