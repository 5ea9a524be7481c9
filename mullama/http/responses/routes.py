"""The OpenAI Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``.

Generation goes through ``serving.generation.generate``, the path every front end shares: this module
parses the body (``request.py``) and writes the answer as one response object (``format.py``) or as
the typed event stream (``events.py``). Errors before the answer starts are answered by the error
middleware in OpenAI's shape; after, they end the stream with ``error`` and ``response.failed``. A
response is kept in the in-memory store (``store.py``) unless ``store`` is false, so that a follow-up
can continue it with ``previous_response_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mullama.core import errors
from mullama.http.keys import SUPERVISOR
from mullama.http.middleware import user_key
from mullama.http.openai.routes import limits, wants_profile
from mullama.http.responses import format as fmt
from mullama.http.responses.events import ResponseEvents
from mullama.http.responses.items import output_messages
from mullama.http.responses.request import parse_responses
from mullama.http.responses.store import ResponseStore
from mullama.http.shapes import SSE_HEADERS, json_response
from mullama.http.streams import DeadlineWriter
from mullama.serving.generation import Generation, generate

if TYPE_CHECKING:
    from mullama.runners.client import CompletionStream

RESPONSES = web.AppKey("responses", ResponseStore)


async def create_response(request: web.Request) -> web.StreamResponse:
    sup, store = request.app[SUPERVISOR], request.app[RESPONSES]
    parsed = parse_responses(await request.read(), limits(sup.settings), store.history)
    job = parsed.job

    def keep(response: dict[str, Any]) -> None:
        if parsed.store:
            store.put(response, [*parsed.messages, *output_messages(response["output"])])

    async def respond(run: Generation, stream: CompletionStream) -> web.StreamResponse:
        head = {"id": fmt.new_id("resp"), "created": run.created, "model": run.model, "echo": parsed.echo}
        if job.stream:
            return await _stream(request, run, stream, head, keep)
        response = await _collect(run, stream, head)
        keep(response)
        return json_response(response)

    return await generate(sup, job, respond, user=user_key(request, job.user, sup.settings.api_keys),
                          profile=wants_profile(request))


async def _collect(run: Generation, stream: CompletionStream, head: dict[str, Any]) -> dict[str, Any]:
    final, (answer,) = await run.gather_choices(stream)
    profile = run.done(final)
    status, incomplete = fmt.outcome(final.finish_reason)
    return fmt.response_object(**head, status=status, output=fmt.output_items(final, answer.text, answer.logprobs),
                               usage=fmt.usage(final.stats), incomplete=incomplete,
                               extra={"profile": profile} if run.want_profile else None)


async def _stream(request: web.Request, run: Generation, stream: CompletionStream, head: dict[str, Any],
                  keep: Callable[[dict[str, Any]], None]) -> web.StreamResponse:
    events = ResponseEvents(fmt.response_object(**head, status="in_progress", output=[]))
    out = await DeadlineWriter.open(request, run, stream.ready, SSE_HEADERS)
    resp = out.response
    out.hold(events.start())
    try:
        await run.relay_frames(stream, lambda ev: out.write(events.frame(ev)))
    except errors.MullamaError as exc:
        exc = run.failed(exc)
        await out.write_eof(events.fail(str(exc), exc.type))
        return resp
    final = stream.final
    if final.finish_reason == "error":
        run.generation_failed()
        await out.write_eof(events.fail(f"generation failed: {final.error}", "generation_failed"))
        return resp
    profile = run.done(final)
    status, incomplete = fmt.outcome(final.finish_reason)
    tail, response = events.finish(status=status, usage=fmt.usage(final.stats), incomplete=incomplete,
                                   extra={"profile": profile} if run.want_profile else None)
    keep(response)  # before the last event: a client may continue it as soon as it has read it
    await out.write_eof(tail)
    return resp


async def get_response(request: web.Request) -> web.Response:
    body = request.app[RESPONSES].get(request.match_info["id"])
    return web.Response(body=body, content_type="application/json")


async def delete_response(request: web.Request) -> web.Response:
    rid = request.match_info["id"]
    request.app[RESPONSES].delete(rid)
    return json_response(fmt.deleted(rid))


def add_routes(app: web.Application) -> None:
    """The routes, and the store they share (sized by the supervisor's ``responses_store`` setting)."""
    app[RESPONSES] = ResponseStore(app[SUPERVISOR].settings.responses_store)
    r = app.router
    r.add_post("/v1/responses", create_response)
    r.add_get("/v1/responses/{id}", get_response)
    r.add_delete("/v1/responses/{id}", delete_response)
