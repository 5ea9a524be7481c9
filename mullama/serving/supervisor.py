"""The serving domain in one object: settings, catalog, lifecycle, scheduler, variants, prefetch, events.

``Supervisor`` is what every API front end talks to: ``resolve`` a model name, ``check_open`` before new
work, and the services it holds (``lifecycle``, ``scheduler``, ``observer``, ``variants``,
``prefetcher``). ``start``/``stop`` bring them up and down in order (HTTP client session -> events and
hooks -> scheduler -> catalog scan -> preloads; the reverse on stop). ``shutdown`` is the one way down:
refuse new work, drain, stop every runner. It never imports the C++ extension, nor aiohttp's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

from mullama.config import RunnerConfig, Settings, model_settings
from mullama.core.errors import AssetError, InvalidModelName, ModelNotFound, ModelUnavailable, ShuttingDown
from mullama.hardware import devices
from mullama.models import assets
from mullama.models.catalog import Catalog, ModelEntry
from mullama.models.presets import PRESET_DIR, Preset, Presets
from mullama.observe.events import Observer
from mullama.observe.hooks import install_hooks
from mullama.runners.client import RunnerClient
from mullama.runners.process import RunnerProcess, RunnerSpec
from mullama.serving.lifecycle import Launch, Lifecycle
from mullama.serving.policies import make_policy
from mullama.serving.prefetch import Prefetcher, make_predictor
from mullama.serving.sampler import Sampler
from mullama.serving.scheduler import Scheduler
from mullama.serving.variants import Variants

log = structlog.get_logger("mullama.app")

BUNDLED_FAMILY = "smollm2"
CATALOG_TTL_S = 10.0


class Supervisor:
    """The parts the front ends use: settings, the catalog, the lifecycle, the scheduler, events."""

    def __init__(self, settings: Settings, *, launch: Launch | None = None,
                 probe: Callable[[], devices.Devices] = devices.probe, spec: RunnerSpec | None = None) -> None:
        self.settings = settings
        self._configs: dict[tuple[str, str], RunnerConfig] = {}
        # a runner that says nothing (not even its port) for load_timeout is as stalled as a load that stops
        # moving; it gets 10 s at least to start Python, and never more than 60
        self.spec = spec or RunnerSpec(log_level=settings.log_level, drain_timeout=settings.drain_timeout,
                                       reasoning_format=settings.reasoning_format,
                                       stream_interval_ms=settings.stream_interval * 1000,
                                       start_timeout=min(60.0, max(10.0, settings.load_timeout)))
        self.session: aiohttp.ClientSession | None = None
        self.observer = Observer(event_log=Path(settings.event_log) if settings.event_log else None)
        self.lifecycle = Lifecycle(settings, launch or self._launch, probe, emit=self.emit)
        self.scheduler = Scheduler(make_policy(settings.scheduler), self, max_queue=settings.max_queue,
                                   max_queue_per_model=settings.max_queue_per_model)
        self.variants = Variants(self.lifecycle, self.catalog, dict(settings.aliases), self.emit)
        self.prefetcher = Prefetcher(make_predictor(settings.prefetch), self.lifecycle, self.resolve, self.busy,
                                     self.emit, idle_s=settings.prefetch_idle,
                                     min_confidence=settings.prefetch_min_confidence)
        self.sampler = Sampler(self.observer.series, self.lifecycle, self.scheduler)
        self.devices = probe
        first_dir = Path(settings.models_dirs[0]).expanduser() if settings.models_dirs else None
        self.presets = Presets(settings.presets, first_dir / PRESET_DIR if first_dir else None)
        self.started = time.time()
        self._catalog: Catalog | None = None
        self._scanned = 0.0
        self._shutdown: asyncio.Future | None = None

    # ------------------------------------------------------------------ start, stop

    @property
    def closing(self) -> bool:
        """True once shutdown began: new generation requests get 503 (the lifecycle's one flag)."""
        return self.lifecycle.closing

    def check_open(self) -> None:
        if self.closing:
            raise ShuttingDown("the server is shutting down; no new requests")

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
                                             auto_decompress=False)
        await self.observer.start()
        for spec in self.settings.hooks:
            install_hooks(spec, self.observer.hooks)
        self.scheduler.start()
        self.sampler.start()
        catalog = self.catalog(refresh=True)
        log.info("catalog", models=len(catalog.entries()), errors=sum(1 for e in catalog.entries() if e.error),
                 dir_errors=catalog.dir_errors, presets=len(self.presets.all()))
        for problem in self.presets.problems:
            log.warning("preset_skipped", problem=problem)
        self.lifecycle.spawn(self.lifecycle.cache_ram.run(self.lifecycle.loaded))  # memory others take or free
        if self.lifecycle.workers.endpoints:  # what they offer, for /internal/models and /metrics
            self.lifecycle.spawn(self.lifecycle.workers.run(self.lifecycle.all))
        for name, m in self.settings.models.items():
            if m.preload:
                self.lifecycle.spawn(self._preload(name))

    async def shutdown(self) -> None:
        """Refuse new work, let running requests finish (``drain_timeout``), stop every runner. The signal
        handler and ``stop`` both call it; the second call waits for the first."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self.lifecycle.shutdown())
        await asyncio.shield(self._shutdown)

    async def stop(self) -> None:
        await self.shutdown()
        await self.sampler.stop()
        await self.scheduler.stop()
        if self.session is not None:
            await self.session.close()
        await self.observer.stop()

    async def _preload(self, name: str) -> None:
        try:
            entry = self.resolve(name)
            await self.lifecycle.ensure_loaded(self.lifecycle.runtime(entry), reason="preload")
        except Exception as exc:  # a failed preload is logged; serving goes on
            log.warning("preload_failed", model=name, error=str(exc))

    # ------------------------------------------------------------------ scheduler effects

    def capacity(self, model: str) -> int:
        rt = self.lifecycle.get(model)
        return rt.config.n_parallel if rt is not None else self.settings.n_parallel

    def emit(self, kind: str, **fields) -> None:
        self.observer.emit(kind, **fields)

    def busy(self) -> bool:
        """Anything queued, running or in flight anywhere."""
        return bool(self.scheduler.running() or self.scheduler.waiting()) or self.lifecycle.in_flight() > 0

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

    def default_or_none(self) -> str | None:
        try:
            return self.default_model()
        except ModelNotFound:
            return None

    def resolve(self, name: str) -> ModelEntry:
        """A model name (or "" for the default) -> its catalog entry; rescans once on a miss. A preset's name
        -> its base's entry: a preset is served by its base's runner, never by one of its own."""
        preset = None
        try:
            name = name or self.default_model()
            preset = self.presets.get(name)
            name = preset.settings.from_ if preset is not None else name
            try:
                entry = self.catalog().resolve(name)
            except ModelNotFound:
                entry = self.catalog(refresh=True).resolve(name)
            return self.variants.route(name, entry)
        except (ModelNotFound, InvalidModelName, ModelUnavailable) as exc:
            exc.param = "model"
            if preset is not None:
                exc.args = (f"preset {preset.name!r} is made from {preset.settings.from_!r}: {exc}",)
            raise

    def preset(self, name: str) -> Preset | None:
        """The preset ``name`` (or "", the default model) names, if it is one (``resolve`` gives its base)."""
        return self.presets.get(name or self.settings.default_model or "")

    def preset_entries(self) -> list[tuple[Preset, ModelEntry | None, str | None]]:
        """Every preset with its base's entry, or (None, why) when the base cannot be served; for listings."""
        out: list[tuple[Preset, ModelEntry | None, str | None]] = []
        for preset in self.presets.all():
            try:
                out.append((preset, self.catalog().resolve(preset.settings.from_), None))
            except (ModelNotFound, InvalidModelName, ModelUnavailable) as exc:
                out.append((preset, None, f"its base model {preset.settings.from_!r}: {exc}"))
        return out

    def runner_config(self, entry: ModelEntry) -> RunnerConfig:
        """``entry``'s effective settings (worked out once per name: the settings do not change)."""
        key = (entry.name, entry.family)
        config = self._configs.get(key)
        if config is None:
            config = self._configs[key] = model_settings(self.settings, entry.name, entry.family)
        return config
