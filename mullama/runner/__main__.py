"""``python -m mullama.runner --host 127.0.0.1 --port 0``

Serves one model over localhost HTTP. The first line on stdout is JSON:
``{"port": N, "pid": P}``. The bearer token comes from MULLAMA_RUNNER_TOKEN.
The runner dies with its parent (PR_SET_PDEATHSIG, plus a parent watch);
SIGTERM drains in-flight requests, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ipaddress
import json
import os
import signal
import sys

import structlog
from aiohttp import web

from mullama import engine
from mullama.core import logs
from mullama.runner.server import create_app
from mullama.runner.service import RunnerService

log = structlog.get_logger("mullama.runner")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL us when the parent dies; cover the race where it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent watch below still works
    if os.getppid() != parent:
        os._exit(1)


async def watch_parent(parent: int) -> None:
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            log.warning("parent_gone", parent=parent)
            os._exit(1)


async def serve(args: argparse.Namespace, token: str) -> None:
    service = RunnerService(max_queue=args.max_queue, repeat_limit=args.repeat_limit,
                            stream_interval_ms=args.stream_interval_ms, reasoning_format=args.reasoning_format)
    app = create_app(service, token)
    # Signals first: a SIGTERM that arrives right after the port line still drains.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 (aiohttp exposes no public getter)
    sys.stdout.write(json.dumps({"port": port, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    log.info("listening", host=args.host, port=port)
    watcher = asyncio.create_task(watch_parent(args.parent))
    await stop.wait()
    log.info("draining", timeout_s=args.drain_timeout)
    await service.drain(args.drain_timeout)
    watcher.cancel()
    await runner.cleanup()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mullama.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port (reported on stdout)")
    parser.add_argument("--max-queue", type=int, default=64, help="requests that may wait for a slot")
    parser.add_argument("--repeat-limit", type=int, default=64,
                        help="end a request whose output repeats one block more than N times (0: off)")
    parser.add_argument("--stream-interval-ms", type=float, default=20.0,
                        help="wake Python for streamed tokens at most this often (first and last tokens go at once)")
    parser.add_argument("--reasoning-format", default="auto", choices=["none", "auto", "deepseek", "deepseek-legacy"],
                        help="how a reasoning model's thinking is returned when a request does not say")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds SIGTERM waits for requests")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="json", choices=["json", "console"])
    args = parser.parse_args(argv)
    args.parent = os.getppid()

    try:
        if not ipaddress.ip_address(args.host).is_loopback:
            parser.error(f"--host must be a loopback address, got {args.host}")
    except ValueError:
        if args.host != "localhost":
            parser.error(f"--host must be a loopback address, got {args.host}")
    token = os.environ.get("MULLAMA_RUNNER_TOKEN", "")
    if not token:
        parser.error("MULLAMA_RUNNER_TOKEN is not set: the runner refuses to serve without a token")
    die_with_parent(args.parent)
    logs.configure(args.log_level, args.log_format)
    engine.follow_log_level(args.log_level)
    asyncio.run(serve(args, token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
