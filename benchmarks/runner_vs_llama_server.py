#!/usr/bin/env python3
"""mullama's runner vs llama.cpp's llama-server, same model, same threads, one run.

Both servers are built from the same pinned llama.cpp source (llama-server by
benchmarks/baselines.py) and serve SmolLM2-135M-Instruct with the same
context, slots (n_parallel 8), threads, flash-attention setting and unified
KV cache. A closed-loop workload -- C clients, each sending streaming
completions of max_tokens 128 with ignore_eos, one after another -- runs at
C = 1, 4, 8, 16, alternating servers (ABAB...) so that machine noise hits
both alike; medians are reported.

Measured per server and concurrency: aggregate completion tok/s (all tokens /
wall time), TTFT p50/p95 (client side, to the first content), peak RSS of the
server process. Also: the runner's single-stream decode tok/s against
llama-bench tg128 (same invocation), and the runner's Python-side cost at 8
streams: CPU time of the runner's Python (main) thread / wall time, next to
the C++ loop thread's CPU time.

    python benchmarks/runner_vs_llama_server.py --threads 2 --reps 3 --out docs/runner-bench.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from baselines import build_tools  # noqa: E402
from engine_vs_llama_bench import cpu_model  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten year old child, step by step.",
    "List some practical tips for learning a new programming language quickly.",
    "Describe the water cycle and why it matters for agriculture and cities.",
    "What are the main differences between a violin and a viola? Explain in detail.",
    "Give a recipe for a simple vegetable soup that can be made in thirty minutes.",
    "Summarise the history of the bicycle from its invention to the present day.",
    "Why do cats purr? Describe the current scientific explanations.",
]


def pctl(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(q * (len(xs) - 1)))))
    return xs[k]


class Server:
    name: str
    proc: subprocess.Popen
    url: str

    def rss(self) -> int:
        try:
            return psutil.Process(self.proc.pid).memory_info().rss
        except psutil.Error:
            return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LlamaServer(Server):
    name = "llama-server"

    def __init__(self, exe: Path, model: Path, a: argparse.Namespace) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [str(exe), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", str(a.threads),
               "-tb", str(a.threads), "-np", str(a.parallel), "-c", str(a.ctx), "-b", "2048", "-ub", "512",
               "-fa", a.flash_attn, "-kvu", "--no-webui", "-cram", str(a.cache_ram_mib)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        await _wait(lambda: session.get(self.url + "/health"), lambda r: r.status == 200, self.proc)

    async def request(self, session: aiohttp.ClientSession, prompt: str, max_tokens: int) -> tuple[float, int]:
        body = {"prompt": prompt, "n_predict": max_tokens, "ignore_eos": True, "stream": True, "temperature": 0,
                "cache_prompt": True}
        t0 = time.perf_counter()
        ttft = None
        n = 0
        async with session.post(self.url + "/completion", json=body) as resp:
            resp.raise_for_status()
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data: "):
                    continue
                msg = json.loads(line[6:])
                if msg.get("content") and ttft is None:
                    ttft = time.perf_counter() - t0
                if msg.get("stop"):
                    n = msg.get("tokens_predicted", n)
        return (ttft if ttft is not None else time.perf_counter() - t0), n


class Runner(Server):
    name = "mullama runner"

    def __init__(self, model: Path, a: argparse.Namespace) -> None:
        self.token = secrets.token_hex(16)
        env = dict(os.environ, MULLAMA_RUNNER_TOKEN=self.token)
        self.proc = subprocess.Popen([sys.executable, "-m", "mullama.runner", "--port", "0", "--log-level", "warning"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        first = json.loads(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{first['port']}"
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.load = {"model": str(model), "n_ctx": a.ctx, "n_parallel": a.parallel, "n_threads": a.threads,
                     "n_threads_batch": a.threads, "n_batch": 2048, "n_ubatch": 512, "flash_attn": a.flash_attn,
                     "kv_unified": True, "cache_ram": a.cache_ram_mib << 20}

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for op in ("alloc", "commit"):
            async with session.post(self.url + "/load", json={"op": op, **(self.load if op == "alloc" else {})},
                                    headers=self.headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"runner {op} failed: {await r.text()}")

    async def request(self, session: aiohttp.ClientSession, prompt: str, max_tokens: int) -> tuple[float, int]:
        body = {"prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "stream": True, "temperature": 0}
        t0 = time.perf_counter()
        ttft = None
        n = 0
        async with session.post(self.url + "/completion", json=body, headers=self.headers) as resp:
            resp.raise_for_status()
            async for raw in resp.content:
                msg = json.loads(raw)
                if msg.get("content") and ttft is None:
                    ttft = time.perf_counter() - t0
                if msg.get("done"):
                    n = msg["stats"]["completion_tokens"]
                    self.last_stats = msg["stats"]
        return (ttft if ttft is not None else time.perf_counter() - t0), n

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds of the runner's main (Python) thread and of all other threads."""
        p = psutil.Process(self.proc.pid)
        main = other = 0.0
        for t in p.threads():
            if t.id == p.pid:
                main += t.user_time + t.system_time
            else:
                other += t.user_time + t.system_time
        return {"main": main, "other": other}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait(call, ok, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            async with call() as r:
                if ok(r):
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("server did not become ready")


async def closed_loop(server: Server, session: aiohttp.ClientSession, concurrency: int, per_client: int,
                      max_tokens: int) -> dict:
    ttfts: list[float] = []
    tokens = 0
    peak_rss = server.rss()

    async def client(i: int) -> None:
        nonlocal tokens
        for k in range(per_client):
            prompt = f"[{i}-{k}] " + PROMPTS[(i + k) % len(PROMPTS)]
            ttft, n = await server.request(session, prompt, max_tokens)
            ttfts.append(ttft)
            tokens += n

    async def sample_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, server.rss())
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_rss())
    cpu0 = server.thread_cpu() if isinstance(server, Runner) else None
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    sampler.cancel()
    out = {"tok_s": tokens / wall, "tokens": tokens, "wall_s": wall, "ttft_p50_ms": pctl(ttfts, 0.5) * 1000,
           "ttft_p95_ms": pctl(ttfts, 0.95) * 1000, "peak_rss_mib": peak_rss / 2**20}
    if cpu0 is not None:
        cpu1 = server.thread_cpu()
        out["python_cpu_s"] = cpu1["main"] - cpu0["main"]
        out["engine_cpu_s"] = cpu1["other"] - cpu0["other"]
        out["python_share"] = out["python_cpu_s"] / wall
    return out


