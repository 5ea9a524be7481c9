"""How a model gets loaded: the steps of a load and making room for it, and their pure decisions.

The pure parts are table-tested: the runner's load parameters (``load_params``), the next plan after a
failed alloc (``next_placement``), and how long a crashed runner waits before it restarts
(``crash_backoff``). ``Loading`` is the half of ``Lifecycle`` that runs a load and frees memory for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import structlog

from mullama import wire
from mullama.config import RunnerConfig, Settings
from mullama.config.tensors import expand_overrides
from mullama.core import errors
from mullama.core.units import format_size
from mullama.hardware.cores import Allotment
from mullama.hardware.devices import Devices
from mullama.hardware.draft import with_draft
from mullama.hardware.overrides import model_cost
from mullama.hardware.placement import Placement, plan
from mullama.hardware.spread import plan_spread
from mullama.models.entry import ModelEntry
from mullama.models.gguf_header import read_header
from mullama.serving.cache_ram import CacheRam
from mullama.serving.cores import Cores, threads_batch
from mullama.serving.eviction import Candidate, choose_victim
from mullama.serving.runtime import Handle, Runtime, State
from mullama.serving.workers import Workers

Launch = Callable[[str], Awaitable[Handle]]

log = structlog.get_logger("mullama.lifecycle")

MAX_ALLOC_ATTEMPTS = 5
HEALTH_POLL_S = 0.25


def load_params(entry: ModelEntry, cfg: RunnerConfig, op: wire.LoadOp, placement: Placement | None,
                n_gpu_layers: int | None = None, cpu: Allotment | None = None,
                cache_ram: int | None = None) -> wire.LoadParams:
    ngl = placement.n_gpu_layers if placement is not None else (n_gpu_layers if n_gpu_layers is not None else 0)
    threads = (cpu.threads, threads_batch(cfg, cpu)) if cpu is not None else (cfg.threads, cfg.threads_batch)
    return wire.LoadParams(
        op=op, model=str(entry.path), n_ctx=cfg.n_ctx, n_parallel=cfg.n_parallel, n_batch=cfg.n_batch,
        n_ubatch=cfg.n_ubatch, n_threads=threads[0], n_threads_batch=threads[1], n_gpu_layers=ngl,
        tensor_split=list(placement.tensor_split) if placement is not None else [], flash_attn=cfg.flash_attn,
        type_k=cfg.cache_type_k, type_v=cfg.cache_type_v, use_mmap=cfg.use_mmap, use_mlock=cfg.use_mlock,
        main_gpu=cfg.main_gpu, split_mode=cfg.split_mode, chat_template=chat_template_of(cfg),
        offload_kqv=cfg.kv_offload, swa_full=cfg.swa_full, kv_unified=cfg.kv_unified, adapter_turn=cfg.adapter_turn,
        cache_ram=cfg.cache_ram if cache_ram is None else cache_ram,  # None: the model's own (serving/cache_ram.py)
        rope_scaling="" if cfg.rope_scaling == "model" else cfg.rope_scaling,  # type: ignore[arg-type]
        rope_freq_base=cfg.rope_freq_base, rope_freq_scale=cfg.rope_freq_scale, yarn_orig_ctx=cfg.yarn_orig_ctx,
        check_tensors=cfg.check_tensors, kv_overrides=list(cfg.override_kv),
        pooling=cfg.pooling,  # type: ignore[arg-type]
        tensor_overrides=list(expand_overrides(cfg)), numa=cfg.numa,  # type: ignore[arg-type]
        context_shift=cfg.context_shift,
        adapters=[wire.AdapterSpec(path=a.path, scale=a.scale, name=a.name or "") for a in cfg.adapters],
        cores=list(cpu.cores) if cpu is not None else [],
        rpc_servers=list(placement.rpc_servers) if placement is not None else [],
        speculative=wire.Speculative(**{**msgspec.structs.asdict(cfg.speculative),
                                        "types": list(cfg.speculative.types or ())})
        if cfg.speculative.types else None)


def chat_template_of(cfg: RunnerConfig) -> str:
    """The template the runner is given: a Jinja file's text, or a built-in name as it is."""
    t = cfg.chat_template
    if "/" in t or t.endswith(".jinja"):
        try:
            return Path(t).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise errors.LoadFailed(f"cannot read the chat template file {t}: {exc}") from None
    return t


