"""The runner's engine: the fit -> alloc -> commit -> close state machine over one
model, and the asyncio side of the C++ batching loop.

The C++ ``Batcher`` runs the token loop on its own thread. When it has output
it bumps an eventfd; the event loop watches that fd and, once per wake-up,
drains the events of every stream in one call and hands each to its
request's queue. Python therefore runs once per decode step (or less), never
once per token per stream.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
import structlog

from mullama import _engine, engine, wire
from mullama.core.errors import (
    InvalidArgument,
    InvalidState,
    NotReady,
    QueueFull,
    RequestNotFound,
)
from mullama.runner import adapters, cpu
from mullama.runner.chat import ChatReader, render, uses_tools
from mullama.runner.embeddings import embed
from mullama.runner.params import (
    configure,
    context_params,
    device_list,
    kv_view,
    model_params,
    sampling_params,
    spec_params,
)
from mullama.runner.stream import Logprobs, Stream

log = structlog.get_logger("mullama.runner")


_PREFETCH_CHUNK = 16 << 20


@dataclass
class Loaded:
    params: wire.LoadParams
    model: engine.Model
    ctx: engine.Context
    batcher: _engine.Batcher | None = None
    streams: dict[str, asyncio.Queue] = field(default_factory=dict)

    @functools.cached_property
    def caps(self) -> dict[str, bool]:
        return engine.chat_caps(self.model)

    @property
    def native_tools(self) -> bool:
        """The chat template renders tool calls itself (else the generic JSON format is used)."""
        return self.caps.get("supports_tool_calls", False)

    @property
    def thinks(self) -> bool:
        """The chat template reasons: every chat goes through the chat layer, which splits the thinking out."""
        return self.caps.get("supports_thinking", False)

    @functools.cached_property
    def logprobs(self) -> Logprobs:
        return Logprobs(self.model)


class RunnerService:
    """One model's lifecycle and its request streams. Used from one event loop."""

    def __init__(self, *, max_queue: int = 64, repeat_limit: int = 64, stream_interval_ms: float = 20.0,
                 reasoning_format: str = "auto") -> None:
        self.status: wire.HealthStatus = "starting"
        self.phase = ""
        self.progress = 0.0
        self.error: str | None = None
        self.max_queue = max_queue
        self.repeat_limit = repeat_limit
        self.stream_interval_ms = stream_interval_ms
        self.reasoning_format = reasoning_format
        self.rejected = 0
        self._loaded: Loaded | None = None
        self._lock = asyncio.Lock()  # one load op at a time
        self._next_id = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._embedding_stops: set[threading.Event] = set()  # one per embedding in progress

    # ------------------------------------------------------------------ lifecycle

    def health(self) -> wire.Health:
        loaded = self._loaded
        batcher = loaded.batcher if loaded else None
        return wire.Health(status=self.status, progress=round(self.progress, 4), error=self.error,
                           phase=self.phase, model=loaded.params.model if loaded else None,
                           loop_stalled_ms=round(batcher.stalled_ms, 1) if batcher is not None else 0.0)

    async def load(self, p: wire.LoadParams) -> wire.LoadResult:
        if p.op == "fit":
            return await self._fit(p)
        if self._lock.locked():
            raise InvalidState(f"another load operation is in progress ({self.phase or self.status})")
        async with self._lock:
            t0 = time.perf_counter()
            if p.op == "alloc":
                result = await self._alloc(p)
            elif p.op == "commit":
                result = await self._commit()
            else:
                result = await self.close()
            result.duration_ms = (time.perf_counter() - t0) * 1000
            return result

    async def _fit(self, p: wire.LoadParams) -> wire.LoadResult:
        if not p.model:
            raise InvalidArgument("fit needs 'model' (a GGUF path)")
        report = await asyncio.to_thread(engine.fit, p.model, model_params(p), context_params(p))
        return wire.LoadResult(op="fit", status=self.status, devices=device_list(report.devices),
                               n_ctx=report.n_ctx, n_layer=report.n_layer)

    def _load_progress(self, fraction: float) -> bool:
        """llama.cpp's progress (0..1) while it reads the weights, on the loading thread; False aborts."""
        self.progress = 0.5 * fraction
        return True

    async def _alloc(self, p: wire.LoadParams) -> wire.LoadResult:
        if self._loaded is not None or self.status not in ("starting", "error"):
            raise InvalidState(f"alloc needs an empty runner; it is {self.status} ({self.phase}): close first")
        if not p.model:
            raise InvalidArgument("alloc needs 'model' (a GGUF path)")
        mparams, cparams = model_params(p), context_params(p)
        self.status, self.phase, self.progress, self.error = "loading", "allocating", 0.0, None

        def build() -> tuple[engine.Model, engine.Context]:
            cpu.pin(p.cores)  # before the context's thread pools exist: they inherit it
            _engine.numa_init(p.numa)  # once per process, before the weights are placed
            if p.rpc_servers:  # their devices join llama.cpp's list, before the GPUs (the plan's order)
                engine.rpc_add_servers(p.rpc_servers)
            model = engine.Model(p.model, mparams, progress=self._load_progress)
            try:
                if p.chat_template:
                    model.set_chat_template(p.chat_template)
                return model, engine.Context(model, cparams)
            except BaseException:
                model.close()
                raise

        log.info("alloc", model=p.model, n_ctx=p.n_ctx, n_parallel=p.n_parallel, n_gpu_layers=p.n_gpu_layers,
                 rpc_servers=p.rpc_servers)
        try:
            model, ctx = await asyncio.to_thread(build)
        except Exception as exc:
            self.status, self.phase, self.error = "error", "alloc_failed", str(exc)
            log.warning("alloc_failed", error=str(exc))
            raise
        self._loaded = Loaded(params=p, model=model, ctx=ctx)
        self.phase, self.progress = "allocated", 0.5
        return wire.LoadResult(op="alloc", status=self.status, devices=device_list(ctx.memory()),
                               n_ctx=ctx.n_ctx, n_layer=model.info.n_layer)

    async def _commit(self) -> wire.LoadResult:
        loaded = self._loaded
        if loaded is None or self.phase != "allocated":
            raise InvalidState(f"commit needs a successful alloc first; the runner is {self.status} ({self.phase})")
        self.phase = "prefetching"
        try:
            await asyncio.to_thread(self._prefetch, loaded.params.model)
            self.status, self.phase = "warming", "warmup"
            if loaded.params.warmup:
                await asyncio.to_thread(self._warmup, loaded)
            loaded.batcher = await asyncio.to_thread(_engine.Batcher, loaded.model, loaded.ctx,
                                                     self.stream_interval_ms, spec_params(loaded.params.speculative))
            await asyncio.to_thread(configure, loaded.batcher, loaded.params)  # set_cache_ram waits for its loop
            for spec in loaded.params.adapters:
                await adapters.add(loaded.batcher, spec)
        except Exception as exc:
            self.status, self.phase, self.error = "error", "commit_failed", str(exc)
            log.warning("commit_failed", error=str(exc))
            raise
        asyncio.get_running_loop().add_reader(loaded.batcher.event_fd, self._on_events)
        self.status, self.phase, self.progress = "ready", "", 1.0
        log.info("ready", model=loaded.params.model, slots=loaded.batcher.n_slots, n_ctx_slot=loaded.batcher.n_ctx_slot)
        return wire.LoadResult(op="commit", status=self.status, devices=device_list(loaded.ctx.memory()),
                               n_ctx=loaded.ctx.n_ctx, n_layer=loaded.model.info.n_layer)

    def _prefetch(self, path: str) -> None:
        """Read the weights once so that serving does not page them in (progress 0.5 -> 0.9)."""
        size = os.path.getsize(path) or 1
        buf = bytearray(_PREFETCH_CHUNK)
        done = 0
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                done += n
                self.progress = 0.5 + 0.4 * done / size

    def _warmup(self, loaded: Loaded) -> None:
        info = loaded.model.info
        token = info.bos if info.bos >= 0 else 0
        params = engine.GenerateParams(max_tokens=1, sampling=engine.SamplingParams(temperature=0))
        loaded.ctx.generate(loaded.model, [[token]], [params])
        loaded.ctx.kv_clear()
        self.progress = 1.0

    async def close(self) -> wire.LoadResult:
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            if loaded.batcher is not None:
                asyncio.get_running_loop().remove_reader(loaded.batcher.event_fd)
                await asyncio.to_thread(loaded.batcher.stop)
                self._dispatch(loaded, loaded.batcher.drain())  # in-flight requests get their error event
            await asyncio.to_thread(self._free, loaded)
        self.status, self.phase, self.progress, self.error = "starting", "", 0.0, None
        return wire.LoadResult(op="close", status=self.status)

    @staticmethod
    def _free(loaded: Loaded) -> None:
        loaded.batcher = None
        loaded.ctx.close()
        loaded.model.close()

    async def drain(self, timeout: float) -> None:
        """Stop taking requests, let the running ones finish (up to ``timeout``), then close."""
        self.status = "draining"
        for stop in list(self._embedding_stops):  # embeddings stop between chunks; streams may finish
            stop.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("drain_timeout", still_running=len(self._loaded.streams) if self._loaded else 0)
        await self.close()
        self.status = "draining"

    # ------------------------------------------------------------------ requests

    def _ready(self) -> Loaded:
        loaded = self._loaded
        if self.status != "ready" or loaded is None or loaded.batcher is None:
            raise NotReady(f"no model is ready (runner is {self.status})")
        return loaded

    def _on_events(self) -> None:
        loaded = self._loaded
        if loaded is None or loaded.batcher is None:
            return
        try:
            os.read(loaded.batcher.event_fd, 8)
        except BlockingIOError:
            pass
        self._dispatch(loaded, loaded.batcher.drain())

    def _dispatch(self, loaded: Loaded, events: list[_engine.Event]) -> None:
        for ev in events:
            queue = loaded.streams.get(ev.id)
            if queue is not None:
                queue.put_nowait(ev)

    @staticmethod
    async def _submit_in_thread(batcher, rid: str, tokens, params, *args) -> None:
        """A submit that compiles a grammar or copies a long prompt, off the event loop. A caller that is
        cancelled meanwhile (its client left) does not leave the request behind: once the thread has
        handed it to the C++ loop, it is cancelled there."""
        handed = asyncio.ensure_future(asyncio.to_thread(batcher.submit, rid, tokens, params, *args))
        try:
            await asyncio.shield(handed)
        except asyncio.CancelledError:
            def take_back(fut: asyncio.Future) -> None:
                if not fut.cancelled() and fut.exception() is None:
                    batcher.cancel(rid)
                    log.info("abandoned_submit_cancelled", id=rid)
            handed.add_done_callback(take_back)
            raise

    async def submit(self, req: wire.CompletionRequest) -> Stream:
        """Validate and queue a completion (``req.n`` requests of the loop sharing one prefill); errors
        (4xx/5xx) raise here, before any output."""
        loaded = self._ready()
        batcher = loaded.batcher
        if batcher.live + req.n > batcher.n_slots + self.max_queue:
            self.rejected += 1
            raise QueueFull(f"all {batcher.n_slots} slots are busy and {batcher.queued} requests are waiting")
        if req.max_tokens < -1:
            raise InvalidArgument("max_tokens must be >= 0 (or -1: until the context is full)")
        n_ctx = loaded.ctx.n_ctx
        max_tokens = min(req.max_tokens, 10 * n_ctx) if req.max_tokens >= 0 else 10 * n_ctx
        tokens, sampling, stop, new_reader = await self._prompt(loaded, req)
        n_probs = req.top_logprobs if req.logprobs else -1
        if req.id is not None:
            rid = req.id
            if rid in loaded.streams:
                raise InvalidArgument(f"request id {rid!r} is already running")
        else:
            rid = self._new_id(loaded)
        ids = [rid, *(f"{rid}~{i}" for i in range(1, req.n))]
        extra = (self.repeat_limit if req.repeat_limit is None else req.repeat_limit, rid if req.n > 1 else "",
                 adapters.request_set(batcher, req.lora), req.n_keep, req.speculative)
        stream = Stream(ids, new_reader, cancel=lambda choice: loaded.batcher and loaded.batcher.cancel(choice),
                        on_closed=lambda done: self._stream_closed(loaded, done),
                        logprobs=loaded.logprobs if req.logprobs else None)
        for choice_id in ids:
            loaded.streams[choice_id] = stream.queue
        self._idle.clear()
        slow = len(tokens) > 4096 or req.grammar or req.json_schema or new_reader is not None
        try:
            for i, choice_id in enumerate(ids):
                # choice i samples with seed + i: the choices differ, and a seed makes each reproducible
                choice_sampling = sampling.with_seed((req.seed + i) % 2**32) if i and req.seed >= 0 else sampling
                params = engine.GenerateParams(max_tokens=max_tokens, stop=stop, ignore_eos=req.ignore_eos,
                                               sampling=choice_sampling, n_probs=n_probs)
                if slow:
                    await self._submit_in_thread(batcher, choice_id, tokens, params, *extra)
                else:
                    batcher.submit(choice_id, tokens, params, *extra)
        except BaseException:
            stream.close()
            raise
        return stream

    async def _prompt(self, loaded: Loaded, req: wire.CompletionRequest
                      ) -> tuple[list[int], engine.SamplingParams, list[str], Callable[[], ChatReader] | None]:
        """The prompt as tokens (a chat rendered by the model's template: tools, thinking), the sampling
        and stop strings it comes with, and the chat reader's factory when the answer is read back."""
        if (req.prompt is not None) + (req.tokens is not None) + (req.messages is not None) != 1:
            raise InvalidArgument("give exactly one of 'prompt' (text), 'tokens' (ids) or 'messages' (chat)")
        prompt = req.prompt
        new_reader = None
        sampling = sampling_params(req, loaded.model.info.n_vocab)
        stop = req.stop
        if req.messages is not None:
            if not req.messages:
                raise InvalidArgument("'messages' is empty")
            if uses_tools(req) or loaded.thinks:
                r = await render(loaded.model, loaded.native_tools, req, sampling, self.reasoning_format)
                prompt, sampling, stop, new_reader = r.prompt, r.sampling, r.stop, r.new_reader
            else:
                prompt = loaded.model.apply_chat_template(
                    [{"role": m.role, "content": m.content or ""} for m in req.messages], True, req.chat_template or "")
        if prompt is not None:
            if len(prompt) > 1 << 16:
                tokens = await asyncio.to_thread(loaded.model.tokenize, prompt, req.add_special, req.parse_special)
            else:
                tokens = loaded.model.tokenize(prompt, req.add_special, req.parse_special)
        else:
            tokens = req.tokens
        return tokens, sampling, stop, new_reader

    async def count(self, req: wire.CompletionRequest) -> int:
        """The prompt's size as ``submit`` would evaluate it (template, tools, thinking), nothing run."""
        return len((await self._prompt(self._ready(), req))[0])

    def _new_id(self, loaded: Loaded) -> str:
        while True:  # never reuse an id a client chose
            self._next_id += 1
            rid = f"r{self._next_id}"
            if rid not in loaded.streams:
                return rid

    def _stream_closed(self, loaded: Loaded, ids: list[str]) -> None:
        for rid in ids:
            loaded.streams.pop(rid, None)
        if not loaded.streams:
            self._idle.set()

    def control(self, op: str, rid: str) -> bool:
        loaded = self._ready()
        ok = {"cancel": loaded.batcher.cancel, "pause": loaded.batcher.pause, "resume": loaded.batcher.resume}[op](rid)
        if not ok:
            raise RequestNotFound(f"no running request with id {rid!r}")
        return ok

    # ------------------------------------------------------------------ views

    def model(self) -> engine.Model:
        return self._ready().model

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return await embed(self._ready(), texts, self._embedding_stops)

    def kv(self) -> wire.KvView:
        loaded = self._ready()
        return kv_view(loaded.batcher, loaded.ctx.n_ctx)

    def batcher(self) -> _engine.Batcher:
        """The loop of the ready model (for the adapter routes)."""
        return self._ready().batcher

    def stats(self) -> wire.StatsView:
        loaded = self._loaded
        rss = psutil.Process().memory_info().rss
        devices: list[wire.DeviceMemory] = []
        counters = wire.Counters(requests=0, tokens_in=0, tokens_out=0, decode_steps=0, avg_batch_size=0.0,
                                 swaps_out=0, kv_full=0, rejected=self.rejected)
        queued = active = n_parallel = 0  # exact: from the loop's own request table
        if loaded is not None:
            devices = device_list(loaded.ctx.memory())
            n_parallel = loaded.params.n_parallel
            if loaded.batcher is not None:
                c = loaded.batcher.counters()
                counters = wire.Counters(
                    requests=c.requests, tokens_in=c.tokens_in, tokens_out=c.tokens_out,
                    decode_steps=c.decode_steps,
                    avg_batch_size=round(c.batch_tokens / c.decode_steps, 3) if c.decode_steps else 0.0,
                    swaps_out=c.swaps_out, kv_full=c.kv_full, kv_preemptions=c.kv_preemptions,
                    rejected=self.rejected)
                queued, active = loaded.batcher.queued, loaded.batcher.active
        return wire.StatsView(status=self.status, pid=os.getpid(), rss_bytes=rss, devices=devices, counters=counters,
                              queued=queued, active=active, n_parallel=n_parallel)
