"""The OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models``.

Generation goes through ``serving.generation.generate``, the path every front end shares; this module
parses the body (``request.py``), and writes the answer as SSE chunks or one JSON object
(``format.py``). Errors are answered by the error middleware, or go into an open stream as an SSE error
event.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web

from mullama import wire
from mullama.config import Settings
from mullama.core import errors
from mullama.http.keys import SUPERVISOR
from mullama.http.middleware import user_key
from mullama.http.openai import format as openai
from mullama.http.shapes import SSE_HEADERS, json_response, openai_kind
from mullama.http.streams import DeadlineWriter
from mullama.serving.generation import Generation, embed, generate
from mullama.serving.job import Job
from mullama.serving.runtime import State
from mullama.serving.supervisor import Supervisor


def limits(settings: Settings) -> openai.Limits:
    """The server's caps on one request, as both front ends' parsers take them."""
    return openai.Limits(max_tokens=settings.max_tokens_limit, max_messages=settings.max_messages,
                         max_stop=settings.max_stop)


def wants_profile(request: web.Request) -> bool:
    return request.headers.get("X-Profile", "").lower() in ("1", "true", "yes")


# ---------------------------------------------------------------------- generation


async def chat_completions(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    return await _generate(request, sup, openai.parse_chat(await request.read(), limits(sup.settings)))


async def completions(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    return await _generate(request, sup, openai.parse_completion(await request.read(), limits(sup.settings)))


async def _generate(request: web.Request, sup: Supervisor, job: Job) -> web.StreamResponse:
    async def respond(run: Generation, stream) -> web.StreamResponse:
        return await (_stream(request, run, stream) if job.stream else _collect(run, stream))

    return await generate(sup, job, respond, user=user_key(request, job.user, sup.settings.api_keys),
                          profile=wants_profile(request))


async def _collect(run: Generation, stream) -> web.Response:
    final, text = await run.gather(stream)
    profile = run.done(final)
    fmt = openai.chat_response if run.chat else openai.completion_response
    body = fmt(id=run.rid, created=run.created, model=run.model, final=final, text=text,
               extra={"profile": profile} if run.want_profile else None)
    return web.Response(body=body, content_type="application/json")


async def _stream(request: web.Request, run: Generation, stream) -> web.StreamResponse:
    rid, created, model, usage = run.rid, run.created, run.model, run.job.include_usage
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    out = DeadlineWriter(request, resp, run, run.sup.settings.stream_write_timeout)
    chunk = openai.chat_chunk if run.chat else openai.completion_chunk
    if run.chat:
        await out.write(openai.chat_chunk(id=rid, created=created, model=model, role=True, include_usage=usage))
    call_ids: dict[int, str] = {}

    def deltas(ds: list[wire.ChatDelta]) -> Awaitable[None]:
        frames = []
        for d in ds:
            if d.tool_index >= 0:
                frames.append(openai.chat_chunk(id=rid, created=created, model=model, include_usage=usage,
                                                tool_call=openai.tool_call_delta(d, call_ids)))
            elif d.reasoning_content:
                frames.append(openai.chat_chunk(id=rid, created=created, model=model, include_usage=usage,
                                                reasoning=d.reasoning_content))
            if d.content:
                frames.append(openai.chat_chunk(id=rid, created=created, model=model, include_usage=usage,
                                                content=d.content))
        return out.write(b"".join(frames))

    try:
        await run.relay(stream, lambda text: out.write(chunk(id=rid, created=created, model=model,
                                                               content=text, include_usage=usage)),
                        deltas if run.chat else None)
    except errors.MullamaError as exc:
        exc = run.failed(exc)
        await out.write(openai.sse_error(str(exc), *openai_kind(exc.status, exc.type)))
        await out.write_eof()
        return resp
    final = stream.final
    if final.finish_reason == "error":
        run.generation_failed()
        await out.write(openai.sse_error(f"generation failed: {final.error}", "server_error", "generation_failed"))
        await out.write_eof()
        return resp
    profile = run.done(final)
    called = bool(final.message and final.message.tool_calls)
    tail = [openai.chat_chunk(id=rid, created=created, model=model, finish=final.finish_reason,
                              include_usage=usage, called=called) if run.chat else
            chunk(id=rid, created=created, model=model, finish=final.finish_reason, include_usage=usage)]
    if usage or run.want_profile:
        tail.append(openai.usage_chunk(id=rid, created=created, model=model, kind=run.job.kind,
                                       stats=final.stats, extra={"profile": profile} if run.want_profile else None))
    tail.append(openai.DONE)
    await out.write_eof(b"".join(tail))  # one write for the closing frames
    return resp


async def embeddings(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    job = openai.parse_embeddings(await request.read())
    sup.check_open()
    if job.inputs and not isinstance(job.inputs[0], str):
        raise errors.InvalidArgument("token-id input is not supported for embeddings; send text")
    done = await embed(sup, job.model, list(job.inputs), user=user_key(request, job.user, sup.settings.api_keys))
    return web.Response(body=openai.embeddings_response(model=done.model, vectors=done.vectors,
                                                        prompt_tokens=done.prompt_tokens,
                                                        encoding_format=job.encoding_format),
                        content_type="application/json")


# ---------------------------------------------------------------------- models


def _model_object(sup: Supervisor, entry) -> dict:
    rt = sup.lifecycle.get(entry.name)
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


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/v1/completions", completions)
    r.add_post("/v1/embeddings", embeddings)
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{name:.+}", get_model)