def crash_backoff(recent_crashes: int) -> float:
    """Seconds before a crashed runner may restart: 0, 1, 2, 4 ... capped at 30."""
    return 0.0 if recent_crashes <= 1 else min(30.0, 2.0 ** (recent_crashes - 2))


def next_placement(current: Placement, n_layer: int, seen: set[tuple]) -> int | None:
    """After a failed alloc: fewer GPU layers (a tenth of the model at a time); None when nothing is left to try."""
    if current.n_gpu_layers <= 0:
        return None
    ngl = max(0, current.n_gpu_layers - max(1, n_layer // 10))
    return None if (ngl, ()) in seen else ngl


class Loading:
    """The load steps and the memory decisions of ``Lifecycle`` (its base class; the same state).

    A load runs fit -> plan (making room: ``eviction.choose_victim``, then plan again) -> alloc (fewer GPU
    layers after an out-of-memory, up to ``MAX_ALLOC_ATTEMPTS``) -> commit, while ``_monitor`` watches
    the runner's progress and kills a load that stops moving for ``load_timeout``."""

    settings: Settings
    runtimes: dict[str, Runtime]
    counters: collections.Counter
    _launch: Launch
    _probe: Callable[[], Devices]
    _emit: Callable[..., None]
    cores: Cores
    cache_ram: CacheRam
    workers: Workers

    async def _load_runner(self, rt: Runtime, protect: frozenset[str]) -> None:
        entry, cfg = rt.entry, rt.config
        if entry.header is None:
            raise errors.ModelUnavailable(f"{entry.name}: {entry.error or 'no GGUF header'}")
        handle = await self._launch(entry.name)
        rt.handle, rt.lost = handle, 0
        self.spawn(self._watch(rt, handle))
        monitor = self.spawn(self._monitor(rt, handle))
        try:
            gpus = len(self._probe().gpus)
            fit = await handle.client.load(load_params(entry, cfg, "fit", None, -1 if gpus else 0))
            header = entry.header
            cost = model_cost(header, fit.devices, expand_overrides(cfg), gpus)  # tensor overrides move weights
            spec = cfg.speculative
            if spec.draft_model:  # its weights, KV cache and compute buffer load with it
                draft = await asyncio.to_thread(read_header, Path(spec.draft_model))
                cost = with_draft(cost, draft, n_ctx=cfg.n_ctx, type_k=cfg.cache_type_k, type_v=cfg.cache_type_v,
                                  draft_gpu_layers=spec.draft_gpu_layers, n_gpus=gpus)
            placement = rt.placement = await self._make_room(rt, cost, protect)  # (its RPC workers are held
            # from now on, workers.holders; a model all off the CPU gets one core, cores.demand)
            # cores only now: a model evicted for this one drains with all of its cores (an idle runner waiting
            # for room held half of a 2-core box and slowed the drain fourfold), then the others make room
            # before this one allocates (the runner pins its threads at alloc)
            cpu = rt.cpu = self.cores.for_load(rt, self.active())
            self.spawn(self.cores.rebalance(self.active()))
            cache = await self.cache_ram.for_load(rt, self.loaded())  # the others' caches shrink first
            seen: set[tuple] = set()
            for attempt in range(1, MAX_ALLOC_ATTEMPTS + 1):
                seen.add((placement.n_gpu_layers, placement.tensor_split))
                try:
                    await handle.client.load(load_params(entry, cfg, "alloc", placement, cpu=cpu, cache_ram=cache))
                    break
                except errors.InvalidArgument as exc:
                    if not placement.rpc_servers:
                        raise
                    raise errors.LoadFailed(f"{rt.name}: {exc}") from None  # a worker gone since its probe
                except errors.OutOfMemory as exc:
                    ngl = next_placement(placement, header.n_layer, seen)
                    log.warning("alloc_failed", model=rt.name, attempt=attempt, n_gpu_layers=placement.n_gpu_layers,
                                error=str(exc), retry_with=ngl)
                    with contextlib.suppress(errors.MullamaError):
                        await handle.client.load(load_params(entry, cfg, "close", None))
                    if ngl is None or attempt == MAX_ALLOC_ATTEMPTS:
                        raise errors.NoFit(f"{rt.name}: allocation failed with {placement.n_gpu_layers} GPU layers "
                                           f"and no smaller plan is left: {exc}") from None
                    placement = rt.placement = plan(cost, self._probe(), n_gpu_layers=ngl, model=rt.name)
                    cache = await self.cache_ram.for_load(rt, self.loaded())  # more of it may be on the host now
            rt.placement = placement
            rt.transition(State.WARMING)  # commit: page the weights in, warm up, start the batching loop
            self._emit("model_warming", model=rt.name)
            result = await handle.client.load(load_params(entry, cfg, "commit", placement, cpu=cpu, cache_ram=cache))
        except errors.InvalidArgument as exc:
            # the runner refused what the supervisor sent (the model's settings, or a wire mismatch): the server's
            # fault, not the request's, so no 400 to a client that sent nothing wrong
            raise errors.LoadFailed(f"the runner refused to load {rt.name}: {exc}") from None
        except errors.RunnerCrashed as exc:
            if handle.stalled:
                raise errors.LoadStalled(
                    f"loading {rt.name} made no progress for {self.settings.load_timeout:g} s; "
                    "the runner was stopped") from None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(handle.exited), 1.0)
            code = handle.exited.result() if handle.exited.done() else None
            # the client hears what happened; the operator gets the runner's address and its last lines
            log.warning("runner_died_loading", model=rt.name, code=code, error=str(exc),
                        stderr_tail=list(handle.tail)[-5:])
            how = f"exit code {code}" if code is not None else "the connection broke"
            raise errors.LoadFailed(f"the runner for {rt.name} died while loading ({how}); its last log lines "
                                    "are in the server log") from None
        finally:
            monitor.cancel()
        rt.devices = list(result.devices)
        rt.memory = sum(d.model + d.context + d.compute for d in result.devices) or placement.total_bytes()
        rt.n_ctx = result.n_ctx
        rt.progress = 1.0

    async def _monitor(self, rt: Runtime, handle: Handle) -> None:
        """Follow the runner's load progress; no change for ``load_timeout`` -> kill it (a stalled load)."""
        last, since = None, time.monotonic()
        while True:
            await asyncio.sleep(HEALTH_POLL_S)
            try:
                h = await handle.client.health(timeout=max(5.0, HEALTH_POLL_S * 4))
                mark = (h.status, h.phase, h.progress)
            except (errors.MullamaError, TimeoutError):
                mark = last  # a busy (or frozen) runner answering slowly is not progress, nor proof of a stall
            if mark != last:
                last, since = mark, time.monotonic()
                if mark is not None:
                    rt.progress = mark[2]
            elif time.monotonic() - since > self.settings.load_timeout:
                log.error("load_stalled", model=rt.name, timeout_s=self.settings.load_timeout, last=str(last))
                handle.stalled = f"its load made no progress for {self.settings.load_timeout:g} s"
                await handle.kill()
                return

    # ------------------------------------------------------------------ memory

    def loaded(self) -> list[Runtime]:
        return [rt for rt in self.runtimes.values() if rt.handle is not None or rt.state is State.READY]

    def used_memory(self, exclude: Runtime | None = None) -> int:
        return sum(rt.memory for rt in self.loaded() if rt is not exclude)

    def pick_victim(self, exclude: Runtime, protect: frozenset[str] = frozenset()) -> Runtime | None:
        """The model to evict next (``eviction.choose_victim`` over the loaded models), or None."""
        name = choose_victim([Candidate(name=rt.name, ready=rt.state is State.READY, pinned=rt.pinned,
                                        in_flight=rt.in_flight, last_used=rt.last_used)
                              for rt in self.runtimes.values()], exclude=exclude.name, protect=protect)
        return self.runtimes[name] if name is not None else None

    async def _make_room(self, rt: Runtime, cost, protect: frozenset[str] = frozenset()) -> Placement:
        s, cfg = self.settings, rt.config
        while True:
            victim = self.pick_victim(rt, protect)
            if s.max_loaded_models and len([r for r in self.loaded() if r is not rt]) >= s.max_loaded_models:
                if victim is None:
                    raise errors.NoFit(f"{rt.name}: {s.max_loaded_models} models are loaded (max_loaded_models) "
                                       "and none can be evicted (pinned or protected)")
                await self._evict(victim, rt, "max_loaded_models")
                continue
            try:
                placement = plan_spread(cost, await self._devices(rt), n_gpu_layers=cfg.n_gpu_layers,
                                        tensor_split=cfg.tensor_split, require_full=cfg.require_full,
                                        ram_budget=cfg.ram_budget or None, model=rt.name)
            except errors.NoFit:
                if victim is None:
                    if await self._wait_for_unloads(rt):
                        continue
                    raise
                await self._evict(victim, rt, "memory")
                continue
            if s.memory_budget is not None:
                need, used = placement.total_bytes(), self.used_memory(exclude=rt)
                if need > s.memory_budget:
                    raise errors.NoFit(f"{rt.name} needs {format_size(need)}, more than the whole memory budget "
                                       f"({format_size(s.memory_budget)})")
                if used + need > s.memory_budget:
                    if victim is None and await self._wait_for_unloads(rt):
                        continue
                    if victim is None:
                        raise errors.NoFit(f"{rt.name} needs {need} bytes; {used} of the {s.memory_budget}-byte "
                                           "budget are held by models that cannot be evicted")
                    await self._evict(victim, rt, "memory_budget")
                    continue
            return placement

    async def _devices(self, rt: Runtime) -> Devices:
        """This machine now, with the memory the other runners' parked prefix caches hold counted as free (they
        give it up before ``rt`` allocates: ``cache_ram.for_load``), plus the devices of ``rt``'s RPC workers
        that answer and no other runner holds."""
        held = sum((await self.cache_ram.held(r for r in self.runtimes.values() if r is not rt)).values())
        devices = self._probe()  # after: caches parked meanwhile are in what is held, not counted twice
        if held:
            devices = dataclasses.replace(devices, host=dataclasses.replace(
                devices.host, ram_available=devices.host.ram_available + held))
        if not rt.config.rpc_workers:
            return devices
        remote, skipped = await self.workers.devices_for(rt, self.runtimes.values())
        return dataclasses.replace(devices, remote=remote, remote_skipped=skipped)

    async def _wait_for_unloads(self, rt: Runtime) -> bool:
        """Wait while another model drains or unloads (its memory is about to be free); False if none does."""
        leaving = [r for r in self.runtimes.values()
                   if r is not rt and r.state in (State.DRAINING, State.UNLOADING)]
        if not leaving:
            return False
        log.info("waiting_for_unload", model=rt.name, leaving=[r.name for r in leaving])
        deadline = time.monotonic() + self.settings.drain_timeout + 30.0
        try:
            for r in leaving:
                await r.wait_until(lambda r=r: r.state not in (State.DRAINING, State.UNLOADING),
                                   timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False
        return True

    async def _evict(self, victim: Runtime, for_rt: Runtime, why: str) -> None:
        log.info("evict", model=victim.name, for_model=for_rt.name, why=why, in_flight=victim.in_flight)
        self.counters["evictions"] += 1
        self._emit("model_evicted", model=victim.name, for_model=for_rt.name, reason=why)
        await self.unload(victim, reason=f"evicted:{why}")
