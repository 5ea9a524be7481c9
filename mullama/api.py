"""HTTP handlers of the supervisor: the OpenAI-compatible API and the management routes.

Errors become responses in one place, ``error_middleware``: a ``MullamaError``
carries its status and type; everything else is a 500 that is logged and
never takes the server down. Parsing and response shapes live in
``openai.py`` (pure); this module only moves bytes between the client, the
lifecycle and a runner.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from aiohttp import web

from mullama import errors, ollama, openai, protocol
from mullama.app import SUPERVISOR, Supervisor
from mullama.config import Settings
from mullama.lifecycle import Runtime, State
from mullama.observe import build_profile
from mullama.policies import Request
from mullama.units import format_duration

log = structlog.get_logger("mullama.api")

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error"}
_OPEN_PATHS = frozenset({"/health"})


def json_response(obj: object, status: int = 200) -> web.Response:
    """A JSON answer encoded with msgspec (the one helper every route module uses)."""
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


def _error_for(request: web.Request, status: int, type_: str, message: str, param: str | None = None
               ) -> web.Response:
    """The error in the shape of the API the route belongs to: Ollama's ``{"error": "..."}`` on the
    Ollama-compatible routes (``ollama.ERROR_PATHS``), OpenAI's everywhere else."""
    if request.path in ollama.ERROR_PATHS:
        return web.Response(body=ollama.error_body(message), status=status, content_type="application/json")
    return _error(status, type_, message, param)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except errors.MullamaError as exc:
        if exc.status >= 500:
            log.warning("request_failed", path=request.path, status=exc.status, type=exc.type, error=str(exc))
        resp = _error_for(request, exc.status, exc.type, str(exc), getattr(exc, "param", None))
        if getattr(exc, "retry_after", None):
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.status != 413 else f"request body too large: {exc.text}"
        return _error_for(request, exc.status, _HTTP_TYPES.get(exc.status, "invalid_request_error"),
                          message or exc.reason)
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception as exc:  # a bug: say so, keep serving
        log.exception("unhandled", path=request.path)
        return _error_for(request, 500, "server_error", f"internal error: {type(exc).__name__}")


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
                ok |= hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key)
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


def _user(request: web.Request, job: openai.Job) -> str:
    """The fairness key: the API key's fingerprint, else the `user` field, else the client address."""
    auth = request.headers.get("Authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("X-Api-Key", "")
    if key and request.app[SUPERVISOR].settings.api_keys:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]
    if job.user:
        return "user:" + job.user
    return "addr:" + (request.remote or "?")


#: How a front end answers one generation: given the request, the ``_Run`` (metrics, profile, lease) and
#: the runner's stream, it writes the whole response (streamed or collected) and returns it.
Respond = Callable[[web.Request, "_Run", Any], Awaitable[web.StreamResponse]]


async def _respond_openai(request: web.Request, run: _Run, stream) -> web.StreamResponse:
    return await (run.stream(request, stream) if run.job.stream else run.collect(stream))


async def _generate(request: web.Request, sup: Supervisor, job: openai.Job) -> web.StreamResponse:
    return await generate(request, sup, job, _respond_openai)


async def generate(request: web.Request, sup: Supervisor, job: openai.Job, respond: Respond
                   ) -> web.StreamResponse:
    """The generation path both front ends share: resolve, schedule, re-route, acquire, run on the runner;
    ``respond`` writes the answer in its API's shape. Slot and lease are always given back."""
    if sup.closing:
        raise errors.ShuttingDown("the server is shutting down; no new requests")
    entry = sup.resolve(job.model)
    sup.lifecycle.runtime(entry)  # the scheduler reads its n_parallel
    sup.prefetcher.observe(entry.name)
    chat = job.kind == "chat"
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    t0 = time.perf_counter()
    prompt_chars = len(job.request.prompt or "") + sum(len(m.content or "") for m in job.request.messages or ())
    req = Request(id=rid, model=entry.name, user=_user(request, job), priority=job.priority,
                  deadline=time.monotonic() + job.deadline_ms / 1000 if job.deadline_ms else None,
                  prompt_chars=prompt_chars, max_tokens=job.request.max_tokens)
    try:
        ticket = await sup.scheduler.submit(req)
    except errors.MullamaError as exc:
        sup.observer.metrics.request_failed(entry.name, exc.type)
        raise
    try:
        routed = _route_again(sup, job.model, entry)  # a variant switch while it was queued moves it over
        if routed.name != entry.name:
            entry = routed
            sup.lifecycle.runtime(entry)
        run = _Run(sup, job, rid, created, entry.name, t0, ticket,
                   request.headers.get("X-Profile", "").lower() in ("1", "true", "yes"))
        lease = await sup.lifecycle.acquire(entry, keep_alive=job.keep_alive)
        try:
            stream = await lease.client.completion(msgspec.structs.replace(job.request, id=rid, stream=True))
            ticket.control = lambda op: lease.client.control(op, rid)
            run.lease = lease
            try:
                return await respond(request, run, stream)
            finally:
                stream.close()  # before the end (client gone, error): the runner cancels the request
        finally:
            sup.lifecycle.release(lease)
    except errors.MullamaError as exc:
        sup.observer.metrics.request_failed(entry.name, exc.type)
        raise
    finally:
        sup.scheduler.finish(ticket)
        sup.prefetcher.idle()


