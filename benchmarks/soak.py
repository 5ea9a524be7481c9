#!/usr/bin/env python3
"""Soak: a long closed loop of mixed, partly cancelled requests against ``mullama serve``.

Not part of CI. ``--concurrency`` clients (16) loop for ``--minutes`` (10): each request picks one
of two models (SmolLM2 Q4_1, bundled, and its Q8_0 variant), streaming or not, a random
``max_tokens``; a share of the streaming ones (``--cancel``, 25 %) hangs up after a few tokens or
before the first one. Recorded: every status code, SSE error events (a failure after the 200),
cancellations, tokens; every ``--sample`` seconds the RSS of the supervisor and of each runner
(psutil), and the runners' pids (a changed pid is a crash). At the end: every slot must be free.

Pass: zero 5xx (and zero stream errors), no runner restart, RSS drift under 5 % for the
supervisor and each runner, where drift compares the median RSS over the first ``--window``
seconds after ``--warmup`` with the median over the last ``--window`` seconds.

    .venv/bin/python benchmarks/soak.py --minutes 10 --concurrency 16 --out benchmarks/results/soak.json
    .venv/bin/python benchmarks/soak.py --url http://127.0.0.1:11434 --pid $(pidof -s mullama)  # a running server

Without ``--url`` it starts its own server (``tests/integration/supervisor_harness.Server``: two
runners of ``--threads`` threads each, ``--parallel`` slots each, keep-alive forever).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT))

MODELS = ("smollm2:q4_1", "smollm2:q8_0")
PROMPTS = ("Name a colour.", "Write a haiku about the sea.", "Count from one to twenty.",
           "Explain what a CPU cache is in two sentences.", "List five fruits.", "Tell me a short story.")


class Tally:
    """Outcomes of every request, and the RSS samples."""

    def __init__(self) -> None:
        self.status: collections.Counter[str] = collections.Counter()
        self.outcome: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.tokens = 0
        self.latency_ms: list[float] = []
        self.samples: list[dict] = []

    def fail(self, what: str) -> None:
        self.outcome["error"] += 1
        if len(self.errors) < 50:
            self.errors.append(what[:300])


async def one_request(session: aiohttp.ClientSession, url: str, rng: random.Random, cancel: float,
                      tally: Tally) -> None:
    model = rng.choice(MODELS)
    stream = rng.random() < 0.7
    hang_up = stream and rng.random() < cancel
    body = {"model": model, "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "max_tokens": rng.randint(8, 96), "temperature": rng.choice([0.0, 0.7]), "stream": stream,
            "ignore_eos": rng.random() < 0.5}
    after = rng.choice([0, 1, 3, 10]) if hang_up else None  # tokens before hanging up (0: maybe still queued)
    t0 = time.perf_counter()
    try:
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            tally.status[str(resp.status)] += 1
            if resp.status != 200:
                text = await resp.text()
                if resp.status >= 500:
                    tally.fail(f"{resp.status} {text}")
                else:
                    tally.outcome["refused"] += 1
                    tally.errors.append(f"{resp.status} {text}"[:300])
                return
            if not stream:
                data = await resp.json()
                tally.tokens += data["usage"]["completion_tokens"]
                tally.outcome["ok"] += 1
                tally.latency_ms.append((time.perf_counter() - t0) * 1000)
                return
            got = 0
            if after == 0:
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                resp.close()
                tally.outcome["cancelled"] += 1
                return
            async for line in resp.content:
                if line.startswith(b"data: {") and b'"error"' in line[:40]:
                    tally.fail(f"stream error: {line.decode(errors='replace')}")
                    return
                if line.startswith(b"data: ") and b'"content"' in line:
                    got += 1
                    if after is not None and got >= after:
                        resp.close()
                        tally.outcome["cancelled"] += 1
                        return
                if line.startswith(b"data: [DONE]"):
                    break
            tally.tokens += got
            tally.outcome["ok"] += 1
            tally.latency_ms.append((time.perf_counter() - t0) * 1000)
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.status["connection_error"] += 1
        tally.fail(f"{type(exc).__name__}: {exc}")
    except (ValueError, KeyError, TypeError) as exc:  # a 200 whose body is not what OpenAI's is
        tally.fail(f"bad response body: {type(exc).__name__}: {exc}")


async def worker(session: aiohttp.ClientSession, url: str, seed: int, end: float, cancel: float,
                 tally: Tally) -> None:
    rng = random.Random(seed)
    while time.monotonic() < end:
        await one_request(session, url, rng, cancel, tally)


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).memory_info().rss
    return None


async def sampler(session: aiohttp.ClientSession, url: str, pid: int | None, t0: float, end: float,
                  every: float, tally: Tally) -> None:
    while time.monotonic() < end:
        try:
            async with session.get(url + "/api/ps") as resp:
                runners = {m["name"]: m["pid"] for m in (await resp.json())["models"] if m["pid"]}
        except (aiohttp.ClientError, TimeoutError):
            runners = {}
        tally.samples.append({"t": round(time.monotonic() - t0, 1), "supervisor": _rss(pid),
                              "runners": {name: {"pid": p, "rss": _rss(p)} for name, p in runners.items()}})
        await asyncio.sleep(every)


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def drift(samples: list[dict], warmup: float, window: float, duration: float) -> dict[str, dict]:
    """Per process: median RSS in [warmup, warmup + window] vs in [duration - window, duration]."""
    series: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
    for s in samples:
        if s["supervisor"]:
            series["supervisor"].append((s["t"], s["supervisor"]))
        for name, r in s["runners"].items():
            if r["rss"]:
                series[f"runner {name}"].append((s["t"], r["rss"]))
    out = {}
    for name, points in series.items():
        first = _median([v for t, v in points if warmup <= t <= warmup + window])
        last = _median([v for t, v in points if t >= duration - window])
        pct = round((last - first) / first * 100, 2) if first and last else None
        out[name] = {"baseline_mib": round(first / 2**20, 1) if first else None,
                     "final_mib": round(last / 2**20, 1) if last else None, "drift_pct": pct,
                     "max_mib": round(max(v for _, v in points) / 2**20, 1)}
    return out


def restarts(samples: list[dict]) -> dict[str, list[int]]:
    pids: dict[str, list[int]] = collections.defaultdict(list)
    for s in samples:
        for name, r in s["runners"].items():
            if not pids[name] or pids[name][-1] != r["pid"]:
                pids[name].append(r["pid"])
    return {name: p for name, p in pids.items() if len(p) > 1}


async def settled(session: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/internal/scheduler") as resp:
                view = await resp.json()
            idle = not view["running"] and not view["queue"]
            if idle:  # and the runners agree: no slot still holds a request
                async with session.get(url + "/api/ps") as resp:
                    idle = all(m.get("in_flight", 0) == 0 for m in (await resp.json())["models"])
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            idle = False
        if idle:
            return True
        await asyncio.sleep(0.5)
    return False


async def soak(a: argparse.Namespace, url: str, pid: int | None) -> dict:
    tally = Tally()
    duration = a.minutes * 60
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        for model in MODELS:  # both loaded before the clock starts
            async with session.post(url + "/api/load", json={"model": model, "keep_alive": -1}) as resp:
                if resp.status != 200:
                    raise SystemExit(f"cannot load {model}: {resp.status} {await resp.text()}")
        t0 = time.monotonic()
        end = t0 + duration
        await asyncio.gather(sampler(session, url, pid, t0, end, a.sample, tally),
                             *(worker(session, url, a.seed + i, end, a.cancel, tally)
                               for i in range(a.concurrency)))
        elapsed = time.monotonic() - t0
        tally.samples.append({"t": round(elapsed, 1), "supervisor": _rss(pid), "runners": {
            name: {"pid": r["pid"], "rss": _rss(r["pid"])} for name, r in tally.samples[-1]["runners"].items()}})
        free = await settled(session, url)
        async with session.get(url + "/metrics") as resp:
            metrics = await resp.text()
    five_xx = sum(n for code, n in tally.status.items() if code.isdigit() and int(code) >= 500)
    rss = drift(tally.samples, a.warmup, a.window, elapsed)
    lat = sorted(tally.latency_ms)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(), "cpus": psutil.cpu_count(),
        "load_avg_end": [round(x, 2) for x in psutil.getloadavg()],
        "config": {"minutes": a.minutes, "concurrency": a.concurrency, "cancel_share": a.cancel,
                   "threads": a.threads, "parallel": a.parallel, "models": list(MODELS), "warmup_s": a.warmup,
                   "window_s": a.window, "sample_s": a.sample, "url": a.url or "(started its own)"},
        "duration_s": round(elapsed, 1),
        "requests": sum(tally.outcome.values()), "outcomes": dict(tally.outcome), "status": dict(tally.status),
        "five_xx": five_xx, "errors": tally.errors, "completion_tokens": tally.tokens,
        "requests_per_s": round(sum(tally.outcome.values()) / elapsed, 2),
        "latency_ms_p50_p95": [round(lat[len(lat) // 2], 1), round(lat[int(len(lat) * 0.95)], 1)] if lat else None,
        "rss": rss, "runner_restarts": restarts(tally.samples), "settled": free,
        "metrics_requests_failed": [ln for ln in metrics.splitlines()
                                    if ln.startswith("mullama_requests_failed_total{")],
        "samples": tally.samples,
    }
    drifts = [d["drift_pct"] for d in rss.values() if d["drift_pct"] is not None]
    result["pass"] = bool(five_xx == 0 and tally.outcome["error"] == 0 and not result["runner_restarts"]
                          and free and drifts and all(abs(d) < a.max_drift for d in drifts))
    return result


def summary(r: dict) -> str:
    lines = [(f"soak {r['duration_s']:.0f} s, concurrency {r['config']['concurrency']}, "
              f"cancel share {r['config']['cancel_share']}: {'PASS' if r['pass'] else 'FAIL'}"),
             f"  requests {r['requests']} ({r['requests_per_s']}/s): {r['outcomes']}; status {r['status']}",
             f"  5xx {r['five_xx']}, runner restarts {r['runner_restarts'] or 'none'}, slots freed: {r['settled']}",
             f"  completion tokens {r['completion_tokens']}, latency p50/p95 ms {r['latency_ms_p50_p95']}"]
    for name, d in r["rss"].items():
        lines.append(f"  RSS {name}: {d['baseline_mib']} -> {d['final_mib']} MiB ({d['drift_pct']:+} %), "
                     f"max {d['max_mib']} MiB")
    lines += [f"  error: {e}" for e in r["errors"][:10]]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--cancel", type=float, default=0.25, help="share of streaming requests that hang up")
    p.add_argument("--threads", type=int, default=1, help="threads per runner (own server only)")
    p.add_argument("--parallel", type=int, default=8, help="slots per runner (own server only)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline window")
    p.add_argument("--window", type=float, default=60.0, help="seconds of samples for baseline and final RSS")
    p.add_argument("--sample", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--max-drift", type=float, default=5.0, help="percent")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--url", help="target a running server instead of starting one")
    p.add_argument("--pid", type=int, help="the supervisor's pid, for its RSS, with --url")
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    a = p.parse_args()
    if a.warmup + 2 * a.window > a.minutes * 60:
        p.error("--minutes must cover --warmup plus two --window")
    server = None
    if a.url:
        url, pid = a.url.rstrip("/"), a.pid
    else:
        from supervisor_harness import Server, base_settings, q8_variant

        q8_variant()
        work = Path(tempfile.mkdtemp(prefix="mullama-soak-"))
        server = Server(work, base_settings(threads=a.threads, threads_batch=a.threads, n_parallel=a.parallel,
                                            keep_alive=-1, log_level="warning", drain_timeout="30s"))
        url, pid = server.url, server.proc.pid
    try:
        result = asyncio.run(soak(a, url, pid))
    finally:
        if server is not None:
            code = server.stop()
            print(f"server stopped with exit code {code}")
    print(summary(result))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
