"""The Anthropic Messages routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Both go through ``serving.generation.generate``, the path every front end shares (scheduler, lifecycle,
metrics, X-Profile, limits). This module parses the body (``request.py``) and writes the answer as
Anthropic's server-sent events (``stream.py``) or one message object (``format.py``). Errors on ``PATHS``
come out in Anthropic's shape from the error middleware, or, once a stream has started, as an ``error``
event. ``anthropic-version`` and ``anthropic-beta`` headers are accepted and change nothing.
"""

from __future__ import annotations

from aiohttp import web

from mullama import wire
from mullama.core import errors
from mullama.http.anthropic import format as fmt
from mullama.http.anthropic.request import parse_count, parse_messages
from mullama.http.anthropic.stream import Events, error_event
from mullama.http.keys import SUPERVISOR
from mullama.http.middleware import user_key
from mullama.http.openai.routes import limits, wants_profile
from mullama.http.shapes import SSE_HEADERS
from mullama.http.streams import DeadlineWriter
from mullama.serving.generation import Generation, count_prompt, generate


async def messages(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    job = parse_messages(await request.read(), limits(sup.settings))

    async def respond(run: Generation, stream) -> web.StreamResponse:
        return await (_stream(request, run, stream) if job.stream else _collect(run, stream))

    return await generate(sup, job, respond, user=user_key(request, job.user, sup.settings.api_keys),
                          profile=wants_profile(request))


async def count_tokens(request: web.Request) -> web.Response:
    """The prompt rendered (template, tools, thinking) and tokenized by the model's runner: its exact size,
    with nothing evaluated."""
    sup = request.app[SUPERVISOR]
    job = parse_count(await request.read(), limits(sup.settings))
    _, n = await count_prompt(sup, job)
    return web.Response(body=fmt.token_count(n), content_type="application/json")


async def _collect(run: Generation, stream) -> web.Response:
    final, text = await run.gather(stream)
    profile = run.done(final)
    body = fmt.message(id=fmt.message_id(run.rid), model=run.model, final=final, text=text,
                       stops=run.job.request.stop, extra={"profile": profile} if run.want_profile else None)
    return web.Response(body=body, content_type="application/json")


async def _stream(request: web.Request, run: Generation, stream) -> web.StreamResponse:
    out = await DeadlineWriter.open(request, run, stream.ready, SSE_HEADERS)
    resp = out.response
    events = Events(fmt.message_id(run.rid), run.model)
    out.hold(events.start())

    async def deltas(ds: list[wire.ChatDelta]) -> None:
        await out.write(events.deltas(ds))

    try:
        await run.relay(stream, lambda text: out.write(events.text(text)), deltas)
    except errors.MullamaError as exc:
        exc = run.failed(exc)
        await out.write_eof(error_event(str(exc), exc.status))
        return resp
    final = stream.final
    if final.finish_reason == "error":
        run.generation_failed()
        await out.write_eof(error_event(f"generation failed: {final.error}", 500))
        return resp
    profile = run.done(final)
    await out.write_eof(events.finish(final, run.job.request.stop,
                                      {"profile": profile} if run.want_profile else None))
    return resp


ROUTES = (("POST", "/v1/messages", messages), ("POST", "/v1/messages/count_tokens", count_tokens))
#: the paths whose errors are Anthropic's ``{"type": "error", "error": {...}}``
PATHS = frozenset(path for _, path, _ in ROUTES)


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
