#!/usr/bin/env python3
"""Where the supervisor spends its CPU: py-spy on `mullama serve` under N streaming clients.

Starts a server (tests/integration/supervisor_harness.py settings), warms it, runs N closed-loop
clients of streaming /v1/completions (max_tokens 128, ignore_eos) for --seconds, samples the
supervisor process with `py-spy record --nonblocking` (pip install py-spy), and prints the
supervisor's CPU time and the functions with the most samples.

    python benchmarks/profile_supervisor.py --clients 8 --seconds 20
    python benchmarks/profile_supervisor.py --clients 1 --max-tokens 1 --rate 1000 --inclusive  # per request
    python benchmarks/profile_supervisor.py --clients 1 --max-tokens 1 --no-spy  # CPU a request, no sampler
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from supervisor_harness import Server, base_settings  # noqa: E402


async def run(a: argparse.Namespace, out: Path) -> tuple[float, int]:
    server = Server(Path(tempfile.mkdtemp(prefix="mullama-prof-")),
                    base_settings(n_parallel=8, n_ctx=8192, prefetch="none", log_level="warning"))
    body = {"model": "smollm2", "prompt": "Tell me a story", "max_tokens": a.max_tokens, "ignore_eos": True,
            "stream": True, "temperature": 0}
    try:
        async with aiohttp.ClientSession() as session:
            async def one() -> None:
                async with session.post(server.url + "/v1/completions", json=body) as resp:
                    async for _ in resp.content:
                        pass

            done = 0

            async def loop(stop: float) -> None:
                nonlocal done
                while time.monotonic() < stop:
                    await one()
                    done += 1

            for _ in range(20):  # connections, caches and code paths warm
                await one()
            sup = psutil.Process(server.proc.pid)
            runners = sup.children()
            cpu0, run0 = sup.cpu_times(), [r.cpu_times() for r in runners]
            stop = time.monotonic() + a.seconds + 2
            spy = None if a.no_spy else subprocess.Popen(
                [a.py_spy, "record", "-p", str(server.proc.pid), "-d", str(a.seconds), "-f", "raw", "-r", str(a.rate),
                 "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.monotonic()
            await asyncio.gather(*(loop(stop) for _ in range(a.clients)))
            wall = time.monotonic() - t0
            if spy is not None:
                spy.wait()
            t = sup.cpu_times()
            ran = sum(b.user + b.system - a0.user - a0.system for a0, b in zip(run0, (r.cpu_times() for r in runners)))
            print(f"supervisor CPU: user {t.user - cpu0.user:.2f} s, system {t.system - cpu0.system:.2f} s; "
                  f"runner CPU {ran:.2f} s over {wall:.1f} s ({ran / max(done, 1) * 1000:.1f} ms a request, "
                  f"{wall / max(done, 1) * 1000:.1f} ms of wall time a request)")
            return t.user + t.system - cpu0.user - cpu0.system, done
    finally:
        server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--max-tokens", type=int, default=128, help="1: the per-request cost rather than per token")
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--inclusive", action="store_true", help="count every frame on the stack, not only the top")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")))
    p.add_argument("--no-spy", action="store_true", help="only the CPU times: no sampler taking its own share")
    a = p.parse_args()
    fd, name = tempfile.mkstemp(suffix=".txt")  # py-spy's raw samples
    os.close(fd)
    out = Path(name)
    try:
        cpu, requests = asyncio.run(run(a, out))
        text = out.read_text()
    finally:
        out.unlink(missing_ok=True)
    if a.no_spy:
        print(f"supervisor CPU: {cpu:.2f} s with {a.clients} clients, {requests} requests "
              f"({cpu / max(requests, 1) * 1000:.2f} ms a request)")
        return 0
    own: collections.Counter = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        frames = stack.split(";")
        for frame in (set(frames) if a.inclusive else frames[-1:]):
            own[frame] += int(n)
    print(f"supervisor CPU: {cpu:.2f} s over ~{a.seconds + 2} s with {a.clients} clients, {requests} requests "
          f"({cpu / max(requests, 1) * 1000:.2f} ms a request); {total} busy samples "
          f"(py-spy samples at {a.rate} Hz: {a.seconds * a.rate} possible)")
    for frame, n in own.most_common(a.top):
        print(f"{n / max(total, 1) * 100:5.1f}%  {frame[:140]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
