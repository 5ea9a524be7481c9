"""The OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models``.

Generation goes through ``serving.generation.generate``, the path every front end shares; this module
parses the body (``request.py``), and writes the answer as SSE chunks or one JSON object
(``format.py``). Errors are answered by the error middleware, or go into an open stream as an SSE error
event.
"""

from __future__ import annotations

from aiohttp import web

from mullama.config import Settings
from mullama.core import errors
from mullama.http.keys import SUPERVISOR
from mullama.http.middleware import user_key
from mullama.http.openai import format as openai
from mullama.http.openai.frames import ChatFrames, TextFrames
from mullama.http.shapes import SSE_HEADERS, json_response, openai_kind
from mullama.http.streams import DeadlineWriter
from mullama.serving.generation import Generation, embed, generate
from mullama.serving.job import Job
from mullama.serving.runtime import State
from mullama.serving.supervisor import Supervisor


def limits(settings: Settings) -> openai.Limits:
    """The server's caps on one request, as both front ends' parsers take them."""
    return openai.Limits(max_tokens=settings.max_tokens_limit, max_messages=settings.max_messages,
                         max_stop=settings.max_stop, max_choices=settings.max_choices)


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
    final, answers = await run.gather_choices(stream)
    profile = run.done(final)
    extra = {"profile": profile} if run.want_profile else None
    head = {"id": run.rid, "created": run.created, "model": run.model, "final": final, "answers": answers,
            "extra": extra}
    body = (openai.chat_response(**head) if run.chat else
            openai.completion_response(**head, echo=run.job.request.prompt or "" if run.job.echo else ""))
    return web.Response(body=body, content_type="application/json")


async def _stream(request: web.Request, run: Generation, stream) -> web.StreamResponse:
    out = await DeadlineWriter.open(request, run, stream.ready, SSE_HEADERS)
    resp = out.response
    frames = ChatFrames(run) if run.chat else TextFrames(run)
    out.hold(frames.opening())
    try:
        await run.relay_frames(stream, lambda ev: out.write(frames.frame(ev)))
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
    tail = []
    if run.job.include_usage or run.want_profile:
        tail.append(openai.usage_chunk(id=run.rid, created=run.created, model=run.model, kind=run.job.kind,
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


def _model_object(sup: Supervisor, entry, preset: str | None = None) -> dict:
    """A model by its catalog name, or a preset by its own (``base``: the model that serves it)."""
    rt = sup.lifecycle.get(entry.name)
    extra = {"family": entry.family, "variant": entry.variant, "size": entry.size_bytes,
             "state": str(rt.state) if rt else str(State.DISCOVERED), **({"base": entry.name} if preset else {})}
    if entry.header is not None:
        extra.update(quantization=entry.header.quantization, context_length=entry.header.context_length,
                     architecture=entry.header.architecture)
    return openai.model_object(preset or entry.name, int(entry.modified), extra=extra)


async def list_models(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    objects = [_model_object(sup, e) for e in sup.catalog().entries() if e.error is None]
    objects += [_model_object(sup, e, p.name) for p, e, _ in sup.preset_entries() if e is not None]
    return web.Response(body=openai.models_list(objects), content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    entry = sup.resolve(request.match_info["name"])
    preset = sup.preset(request.match_info["name"])
    return json_response(_model_object(sup, entry, preset.name if preset else None))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/v1/completions", completions)
    r.add_post("/v1/embeddings", embeddings)
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{name:.+}", get_model)
