"""HTTP handlers of the supervisor: the OpenAI-compatible API and the management routes.

Errors become responses in one place, ``error_middleware``: a ``MullamaError``
carries its status and type; everything else is a 500 that is logged and
never takes the server down. Parsing and response shapes live in
``openai.py`` (pure); this module only moves bytes between the client, the
lifecycle and a runner.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
import uuid

import msgspec
import structlog
from aiohttp import web

from mullama import errors, openai
from mullama.app import SUPERVISOR, Supervisor
from mullama.config import Settings
from mullama.lifecycle import Runtime, State
from mullama.units import format_duration, parse_duration

log = structlog.get_logger("mullama.api")

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error"}
_OPEN_PATHS = frozenset({"/health"})


def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(obj), status=status, content_type="application/json")


#: OpenAI's error types; our finer types travel in ``code`` (e.g. context_length_exceeded, model_not_found)
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "invalid_request_error", 408: "timeout", 409: "invalid_request_error", 413: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_error"}


def _kind(status: int, type_: str) -> tuple[str, str | None]:
    """(OpenAI error type, code) for one of our errors."""
    kind = _OPENAI_TYPES.get(status, "server_error")
    return kind, (None if type_ == kind else type_)


def _error(status: int, type_: str, message: str, param: str | None = None) -> web.Response:
    kind, code = _kind(status, type_)
    return web.Response(body=openai.error_body(message, kind, param=param, code=code), status=status,
                        content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except errors.MullamaError as exc:
        if exc.status >= 500:
            log.warning("request_failed", path=request.path, status=exc.status, type=exc.type, error=str(exc))
        return _error(exc.status, exc.type, str(exc), getattr(exc, "param", None))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.status != 413 else f"request body too large: {exc.text}"
        return _error(exc.status, _HTTP_TYPES.get(exc.status, "invalid_request_error"), message or exc.reason)
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception as exc:  # a bug: say so, keep serving
        log.exception("unhandled", path=request.path)
        return _error(500, "server_error", f"internal error: {type(exc).__name__}")


def _auth_middleware(keys: tuple[str, ...]):
    encoded = [k.encode() for k in keys]

    @web.middleware
    async def check(request: web.Request, handler):
        if request.path not in _OPEN_PATHS:
            given = request.headers.get("X-Api-Key", "")
            auth = request.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
            # compare against every key, always: the time taken says nothing about which one matched
            ok = False
            for key in encoded:
                ok |= hmac.compare_digest(given.encode(), key)
            if not ok:
                raise errors.Unauthorized("missing or invalid API key (send 'Authorization: Bearer <key>' "
                                          "or 'X-Api-Key: <key>')")
        return await handler(request)

    return check


def middlewares(settings: Settings) -> list:
    chain = [error_middleware]
    if settings.api_keys:
        chain.append(_auth_middleware(settings.api_keys))
    return chain


def _limits(settings: Settings) -> openai.Limits:
    return openai.Limits(max_tokens=settings.max_tokens_limit, max_messages=settings.max_messages,
                         max_stop=settings.max_stop)


# ---------------------------------------------------------------------- generation


async def chat_completions(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    return await _generate(request, sup, openai.parse_chat(await request.read(), _limits(sup.settings)))


async def completions(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    return await _generate(request, sup, openai.parse_completion(await request.read(), _limits(sup.settings)))


async def _generate(request: web.Request, sup: Supervisor, job: openai.Job) -> web.StreamResponse:
    if sup.closing:
        raise errors.ShuttingDown("the server is shutting down; no new requests")
    entry = sup.resolve(job.model)
    chat = job.kind == "chat"
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    lease = await sup.lifecycle.acquire(entry, keep_alive=job.keep_alive)
    try:
        stream = await lease.client.completion(msgspec.structs.replace(job.request, id=rid, stream=True))
        try:
            if job.stream:
                return await _stream(request, job, stream, rid, created, entry.name)
            text: list[str] = []
            async for _, ev in stream:
                text.append(ev.content)
            final = stream.final
            if final.finish_reason == "error":
                raise errors.RunnerError(f"generation failed: {final.error}", 500, "server_error")
            fmt = openai.chat_response if chat else openai.completion_response
            body = fmt(id=rid, created=created, model=entry.name, final=final, text="".join(text))
            return web.Response(body=body, content_type="application/json")
        finally:
            stream.close()  # before the end (client gone, error): the runner cancels the request
    finally:
        sup.lifecycle.release(lease)


async def _stream(request: web.Request, job: openai.Job, stream, rid: str, created: int,
                  model: str) -> web.StreamResponse:
    chat = job.kind == "chat"
    resp = web.StreamResponse(headers=_SSE_HEADERS)
    await resp.prepare(request)
    chunk = openai.chat_chunk if chat else openai.completion_chunk
    usage = job.include_usage
    if chat:
        await resp.write(openai.chat_chunk(id=rid, created=created, model=model, role=True, include_usage=usage))
    try:
        async for _, ev in stream:
            if ev.content:
                await resp.write(chunk(id=rid, created=created, model=model, content=ev.content, include_usage=usage))
    except errors.MullamaError as exc:
        log.warning("stream_failed", id=rid, model=model, type=exc.type, error=str(exc))
        await resp.write(openai.sse_error(str(exc), *_kind(exc.status, exc.type)))
        await resp.write_eof()
        return resp
    final = stream.final
    if final.finish_reason == "error":
        await resp.write(openai.sse_error(f"generation failed: {final.error}", "server_error", "generation_failed"))
        await resp.write_eof()
        return resp
    await resp.write(chunk(id=rid, created=created, model=model, finish=final.finish_reason, include_usage=usage))
    if job.include_usage:
        await resp.write(openai.usage_chunk(id=rid, created=created, model=model, kind=job.kind,
                                            stats=final.stats))
    await resp.write(openai.DONE)
    await resp.write_eof()
    return resp


async def embeddings(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    job = openai.parse_embeddings(await request.read())
    if sup.closing:
        raise errors.ShuttingDown("the server is shutting down; no new requests")
    if job.inputs and not isinstance(job.inputs[0], str):
        raise errors.InvalidArgument("token-id input is not supported for embeddings; send text")
    entry = sup.resolve(job.model)
    lease = await sup.lifecycle.acquire(entry)
    try:
        result = await lease.client.embedding(list(job.inputs))
    finally:
        sup.lifecycle.release(lease)
    return web.Response(body=openai.embeddings_response(model=entry.name, vectors=result.embeddings,
                                                        prompt_tokens=result.prompt_tokens,
                                                        encoding_format=job.encoding_format),
                        content_type="application/json")


# ---------------------------------------------------------------------- models


def _model_object(sup: Supervisor, entry) -> dict:
    rt = sup.lifecycle.runtimes.get(entry.name)
    extra = {"family": entry.family, "variant": entry.variant, "size": entry.size_bytes,
             "state": str(rt.state) if rt else str(State.DISCOVERED)}
    if entry.header is not None:
        extra.update(quantization=entry.header.quantization, context_length=entry.header.context_length,
                     architecture=entry.header.architecture)
    return openai.model_object(entry.name, int(entry.modified), extra=extra)


async def list_models(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    objects = [_model_object(sup, e) for e in sup.catalog().entries() if e.error is None]
    return web.Response(body=openai.models_list(objects), content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    entry = sup.resolve(request.match_info["name"])
    return _json(_model_object(sup, entry))


async def catalog(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    cat = sup.catalog(refresh=request.query.get("refresh") == "1")
    models = []
    for entry in cat.entries():
        row = entry.describe()
        rt = sup.lifecycle.runtimes.get(entry.name)
        row["state"] = str(rt.state) if rt else str(State.DISCOVERED)
        models.append(row)
    return _json({"models": models, "dir_errors": cat.dir_errors, "default": _default_or_none(sup)})


def _default_or_none(sup: Supervisor) -> str | None:
    try:
        return sup.default_model()
    except errors.ModelNotFound:
        return None


async def show_model(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    entry = sup.resolve(request.match_info["name"])
    row = entry.describe()
    row["metadata"] = entry.header.metadata if entry.header else {}
    row["config"] = msgspec.to_builtins(sup.runner_config(entry).__dict__)
    return _json(row)


# ---------------------------------------------------------------------- lifecycle


class _ModelBody(msgspec.Struct, kw_only=True):
    model: str = ""
    keep_alive: str | float | None = None


def _decode(raw: bytes, kind):
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise errors.InvalidArgument(f"invalid request body: {exc}") from None


def ps_row(rt: Runtime) -> dict:
    p = rt.placement
    vram = sum(d.model + d.context + d.compute for d in rt.devices if d.type != "cpu")
    if rt.in_flight:
        until = "while in use"
    elif rt.expires_at is None:
        until = "forever" if rt.state is State.READY else ""
    else:
        until = format_duration(max(0.0, rt.expires_at - time.time())) + " from now"
    header = rt.entry.header
    return {
        "name": rt.name, "model": rt.name, "id": rt.entry.id, "digest": rt.entry.id,
        "size": rt.memory or rt.entry.size_bytes, "size_vram": vram,
        "processor": p.processor() if p else "", "context_length": rt.n_ctx or rt.config.n_ctx,
        "expires_at": dt.datetime.fromtimestamp(rt.expires_at, dt.UTC).isoformat() if rt.expires_at else None,
        "until": until, "state": str(rt.state), "progress": round(rt.progress, 3),
        "pid": rt.handle.pid if rt.handle else None, "port": rt.handle.port if rt.handle else None,
        "in_flight": rt.in_flight, "n_parallel": rt.config.n_parallel, "pinned": rt.config.pinned,
        "details": {"format": "gguf", "family": rt.entry.family,
                    "parameter_size": header.metadata.get("general.size_label", "") if header else "",
                    "quantization_level": header.quantization if header else ""},
    }


async def ps(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    rows = [ps_row(rt) for rt in sup.lifecycle.runtimes.values()
            if rt.handle is not None or rt.state in (State.LOADING, State.WARMING, State.READY, State.DRAINING)]
    return _json({"models": rows})


async def load(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    body = _decode(await request.read(), _ModelBody)
    keep_alive = _keep_alive(body.keep_alive)
    entry = sup.resolve(body.model)
    rt = sup.lifecycle.runtime(entry)
    t0 = time.perf_counter()
    await sup.lifecycle.ensure_loaded(rt, reason="api")
    sup.lifecycle.set_keep_alive(rt, rt.config.keep_alive if keep_alive is None else keep_alive)
    return _json({"model": rt.name, "state": str(rt.state), "load_ms": round((time.perf_counter() - t0) * 1e3, 1),
                  **ps_row(rt)})


async def unload(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    body = _decode(await request.read(), _ModelBody)
    entry = sup.resolve(body.model)
    rt = sup.lifecycle.runtimes.get(entry.name)
    was = str(rt.state) if rt else str(State.DISCOVERED)
    if rt is not None:
        await sup.lifecycle.unload(rt, reason="api")
    return _json({"model": entry.name, "was": was, "state": str(rt.state) if rt else was})


def _keep_alive(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        err = errors.InvalidArgument(f"invalid keep_alive: {exc}")
        err.param = "keep_alive"
        raise err from None


# ---------------------------------------------------------------------- health


async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    loaded = [rt.name for rt in sup.lifecycle.runtimes.values() if rt.serving]
    if sup.closing:
        return _json({"status": "draining", "loaded": loaded}, 503)
    return _json({"status": "ready", "loaded": loaded, "uptime_s": round(time.time() - sup.started, 1)})


async def openapi_json(request: web.Request) -> web.Response:
    from mullama.openapi_spec import spec

    return _json(spec(_limits(request.app[SUPERVISOR].settings)))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/v1/completions", completions)
    r.add_post("/v1/embeddings", embeddings)
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{name:.+}", get_model)
    r.add_get("/health", health)
    r.add_get("/ready", ready)
    r.add_get("/api/ps", ps)
    r.add_post("/api/load", load)
    r.add_post("/api/unload", unload)
    r.add_get("/api/models", catalog)
    r.add_get("/api/models/{name:.+}", show_model)
    r.add_get("/openapi.json", openapi_json)
