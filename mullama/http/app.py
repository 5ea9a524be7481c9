"""The composition root: ``create_app(settings)`` wires the supervisor and every route module into one
aiohttp application; ``serve(settings)`` runs it until SIGTERM/SIGINT (systemd ``Type=notify`` aware).
Nothing imports this module but the CLI.

Start order (``cleanup_ctx``): the supervisor (HTTP client session, events, scheduler, catalog scan,
preloads), then the model store. Stop order is the reverse; the supervisor's ``shutdown`` (drain, stop
the runners) is the one way down, whether a signal or the app's cleanup gets there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from mullama.config import Settings, is_loopback
from mullama.http import adapters as adapter_routes
from mullama.http import internal, manage, tokenize, ui
from mullama.http.anthropic import routes as anthropic_routes
from mullama.http.connections import Guard, GuardedSite, connection_cap, limit_accept_errors, raise_fd_limit
from mullama.http.keys import CONNECTIONS, SUPERVISOR
from mullama.http.middleware import middlewares
from mullama.http.ollama import presets as preset_routes
from mullama.http.ollama import routes as ollama_routes
from mullama.http.ollama import store_routes
from mullama.http.openai import routes as openai_routes
from mullama.http.responses import routes as responses_routes
from mullama.serving.supervisor import Supervisor

log = structlog.get_logger("mullama.app")

#: Routes whose errors are Ollama's ``{"error": "message"}`` (the ollama client reads that shape): the
#: paths the Ollama route tables declare. Every other route answers OpenAI's; /api/ps keeps OpenAI's:
#: it is shared with ``mullama ps``.
OLLAMA_ERROR_PATHS = ollama_routes.PATHS | store_routes.PATHS | preset_routes.PATHS


def create_app(settings: Settings, *, supervisor: Supervisor | None = None) -> web.Application:
    sup = supervisor or Supervisor(settings)
    app = web.Application(middlewares=middlewares(settings, OLLAMA_ERROR_PATHS, anthropic_routes.PATHS),
                          client_max_size=settings.max_body_bytes)
    app[SUPERVISOR] = sup
    app.cleanup_ctx.append(_lifespan)
    openai_routes.add_routes(app)
    anthropic_routes.add_routes(app)
    responses_routes.add_routes(app)
    manage.add_routes(app)
    tokenize.add_routes(app)
    internal.add_routes(app)
    adapter_routes.add_routes(app)
    ollama_routes.add_routes(app)
    store_routes.add_routes(app)
    preset_routes.add_routes(app)
    ui.add_routes(app)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    sup = app[SUPERVISOR]
    await sup.start()
    try:
        yield
    finally:
        await sup.stop()


# ---------------------------------------------------------------------- serving


def sd_notify(message: str) -> bool:
    """Send ``message`` to systemd's NOTIFY_SOCKET (Type=notify); False when there is none."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
        return True
    return False


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening TCP sockets on every address of ``host`` (``localhost``: 127.0.0.1 and ::1), all on one
    port (the first one's when ``port`` is 0); OSError if the port is taken or the address is not ours."""
    socks: list[socket.socket] = []
    seen: set[tuple] = set()
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                  flags=socket.AI_PASSIVE):
            if address[:2] in seen:
                continue
            seen.add(address[:2])
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:
                address = (address[0], socks[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(1024)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


async def serve(settings: Settings, *, on_listening: Callable[[int], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain (``drain_timeout``) and stop every runner."""
    app = create_app(settings)
    sup = app[SUPERVISOR]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    socks = listen(settings.host, settings.port)  # first: a busy port fails before anything (preloads) starts
    limit_accept_errors(loop)
    fd_limit = raise_fd_limit()
    cap = connection_cap(settings.max_connections, fd_limit)
    if cap < settings.max_connections:
        log.warning("max_connections_lowered", max_connections=settings.max_connections, to=cap,
                    open_files_limit=fd_limit)
    app[CONNECTIONS] = guard = Guard(max_connections=cap, header_timeout=settings.header_timeout)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    assert runner.server is not None
    guard.server = runner.server
    for sock in socks:
        await GuardedSite(runner, sock, guard).start()
    port = socks[0].getsockname()[1]
    if not is_loopback(settings.host) and not settings.api_keys:
        log.warning("public_without_keys", host=settings.host,
                    detail="anyone who can reach this address can use the server")
    log.info("listening", url=f"http://{settings.host}:{port}", scheduler=settings.scheduler)
    sd_notify(f"READY=1\nSTATUS=serving on {settings.host}:{port}\nMAINPID={os.getpid()}")
    if on_listening is not None:
        on_listening(port)
    await stop.wait()
    sd_notify("STOPPING=1\nSTATUS=draining")
    log.info("draining", timeout_s=settings.drain_timeout)
    await sup.shutdown()
    await runner.cleanup()
    log.info("stopped")


def main_serve(settings: Settings) -> int:
    try:
        asyncio.run(serve(settings, on_listening=lambda port: print(
            f"mullama serving on http://{settings.host}:{port}", file=sys.stderr, flush=True)))
    except OSError as exc:
        print(f"mullama serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 0
