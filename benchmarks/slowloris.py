#!/usr/bin/env python3
"""Slowloris against ``mullama serve`` (issue 16): how the server holds up, and what it keeps.

Starts a real server with default settings (no model is loaded), then opens ``--clients`` connections
that each send a request line and one header line every 2.5 s, never finishing the head. During each
round ``/health`` is timed every 2 s; after it, the supervisor's RSS and log are read. Rounds repeat
on the same server, so growth that does not level off shows.

    python benchmarks/slowloris.py --clients 5000 --rounds 3
    {"round": 1, "clients": 5000, "outcomes": {...}, "health_s": [...], "rss_mb": [62, 74], ...}

What to look for: ``/health`` answered during the flood (the connection cap makes room by cutting the
oldest headless connection), RSS that levels off, a handful of log lines and no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from supervisor_harness import Server, base_settings  # noqa: E402


def _health(url: str) -> float | str:
    t0 = time.monotonic()
    try:
        urllib.request.urlopen(url + "/health", timeout=30).read()
        return round(time.monotonic() - t0, 3)
    except Exception as exc:  # noqa: BLE001 (recorded, not raised: a refusal is a result)
        return type(exc).__name__ + ": " + str(exc)[:40]


async def _drip(port: int, outcomes: dict[str, int]) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        outcomes[f"connect: {exc.strerror}"] = outcomes.get(f"connect: {exc.strerror}", 0) + 1
        return
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(6):
            await asyncio.sleep(2.5)
            if reader.at_eof():
                break
            writer.write(b"X-Drip: 1\r\n")
            await writer.drain()
        line = (await asyncio.wait_for(reader.read(200), 30)).split(b"\r\n")[0].decode() or "closed"
    except Exception as exc:  # noqa: BLE001 (a reset is an outcome too)
        line = type(exc).__name__
    outcomes[line] = outcomes.get(line, 0) + 1
    writer.close()


async def _round(server: Server, clients: int) -> dict:
    proc = psutil.Process(server.proc.pid)
    rss0 = proc.memory_info().rss
    outcomes: dict[str, int] = {}
    t0 = time.monotonic()
    tasks = [asyncio.create_task(_drip(server.port, outcomes)) for _ in range(clients)]
    health = []
    for _ in range(6):
        await asyncio.sleep(2)
        health.append(await asyncio.to_thread(_health, server.url))
    await asyncio.gather(*tasks)
    await asyncio.sleep(1)
    return {"clients": clients, "seconds": round(time.monotonic() - t0, 1), "outcomes": outcomes,
            "health_s": health, "health_after_s": _health(server.url),
            "rss_mb": [rss0 >> 20, proc.memory_info().rss >> 20], "log_lines": len(server.lines),
            "tracebacks": sum("Traceback" in line for line in server.lines)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/mullama-slowloris")
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the clients need descriptors too
    server = Server(Path(args.workdir), base_settings())
    try:
        for i in range(args.rounds):
            print(json.dumps({"round": i + 1, **await _round(server, args.clients)}), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
