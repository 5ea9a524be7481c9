"""The views inside serving: ``/internal/*`` and ``/metrics``.

``GET /internal/scheduler`` (policy, queue with positions, in-flight per model
and slot, counters), ``POST /internal/scheduler`` (switch the policy at run
time; queued requests carry over), ``GET /internal/models`` (lifecycle states,
history, loads/evictions/crashes with durations, memory per device),
``GET /internal/kv/{model}`` (the runner's slots and prefix-cache counters),
``POST /internal/models/{model}/pin`` (pin or unpin at run time), ``GET /internal/stats`` (serving
second by second, for charts), ``GET /internal/events`` (a live SSE stream of events) and
``GET /metrics`` (Prometheus). Errors go through the error middleware like everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math

import msgspec
import structlog
from aiohttp import web

from mullama.core import errors
from mullama.http.keys import CONNECTIONS, SUPERVISOR
from mullama.http.shapes import SSE_HEADERS, decode_body, json_response
from mullama.models.names import validate_name
from mullama.serving.policies import POLICIES, make_policy
from mullama.serving.runtime import Runtime
from mullama.serving.supervisor import Supervisor

log = structlog.get_logger("mullama.internal")

_KV_TIMEOUT = 2.0      # a runner's KV view inside another view (scheduler, metrics): left out past this
KV_VIEW_TIMEOUT = 5.0  # GET /internal/kv: 504 past this


async def _kv(rt: Runtime):
    if not rt.serving:
        return None
    try:
        return await asyncio.wait_for(rt.handle.client.kv(), _KV_TIMEOUT)
    except (errors.MullamaError, TimeoutError):
        return None


async def scheduler_view(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    view = sup.scheduler.snapshot()
    # in-flight requests get their runner slot from the runners' own KV views
    models = [rt for m in view["running"] if (rt := sup.lifecycle.get(m)) is not None]
    kvs = await asyncio.gather(*(_kv(rt) for rt in models))
    for rt, kv in zip(models, kvs):
        slots = {s.request_id: s.index for s in kv.slots if s.request_id} if kv else {}
        for row in view["running"][rt.name]:
            row["slot"] = slots.get(row["id"])
    view["n_parallel"] = {rt.name: rt.config.n_parallel for rt in sup.lifecycle.all()}
    view["policies"] = _choosable(sup.settings.scheduler)
    return json_response(view)


def _choosable(configured: str) -> list[str]:
    """The policies ``POST /internal/scheduler`` accepts: the built-ins, and a configured custom one."""
    return [*POLICIES, *([configured] if configured not in POLICIES else [])]


class _PolicyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    policy: str


async def set_scheduler(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    body = decode_body(await request.read(), _PolicyBody, '{"policy": NAME}')
    configured = sup.settings.scheduler
    if ":" in body.policy and body.policy != configured:
        # importing by path runs code: only the custom policy the operator configured may be named here
        raise errors.InvalidArgument(
            f"scheduler: only built-in policies ({', '.join(POLICIES)}) or the configured one ({configured!r}) "
            "can be chosen at run time; a new custom policy must be set in the configuration")
    try:
        policy = make_policy(body.policy)
    except errors.ConfigError as exc:
        raise errors.InvalidArgument(str(exc)) from None
    previous = sup.scheduler.policy.name
    sup.scheduler.set_policy(policy)
    await asyncio.sleep(0)  # let the scheduler apply it before we answer
    return json_response({"policy": policy.name, "previous": previous})


def model_view(sup: Supervisor, rt: Runtime) -> dict:
    p = rt.placement
    return {
        "name": rt.name, "family": rt.entry.family, "variant": rt.entry.variant, "state": str(rt.state),
        "progress": round(rt.progress, 3), "error": rt.error, "pinned": rt.pinned,
        "pid": rt.handle.pid if rt.handle else None, "port": rt.handle.port if rt.handle else None,
        "in_flight": rt.in_flight, "waiting": rt.waiting, "keep_alive": rt.keep_alive, "expires_at": rt.expires_at,
        "memory": rt.memory,
        "cpu": {"cores": list(rt.cpu.cores), "threads": rt.cpu.threads} if rt.cpu else None,
        "cache_ram": rt.cache_ram,
        "devices": [{"device": d.device, "description": d.description, "type": d.type, "total": d.total,
                     "free": d.free, "model": d.model, "context": d.context, "compute": d.compute}
                    for d in rt.devices],
        "placement": p.describe() if p else None, "n_ctx": rt.n_ctx, "crashes": rt.crashes,
        "config": dict(rt.config.__dict__), "history": list(rt.history), "loads": list(rt.loads),
    }


async def models_view(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    return json_response({"models": [model_view(sup, rt) for rt in sup.lifecycle.all()],
                  "counters": dict(sup.lifecycle.counters), "memory_budget": sup.settings.memory_budget,
                  "max_loaded_models": sup.settings.max_loaded_models,
                  "devices": sup.devices().describe(),
                  "rpc_workers": sup.lifecycle.workers.describe(sup.lifecycle.all()),
                  "variants": dict(sup.variants.serving), "serving_variants": _serving_variants(sup),
                  "swaps": list(sup.variants.history),
                  "prefetch": sup.prefetcher.snapshot()})


def _serving_variants(sup: Supervisor) -> dict[str, str]:
    """Every family's serving variant: the one switched to at run time, else the catalog's default."""
    out = {}
    for family in sorted({e.family for e in sup.catalog().entries()}):
        with contextlib.suppress(errors.MullamaError):
            out[family] = sup.variants.current(family).variant
    return out


class _VariantBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    variant: str


async def switch_variant(request: web.Request) -> web.Response:
    """POST /internal/models/{family}/variant {"variant": "q8_0"}: hot-swap the family's serving variant."""
    sup = request.app[SUPERVISOR]
    body = decode_body(await request.read(), _VariantBody, '{"variant": NAME}')
    if not body.variant.strip():
        raise errors.InvalidArgument("'variant' is empty: name a variant of the family, e.g. \"q8_0\"",
                                     param="variant")
    family, variant = request.match_info["family"], body.variant
    for param, name in (("family", family), ("variant", variant)):
        try:
            validate_name(name)  # no path pieces ("..", "/", absolute) in either half: 400, never a lookup
        except errors.InvalidModelName as exc:
            exc.param = param
            raise
    return json_response(await sup.variants.switch(family.strip().lower(), variant.strip().lower()))


