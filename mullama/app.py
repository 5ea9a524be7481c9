"""Wiring: ``create_app(settings)`` builds the supervisor's aiohttp application;
``serve(settings)`` runs it until SIGTERM/SIGINT (systemd ``Type=notify`` aware).

Start order (``cleanup_ctx``): HTTP session -> catalog scan -> lifecycle (and
preloads). Stop order is the reverse: drain requests, stop runners, close the
session. The supervisor never imports the C++ extension.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from mullama import assets, devices
from mullama.catalog import Catalog, ModelEntry
from mullama.config import Settings, is_loopback, model_settings
from mullama.errors import AssetError, InvalidModelName, ModelNotFound, ModelUnavailable
from mullama.lifecycle import Launch, Lifecycle
from mullama.observe import Observer
from mullama.policies import make_policy
from mullama.prefetch import make_predictor
from mullama.runner_client import RunnerClient
from mullama.runner_process import RunnerProcess, RunnerSpec
from mullama.scheduler import Scheduler
from mullama.swapping import Prefetcher, Variants

log = structlog.get_logger("mullama.app")

BUNDLED_FAMILY = "smollm2"
CATALOG_TTL_S = 10.0


class Supervisor:
    """The parts the handlers use: settings, the catalog, the lifecycle, one HTTP session."""

    def __init__(self, settings: Settings, *, launch: Launch | None = None,
                 probe: Callable[[], devices.Devices] = devices.probe, spec: RunnerSpec | None = None) -> None:
        self.settings = settings
        self.spec = spec or RunnerSpec(log_level=settings.log_level, drain_timeout=settings.drain_timeout)
        self.session: aiohttp.ClientSession | None = None
        self.observer = Observer(event_log=Path(settings.event_log) if settings.event_log else None)
        self.lifecycle = Lifecycle(settings, launch or self._launch, probe, emit=self.emit)
        self.scheduler = Scheduler(make_policy(settings.scheduler), self, max_queue=settings.max_queue,
                                   max_queue_per_model=settings.max_queue_per_model)
        self.variants = Variants(self.lifecycle, self.catalog, dict(settings.aliases), self.emit)
        self.prefetcher = Prefetcher(make_predictor(settings.prefetch), self.lifecycle, self.resolve, self.busy,
                                     self.emit, idle_s=settings.prefetch_idle,
                                     min_confidence=settings.prefetch_min_confidence)
        self.devices = probe
        self.started = time.time()
        self.closing = False
        self._catalog: Catalog | None = None
        self._scanned = 0.0

    # ------------------------------------------------------------------ scheduler effects

    def capacity(self, model: str) -> int:
        rt = self.lifecycle.runtimes.get(model)
        return rt.config.n_parallel if rt is not None else self.settings.n_parallel

    def emit(self, kind: str, **fields) -> None:
        self.observer.emit(kind, **fields)

    def busy(self) -> bool:
        """Anything queued, running or in flight anywhere."""
        return bool(self.scheduler.running() or self.scheduler.waiting()) or any(
            rt.in_flight for rt in self.lifecycle.runtimes.values())

    async def _launch(self, name: str) -> RunnerProcess:
        proc = await RunnerProcess.start(name, self.spec)
        proc.client = RunnerClient(self.session, proc.base_url, proc.token)
        return proc

    # ------------------------------------------------------------------ catalog

    def _extra(self) -> list[tuple[str, Path, str]]:
        extra = [(name, Path(m.path).expanduser(), "config") for name, m in self.settings.models.items() if m.path]
        if self.settings.bundled_model:
            with contextlib.suppress(AssetError):
                extra.append((BUNDLED_FAMILY, assets.default_model_path(download=False), "bundled"))
        return extra

    def catalog(self, *, refresh: bool = False) -> Catalog:
        if refresh or self._catalog is None or time.monotonic() - self._scanned > CATALOG_TTL_S:
            s = self.settings
            self._catalog = Catalog.scan([Path(d).expanduser() for d in s.models_dirs], aliases=s.aliases,
                                         extra=self._extra(), default_variants=s.default_variants,
                                         previous=self._catalog)
            self._scanned = time.monotonic()
        return self._catalog

    def default_model(self) -> str:
        if self.settings.default_model:
            return self.settings.default_model
        catalog = self.catalog()
        if any(e.family == BUNDLED_FAMILY and e.error is None for e in catalog.entries()):
            return BUNDLED_FAMILY
        usable = [e for e in catalog.entries() if e.error is None]
        if not usable:
            raise ModelNotFound("no model was named and the catalog is empty: put GGUF files in "
                                f"{', '.join(self.settings.models_dirs)} or set default_model")
        return usable[0].name

    def resolve(self, name: str) -> ModelEntry:
        """A model name (or "" for the default) -> its catalog entry; rescans once on a miss."""
        try:
            name = name or self.default_model()
            try:
                entry = self.catalog().resolve(name)
            except ModelNotFound:
                entry = self.catalog(refresh=True).resolve(name)
            return self.variants.route(name, entry)
        except (ModelNotFound, InvalidModelName, ModelUnavailable) as exc:
            exc.param = "model"
            raise

    def runner_config(self, entry: ModelEntry):
        return model_settings(self.settings, entry.name, entry.family)


SUPERVISOR = web.AppKey("supervisor", Supervisor)


def create_app(settings: Settings, *, supervisor: Supervisor | None = None) -> web.Application:
    from mullama import api, internal_api, ollama_api, store_api  # handlers import app's keys

    sup = supervisor or Supervisor(settings)
    app = web.Application(middlewares=api.middlewares(settings), client_max_size=settings.max_body_bytes)
    app[SUPERVISOR] = sup
    app.cleanup_ctx.append(_lifespan)
    api.add_routes(app)
    internal_api.add_routes(app)
    ollama_api.add_routes(app)
    store_api.add_routes(app)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    sup = app[SUPERVISOR]
    sup.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
                                        auto_decompress=False)
    await sup.observer.start()
    for spec in sup.settings.hooks:
        install_hooks(spec, sup.observer.hooks)
    sup.scheduler.start()
    catalog = sup.catalog(refresh=True)
    log.info("catalog", models=len(catalog.entries()), errors=sum(1 for e in catalog.entries() if e.error),
             dir_errors=catalog.dir_errors)
    preload = [name for name, m in sup.settings.models.items() if m.preload]
    for name in preload:
        sup.lifecycle._spawn(_preload(sup, name))  # noqa: SLF001 (the lifecycle owns its background tasks)
    try:
        yield
    finally:
        sup.closing = True
        await sup.lifecycle.shutdown()
        await sup.scheduler.stop()
        await sup.session.close()
        await sup.observer.stop()


def install_hooks(spec: str, hooks) -> None:
    """Import ``module:function`` and call it with the Hooks registry (it registers its callbacks)."""
    module_name, _, attr = spec.partition(":")
    try:
        setup = getattr(importlib.import_module(module_name), attr)
        setup(hooks)
    except Exception as exc:  # a broken hook module is reported and skipped; serving goes on
        log.error("hooks_failed", spec=spec, error=f"{type(exc).__name__}: {exc}")
        return
    log.info("hooks_installed", spec=spec)


async def _preload(sup: Supervisor, name: str) -> None:
    try:
        entry = sup.resolve(name)
        await sup.lifecycle.ensure_loaded(sup.lifecycle.runtime(entry), reason="preload")
    except Exception as exc:  # a failed preload is logged; serving goes on
        log.warning("preload_failed", model=name, error=str(exc))


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


async def serve(settings: Settings, *, on_listening: Callable[[int], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain (``drain_timeout``) and stop every runner."""
    app = create_app(settings)
    sup = app[SUPERVISOR]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 (aiohttp has no public getter)
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
    sup.closing = True
    await sup.lifecycle.shutdown()
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