def _route_again(sup: Supervisor, name: str, entry):
    try:
        return sup.resolve(name)
    except errors.MullamaError:
        return entry


class _Run:
    """One generation's response writing, profile and metrics."""

    def __init__(self, sup: Supervisor, job: openai.Job, rid: str, created: int, model: str, t0: float,
                 ticket, profile: bool) -> None:
        self.sup, self.job, self.rid, self.created, self.model, self.t0 = sup, job, rid, created, model, t0
        self.ticket, self.want_profile = ticket, profile
        self.lease = None
        self.chat = job.kind == "chat"

    def done(self, final) -> dict:
        """The profile (always built: it feeds the metrics); events and metrics for a finished request."""
        lease = self.lease
        profile = build_profile(stats=final.stats, model=self.model, scheduler=self.sup.scheduler.policy.name,
                                runner_pid=lease.handle.pid if lease else None, queue_ms=self.ticket.queue_ms,
                                load_ms=lease.load_wait_ms if lease else 0.0,
                                total_ms=(time.perf_counter() - self.t0) * 1000,
                                preemptions=self.ticket.request.preemptions,
                                kv_evicted=final.stats.evicted_tokens)
        self.sup.observer.metrics.request_done(self.model, profile, final.finish_reason)
        self.sup.observer.emit("finished", id=self.rid, model=self.model, finish_reason=final.finish_reason,
                               prompt_tokens=profile["prompt_tokens"], completion_tokens=profile["completion_tokens"],
                               total_ms=profile["total_ms"])
        return profile

    def explain(self, exc: errors.MullamaError) -> errors.MullamaError:
        """A runner crash caused by a timed-out drain, told as the unload it was; other errors as they are."""
        rt = self.lease.runtime if self.lease else None
        if isinstance(exc, errors.RunnerCrashed) and rt is not None and rt.drain_killed and rt.state in (
                State.DRAINING, State.UNLOADING, State.UNLOADED):
            return errors.RunnerError(f"{self.model} was unloaded before this request finished (the drain "
                                      "timeout ran out)", 503, "model_unloaded")
        return exc

    def failed(self, exc: errors.MullamaError) -> errors.MullamaError:
        """An error after the response started (it goes into the stream): explained, logged, counted."""
        exc = self.explain(exc)
        log.warning("stream_failed", id=self.rid, model=self.model, type=exc.type, error=str(exc))
        self.sup.observer.metrics.request_failed(self.model, exc.type)
        return exc

    async def gather(self, stream) -> tuple[protocol.CompletionFinal, str]:
        """A non-streamed answer: the runner's final frame and the whole text. Errors are raised (nothing
        was sent yet: the error middleware answers them and ``generate`` counts them)."""
        text: list[str] = []
        try:
            async for _, ev in stream:
                if ev.content and not text:
                    self.sup.observer.emit("first_token", id=self.rid, model=self.model)
                text.append(ev.content)
        except errors.MullamaError as exc:
            raise self.explain(exc) from None
        final = stream.final
        if final.finish_reason == "error":
            raise errors.RunnerError(f"generation failed: {final.error}", 500, "server_error")
        return final, "".join(text)

    async def collect(self, stream) -> web.Response:
        final, text = await self.gather(stream)
        profile = self.done(final)
        fmt = openai.chat_response if self.chat else openai.completion_response
        body = fmt(id=self.rid, created=self.created, model=self.model, final=final, text=text,
                   extra={"profile": profile} if self.want_profile else None)
        return web.Response(body=body, content_type="application/json")

    async def relay(self, stream, write: Callable[[str], Awaitable[None]]) -> None:
        """Each piece of text of a streamed answer to ``write`` (the first one is an event)."""
        first = True
        async for _, ev in stream:
            if ev.content:
                if first:
                    first = False
                    self.sup.observer.emit("first_token", id=self.rid, model=self.model)
                await write(ev.content)

    async def stream(self, request: web.Request, stream) -> web.StreamResponse:
        rid, created, model, usage = self.rid, self.created, self.model, self.job.include_usage
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        chunk = openai.chat_chunk if self.chat else openai.completion_chunk
        if self.chat:
            await resp.write(openai.chat_chunk(id=rid, created=created, model=model, role=True, include_usage=usage))
        try:
            await self.relay(stream, lambda text: resp.write(chunk(id=rid, created=created, model=model,
                                                                     content=text, include_usage=usage)))
        except errors.MullamaError as exc:
            exc = self.failed(exc)
            await resp.write(openai.sse_error(str(exc), *_kind(exc.status, exc.type)))
            await resp.write_eof()
            return resp
        final = stream.final
        if final.finish_reason == "error":
            self.sup.observer.metrics.request_failed(model, "generation_failed")
            await resp.write(openai.sse_error(f"generation failed: {final.error}", "server_error", "generation_failed"))
            await resp.write_eof()
            return resp
        profile = self.done(final)
        tail = [chunk(id=rid, created=created, model=model, finish=final.finish_reason, include_usage=usage)]
        if usage or self.want_profile:
            tail.append(openai.usage_chunk(id=rid, created=created, model=model, kind=self.job.kind,
                                           stats=final.stats, extra={"profile": profile} if self.want_profile else None))
        tail.append(openai.DONE)
        await resp.write_eof(b"".join(tail))  # one write for the closing frames
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
    return json_response(_model_object(sup, entry))


