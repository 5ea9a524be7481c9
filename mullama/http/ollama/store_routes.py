"""Model-store HTTP routes, Ollama's shapes: ``POST /api/pull``, ``DELETE /api/delete``, ``POST /api/copy``.

``/api/pull`` resolves the pull first (name, hub listing, quantisation, free space): a failure there
is an HTTP error (404 with the available quantisations, 401/403 with a hint about HF_TOKEN, 502
for the hub, 507 for the disk). Then it streams NDJSON progress as Ollama does -- ``pulling
manifest``, ``pulling <digest12>`` with ``digest``/``total``/``completed``, ``verifying sha256
digest``, ``writing manifest``, ``success`` -- and an error after that as an ``{"error": "..."}``
line; ``"stream": false`` answers one ``{"status": "success"}``. A client that goes away stops the
download unless another pull still waits for the same file (the partial file stays for resume).

``/api/delete`` refuses (409) a model that is loaded or loading unless the body says ``"force":
true`` (an extension: then it unloads first, draining running requests). Ollama itself deletes
regardless; refusing keeps a runner from serving a file that is gone. ``/api/copy`` gives an existing
model a new name (a ``copy`` manifest: no bytes are copied). A preset (docs/presets.md) is deleted or
copied as a preset: its file under ``.presets/``, never its base's weights. Errors on these routes are Ollama's
``{"error": "..."}`` (the error middleware, for the paths of ``ROUTES``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import structlog
from aiohttp import web

from mullama.core import errors
from mullama.http.keys import STORE, SUPERVISOR
from mullama.http.ollama import presets
from mullama.http.shapes import NDJSON_HEADERS, decode_body, json_response
from mullama.serving.runtime import State
from mullama.serving.supervisor import Supervisor
from mullama.store.hub import Hub
from mullama.store.store import Store

log = structlog.get_logger("mullama.store_api")

_LOADED = (State.LOADING, State.WARMING, State.READY, State.DRAINING, State.UNLOADING)


class _PullBody(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""
    insecure: bool = False
    stream: bool = True


class _DeleteBody(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""
    force: bool = False


class _CopyBody(msgspec.Struct, kw_only=True):
    source: str
    destination: str


def _named(model: str, name: str) -> str:
    value = model or name
    if not value.strip():
        raise errors.InvalidArgument("model is required (the name to pull, e.g. "
                                     "'bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M')", param="model")
    return value


async def pull(request: web.Request) -> web.StreamResponse:
    sup, store = request.app[SUPERVISOR], request.app[STORE]
    body = decode_body(await request.read(), _PullBody, '{"model": "ORG/REPO[:QUANT]", "stream": true}')
    plan = await store.plan(_named(body.model, body.name))
    if not body.stream:
        await store.fetch(plan)
        sup.catalog(refresh=True)
        return json_response({"status": "success"})
    lines: asyncio.Queue[dict | None] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(store.fetch(plan, lines.put_nowait))
    task.add_done_callback(lambda _t: lines.put_nowait(None))
    resp = web.StreamResponse(headers=NDJSON_HEADERS)
    try:
        await resp.prepare(request)
        await resp.write(b'{"status":"pulling manifest"}\n')
        while (line := await lines.get()) is not None:
            await resp.write(msgspec.json.encode(line) + b"\n")
        try:
            task.result()
        except errors.MullamaError as exc:
            await resp.write(msgspec.json.encode({"error": str(exc)}) + b"\n")
        except Exception as exc:  # a bug: the stream is open, so it is told there (the middleware cannot)
            log.exception("pull_failed_unexpectedly", model=plan.ref.name)
            await resp.write(msgspec.json.encode({"error": f"internal error: {type(exc).__name__}"}) + b"\n")
        else:
            sup.catalog(refresh=True)
        await resp.write_eof()
        return resp
    finally:
        if not task.done():  # the client went away: this caller stops waiting (the download may go on)
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({task}, timeout=10)


async def delete(request: web.Request) -> web.Response:
    sup, store = request.app[SUPERVISOR], request.app[STORE]
    body = decode_body(await request.read(), _DeleteBody, '{"model": NAME}')
    name = _named(body.model, body.name)
    if (preset := sup.presets.remove(name)) is not None:  # a preset: no file of weights, no runner of its own
        return json_response({"status": "success", "model": preset.name})
    catalog = sup.catalog(refresh=True)
    entry = catalog.resolve(name)
    if store.deletes_files(catalog, name):  # refusals first; a name without files never touches a runner
        await unload_or_refuse(sup, entry.name, force=body.force)
    result = store.remove(sup.catalog(), name)
    sup.catalog(refresh=True)
    return json_response({"status": "success", **result})


async def unload_or_refuse(sup: Supervisor, model: str, *, force: bool) -> None:
    """ModelInUse (409) while ``model`` is loaded or loading; with ``force`` unload it (drain) first."""
    rt = sup.lifecycle.get(model)
    if rt is None or (rt.state not in _LOADED and rt.handle is None):
        return
    if not force:
        raise errors.ModelInUse(f"{model} is {rt.state} (in flight: {rt.in_flight}); unload it first "
                                f"('mullama stop {model}') or delete with force ('mullama rm --force')")
    if rt.state is State.LOADING or rt.state is State.WARMING:
        with contextlib.suppress(errors.MullamaError):
            await sup.lifecycle.ensure_loaded(rt, reason="api")  # a load in progress ends first
    await sup.lifecycle.unload(rt, reason="deleted")


async def copy(request: web.Request) -> web.Response:
    sup, store = request.app[SUPERVISOR], request.app[STORE]
    body = decode_body(await request.read(), _CopyBody, '{"source": NAME, "destination": NEW_NAME}')
    if (preset := sup.presets.get(body.source)) is not None:  # a preset's copy is a preset
        copied, _ = presets.save(sup, body.destination, preset.settings)
        return json_response({"status": "success", "model": copied.name})
    if sup.presets.get(body.destination) is not None:
        raise errors.PresetConflict(f"{body.destination!r} is a preset's name", param="destination")
    result = store.copy(sup.catalog(refresh=True), body.source, body.destination)
    sup.catalog(refresh=True)
    return json_response({"status": "success", **result})


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    sup = app[SUPERVISOR]
    store = Store(sup.settings.models_dirs, Hub.from_env(), emit=sup.emit)
    app[STORE] = store
    try:
        yield
    finally:
        await store.close()


#: (method, path, handler) of the model-store routes; their errors are in Ollama's shape
ROUTES = (
    ("POST", "/api/pull", pull),
    ("DELETE", "/api/delete", delete),
    ("POST", "/api/copy", copy),
)
PATHS = frozenset(path for _, path, _ in ROUTES)


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_store_ctx)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