class _PinBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pinned: bool


async def pin_model(request: web.Request) -> web.Response:
    """POST /internal/models/{model}/pin {"pinned": true}: never evict it (false: as configured no more)."""
    sup = request.app[SUPERVISOR]
    body = decode_body(await request.read(), _PinBody, '{"pinned": true|false}')
    rt = sup.lifecycle.runtime(sup.resolve(request.match_info["model"]))
    sup.lifecycle.set_pinned(rt, body.pinned)
    return json_response(model_view(sup, rt))


async def stats_view(request: web.Request) -> web.Response:
    """GET /internal/stats[?since=EPOCH_S]: the per-second series (throughput, latency, queue, memory)."""
    raw = request.query.get("since", "")
    since = None
    if raw:
        try:
            since = float(raw)
        except ValueError:
            since = float("nan")
        if not math.isfinite(since) or since < 0:
            raise errors.InvalidArgument(f"query parameter 'since' must be epoch seconds, got {raw[:40]!r}",
                                         param="since")
    return json_response(request.app[SUPERVISOR].observer.series.describe(since))


def serving_runtime(request: web.Request, what: str) -> Runtime:
    """The runtime of the model the path names, which must be loaded: ``what`` lives in its runner."""
    sup = request.app[SUPERVISOR]
    entry = sup.resolve(request.match_info["model"])
    rt = sup.lifecycle.get(entry.name)
    if rt is None or not rt.serving:
        raise errors.NotReady(f"{entry.name} is not loaded (state: {rt.state if rt else 'discovered'}); "
                              f"{what} lives in its runner")
    return rt


async def kv_view(request: web.Request) -> web.Response:
    rt = serving_runtime(request, "its KV cache")
    kv = await rt.handle.client.kv(timeout=KV_VIEW_TIMEOUT)  # a frozen runner: a 504 in the API's shape
    body = msgspec.to_builtins(kv)
    body["model"] = rt.name
    body["usage_ratio"] = round(kv.cells_used / kv.cells_total, 4) if kv.cells_total else 0.0
    return json_response(body)


async def events(request: web.Request) -> web.StreamResponse:
    """Live events as SSE; ``backlog=N`` first replays the last N; ``follow=0`` ends after the backlog."""
    sup = request.app[SUPERVISOR]
    backlog = _int_query(request, "backlog", 0)
    follow = request.query.get("follow", "1") not in ("0", "false", "no")
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    sub = sup.observer.subscribe()
    try:
        await resp.write(b": mullama events\n\n")
        for record in sup.observer.recent(backlog):
            await resp.write(_sse(record))
        if follow:
            async for record in sub:
                await resp.write(_sse(record))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        sub.close()
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 100_000:
        raise errors.InvalidArgument(f"query parameter {name!r} must be an integer in 0..100000, got {raw[:40]!r}",
                                     param=name)
    return value


def _sse(record: dict) -> bytes:
    return b"event: " + str(record.get("event", "event")).encode() + b"\ndata: " + \
        json.dumps(record, default=str).encode() + b"\n\n"


async def metrics(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    m = sup.observer.metrics
    m.set_queue(sup.scheduler.running(), sup.scheduler.waiting())
    guard = request.app.get(CONNECTIONS)
    if guard is not None:
        m.set_connections(guard.open, guard.refused, guard.head_timeouts)
    loaded = sup.lifecycle.serving()
    kvs = await asyncio.gather(*(_kv(rt) for rt in loaded))
    for rt, kv in zip(loaded, kvs):
        if kv is not None and kv.cells_total:
            m.set_kv(rt.name, kv.cells_used / kv.cells_total, kv.parked_bytes, rt.cache_ram or 0)
        m.set_memory(rt.name, {d.device: d.model + d.context + d.compute for d in rt.devices})
    for rt in sup.lifecycle.all():
        if not rt.serving and rt.handle is None:
            m.forget_model(rt.name)
    m.set_workers(sup.lifecycle.workers.describe(sup.lifecycle.all()))
    body, content_type = m.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/internal/scheduler", scheduler_view)
    r.add_post("/internal/scheduler", set_scheduler)
    r.add_get("/internal/models", models_view)
    r.add_post("/internal/models/{family}/variant", switch_variant)
    r.add_post("/internal/models/{model}/pin", pin_model)
    r.add_get("/internal/stats", stats_view)
    r.add_get("/internal/kv/{model:.+}", kv_view)
    r.add_get("/internal/events", events)
    r.add_get("/metrics", metrics)
