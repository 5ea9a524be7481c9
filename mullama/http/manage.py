"""Management routes: ``/api/ps``, ``/api/load``, ``/api/unload``, ``/api/models`` (the catalog),
``/health``, ``/ready`` and ``/openapi.json``. One ``ps`` row shape serves ``mullama ps`` and
Ollama's clients alike.
"""

from __future__ import annotations

import datetime as dt
import time

import msgspec
from aiohttp import web

from mullama.core import errors
from mullama.core.units import format_duration
from mullama.http.keys import SUPERVISOR
from mullama.http.ollama import format as ollama
from mullama.http.openai import format as openai
from mullama.http.openai.routes import limits
from mullama.http.shapes import decode_body, json_response
from mullama.models.catalog import ModelEntry
from mullama.models.presets import Preset
from mullama.serving.runtime import Runtime, State
from mullama.serving.supervisor import Supervisor


class _ModelBody(msgspec.Struct, kw_only=True):
    model: str = ""
    keep_alive: str | float | None = None


# ---------------------------------------------------------------------- catalog


async def catalog(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    cat = sup.catalog(refresh=request.query.get("refresh") == "1")
    models = []
    for entry in cat.entries():
        row = entry.describe()
        rt = sup.lifecycle.get(entry.name)
        row["state"] = str(rt.state) if rt else str(State.DISCOVERED)
        models.append(row)
    for preset, entry, problem in sup.preset_entries():
        models.append(_preset_row(sup, preset, entry, problem))
    return json_response({"models": models, "dir_errors": cat.dir_errors, "default": sup.default_or_none()})


def _preset_row(sup: Supervisor, preset: Preset, entry: ModelEntry | None, problem: str | None = None) -> dict:
    """A preset as a catalog row: its base's file and header under the preset's name, and the preset."""
    rt = sup.lifecycle.get(entry.name) if entry else None
    return {"path": "", "size": 0, **(entry.describe() if entry else {}), "name": preset.name, "id": preset.digest[:12],
            "source": "preset", "base": entry.name if entry else None, "error": problem,
            "preset": preset.describe(), "state": str(rt.state) if rt else str(State.DISCOVERED)}


async def show_model(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    entry = sup.resolve(request.match_info["name"])
    preset = sup.preset(request.match_info["name"])
    row = _preset_row(sup, preset, entry) if preset else entry.describe()
    row["metadata"] = entry.header.metadata if entry.header else {}
    row["config"] = msgspec.to_builtins(sup.runner_config(entry).__dict__)
    return json_response(row)


# ---------------------------------------------------------------------- loaded models


def ps_row(rt: Runtime) -> dict:
    p = rt.placement
    vram = sum(d.model + d.context + d.compute for d in rt.devices if d.type not in ("cpu", "rpc"))  # this host's
    if rt.in_flight:
        until = "while in use"
    elif rt.expires_at is None:
        until = "forever" if rt.state is State.READY else ""
    else:
        until = format_duration(max(0.0, rt.expires_at - time.time())) + " from now"
    return {
        "name": rt.name, "model": rt.name, "id": rt.entry.id,
        "digest": ollama.entry_digest(rt.entry),
        "size": rt.memory or rt.entry.size_bytes, "size_vram": vram,
        "processor": p.processor() if p else "", "context_length": rt.n_ctx or rt.config.n_ctx,
        "expires_at": dt.datetime.fromtimestamp(rt.expires_at, dt.UTC).isoformat() if rt.expires_at else None,
        "until": until, "state": str(rt.state), "progress": round(rt.progress, 3),
        "pid": rt.handle.pid if rt.handle else None, "port": rt.handle.port if rt.handle else None,
        "in_flight": rt.in_flight, "n_parallel": rt.config.n_parallel, "pinned": rt.pinned,
        "details": ollama.header_details(rt.entry.header),
    }


async def ps(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    return json_response({"models": [ps_row(rt) for rt in sup.lifecycle.active()]})


async def load(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    body = decode_body(await request.read(), _ModelBody)
    keep_alive = _keep_alive(body.keep_alive)
    entry = sup.resolve(body.model)
    rt = sup.lifecycle.runtime(entry)
    t0 = time.perf_counter()
    await sup.lifecycle.ensure_loaded(rt, reason="api")
    sup.lifecycle.set_keep_alive(rt, rt.config.keep_alive if keep_alive is None else keep_alive)
    return json_response({"model": rt.name, "state": str(rt.state),
                          "load_ms": round((time.perf_counter() - t0) * 1e3, 1), **ps_row(rt)})


async def unload(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    body = decode_body(await request.read(), _ModelBody)
    entry = sup.resolve(body.model)
    rt = sup.lifecycle.get(entry.name)
    was = str(rt.state) if rt else str(State.DISCOVERED)
    if rt is not None:
        await sup.lifecycle.unload(rt, reason="api")
    return json_response({"model": entry.name, "was": was, "state": str(rt.state) if rt else was})


def _keep_alive(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        return openai.keep_alive_seconds(value)
    except ValueError as exc:
        raise errors.InvalidArgument(f"invalid keep_alive: {exc}", param="keep_alive") from None


# ---------------------------------------------------------------------- health


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    loaded = [rt.name for rt in sup.lifecycle.serving()]
    if sup.closing:
        return json_response({"status": "draining", "loaded": loaded}, 503)
    failed = {rt.name: rt.error for rt in sup.lifecycle.all() if rt.state is State.FAILED}
    return json_response({"status": "ready", "loaded": loaded, "failed": failed,
                          "uptime_s": round(time.time() - sup.started, 1)})


async def openapi_json(request: web.Request) -> web.Response:
    from mullama.http.openapi.spec import spec  # built on first request only

    return json_response(spec(limits(request.app[SUPERVISOR].settings)))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/health", health)
    r.add_get("/ready", ready)
    r.add_get("/api/ps", ps)
    r.add_post("/api/load", load)
    r.add_post("/api/unload", unload)
    r.add_get("/api/models", catalog)
    r.add_get("/api/models/{name:.+}", show_model)
    r.add_get("/openapi.json", openapi_json)