async def catalog(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    cat = sup.catalog(refresh=request.query.get("refresh") == "1")
    models = []
    for entry in cat.entries():
        row = entry.describe()
        rt = sup.lifecycle.runtimes.get(entry.name)
        row["state"] = str(rt.state) if rt else str(State.DISCOVERED)
        models.append(row)
    return json_response({"models": models, "dir_errors": cat.dir_errors, "default": _default_or_none(sup)})


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
    return json_response(row)


# ---------------------------------------------------------------------- lifecycle


class _ModelBody(msgspec.Struct, kw_only=True):
    model: str = ""
    keep_alive: str | float | None = None


def decode_body(raw: bytes, kind, expected: str = ""):
    """A small management body as ``kind``; 400 saying what was wrong (and what is ``expected``)."""
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        text = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else \
            "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise errors.InvalidArgument(f"invalid request body: {text}" + (f" (expected {expected})" if expected else "")
                                     ) from None


def ps_row(rt: Runtime) -> dict:
    p = rt.placement
    vram = sum(d.model + d.context + d.compute for d in rt.devices if d.type != "cpu")
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
        "in_flight": rt.in_flight, "n_parallel": rt.config.n_parallel, "pinned": rt.config.pinned,
        "details": ollama.header_details(rt.entry.header),
    }


async def ps(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    rows = [ps_row(rt) for rt in sup.lifecycle.runtimes.values()
            if rt.handle is not None or rt.state in (State.LOADING, State.WARMING, State.READY, State.DRAINING)]
    return json_response({"models": rows})


async def load(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    body = decode_body(await request.read(), _ModelBody)
    keep_alive = _keep_alive(body.keep_alive)
    entry = sup.resolve(body.model)
    rt = sup.lifecycle.runtime(entry)
    t0 = time.perf_counter()
    await sup.lifecycle.ensure_loaded(rt, reason="api")
    sup.lifecycle.set_keep_alive(rt, rt.config.keep_alive if keep_alive is None else keep_alive)
    return json_response({"model": rt.name, "state": str(rt.state), "load_ms": round((time.perf_counter() - t0) * 1e3, 1),
                  **ps_row(rt)})


async def unload(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    body = decode_body(await request.read(), _ModelBody)
    entry = sup.resolve(body.model)
    rt = sup.lifecycle.runtimes.get(entry.name)
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
        err = errors.InvalidArgument(f"invalid keep_alive: {exc}")
        err.param = "keep_alive"
        raise err from None


# ---------------------------------------------------------------------- health


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    loaded = [rt.name for rt in sup.lifecycle.runtimes.values() if rt.serving]
    if sup.closing:
        return json_response({"status": "draining", "loaded": loaded}, 503)
    return json_response({"status": "ready", "loaded": loaded, "uptime_s": round(time.time() - sup.started, 1)})


async def openapi_json(request: web.Request) -> web.Response:
    from mullama.openapi_spec import spec

    return json_response(spec(_limits(request.app[SUPERVISOR].settings)))


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