def llama_bench_tg(exe: Path, model: Path, threads: int, flash_attn: str) -> float:
    out = subprocess.run([str(exe), "-m", str(model), "-t", str(threads), "-p", "0", "-n", "128", "-r", "3",
                          "-fa", "1" if flash_attn == "on" else "0", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)[0]["avg_ts"])


async def main_async(a: argparse.Namespace) -> dict:
    from mullama.models.assets import default_model_path

    model = Path(a.model) if a.model else default_model_path()
    tools = build_tools(["llama-server", "llama-bench"])
    servers = [LlamaServer(tools["llama-server"], model, a), Runner(model, a)]
    results: dict = {"runs": []}
    timeout = aiohttp.ClientTimeout(total=600)
    conn = aiohttp.TCPConnector(limit=0, force_close=True)  # llama-server closes streamed connections: no reuse, for both
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
            for s in servers:
                await s.ready(session)
            # warm both (first requests pay page faults and graph allocation)
            for s in servers:
                await closed_loop(s, session, 2, 1, 16)
            for rep in range(a.reps):
                for c in a.concurrency:
                    order = servers if rep % 2 == 0 else servers[::-1]
                    for s in order:
                        r = await closed_loop(s, session, c, max(1, a.requests // c) if c < a.requests else 1,
                                              a.max_tokens)
                        r.update(server=s.name, concurrency=c, rep=rep)
                        results["runs"].append(r)
                        print(f"rep {rep} c={c:2d} {s.name:15s} {r['tok_s']:7.1f} tok/s ttft p50 "
                              f"{r['ttft_p50_ms']:7.1f} ms", file=sys.stderr, flush=True)
            # single stream decode vs llama-bench tg128, interleaved
            runner = servers[1]
            singles, benches = [], []
            for _ in range(a.reps):
                await runner.request(session, PROMPTS[0], 128)
                st = runner.last_stats
                singles.append((st["completion_tokens"] - 1) / st["decode_ms"] * 1000)
                benches.append(llama_bench_tg(tools["llama-bench"], model, a.threads, a.flash_attn))
            results["single"] = {"runner_decode_tok_s": statistics.median(singles),
                                 "llama_bench_tg128_tok_s": statistics.median(benches)}
    finally:
        for s in servers:
            s.stop()
    return results


def summarize(results: dict, a: argparse.Namespace) -> str:
    rows = []
    for c in a.concurrency:
        def med(server: str, key: str) -> float:
            xs = [r[key] for r in results["runs"] if r["server"] == server and r["concurrency"] == c and key in r]
            return statistics.median(xs) if xs else float("nan")
        ls, mr = "llama-server", "mullama runner"
        rows.append((c, med(ls, "tok_s"), med(mr, "tok_s"), med(ls, "ttft_p50_ms"), med(mr, "ttft_p50_ms"),
                     med(ls, "ttft_p95_ms"), med(mr, "ttft_p95_ms"), med(ls, "peak_rss_mib"), med(mr, "peak_rss_mib"),
                     med(mr, "python_share")))
    lines = [
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; threads {a.threads}; n_parallel {a.parallel}; "
        f"n_ctx {a.ctx}; flash attention {a.flash_attn}; unified KV; max_tokens {a.max_tokens}, ignore_eos, "
        f"streaming; {a.reps} alternating repetitions, medians; {time.strftime('%Y-%m-%d')}.",
        "",
        "| clients | llama-server tok/s | runner tok/s | ratio | TTFT p50 ms (ls / runner) | TTFT p95 ms (ls / runner) "
        "| peak RSS MiB (ls / runner) | runner Python thread CPU / wall |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, lt, mt, l50, m50, l95, m95, lr, mrss, py in rows:
        lines.append(f"| {c} | {lt:.1f} | {mt:.1f} | **{mt / lt:.2f}×** | {l50:.0f} / {m50:.0f} | {l95:.0f} / {m95:.0f} "
                     f"| {lr:.0f} / {mrss:.0f} | {py * 100:.1f}% |")
    s = results["single"]
    lines += ["", f"Single-stream decode: runner {s['runner_decode_tok_s']:.1f} tok/s vs llama-bench tg128 "
                  f"{s['llama_bench_tg128_tok_s']:.1f} tok/s: **{s['runner_decode_tok_s'] / s['llama_bench_tg128_tok_s']:.2f}×**."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--flash-attn", choices=["on", "off"], default="on")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8, 16])
    p.add_argument("--requests", type=int, default=16, help="requests per concurrency level (at least one per client)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cache-ram-mib", type=int, default=8192,
                   help="host memory for idle slots' prefix caches in both servers (their default; 0: in the KV cache)")
    p.add_argument("--model")
    p.add_argument("--out", help="write the markdown table here")
    p.add_argument("--json", help="write raw results here")
    a = p.parse_args(argv)
    results = asyncio.run(main_async(a))
    table = summarize(results, a)
    print(table)
    if a.out:
        Path(a.out).write_text(table)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
