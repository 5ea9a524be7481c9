"""Ollama-compatible HTTP routes: /api/generate, /api/chat, /api/embed, /api/embeddings, /api/tags,
/api/show, /api/version and ``GET /`` ("Ollama is running").

Generation goes through ``serving.generation.generate``, the path the OpenAI routes take (resolve,
schedule, acquire, runner), with a ``respond`` that writes Ollama's NDJSON lines or one JSON object;
parsing and shapes live in ``request.py`` and ``format.py`` (pure). Errors on the paths of ``ROUTES``
come out as ``{"error": "..."}`` from the error middleware. /api/ps is ``manage.ps``: one row shape for
both APIs.
"""

from __future__ import annotations

import time

import msgspec
import structlog
from aiohttp import web

from mullama import __version__, wire
from mullama.core import errors
from mullama.http.keys import SUPERVISOR
from mullama.http.middleware import user_key
from mullama.http.ollama import format as ollama
from mullama.http.ollama import load_options, presets
from mullama.http.openai.routes import limits, wants_profile
from mullama.http.shapes import NDJSON_HEADERS, json_response
from mullama.http.streams import DeadlineWriter
from mullama.serving.generation import Answer, Embedded, Generation, generate
from mullama.serving.generation import embed as embed_inputs
from mullama.serving.supervisor import Supervisor

log = structlog.get_logger("mullama.ollama")


def _check_options(request: web.Request, sup: Supervisor, job: ollama.Generation | ollama.EmbedJob) -> None:
    """Unknown options are logged (Ollama warns and goes on); load-time ones must suit the model (400)."""
    if job.unknown:
        log.warning("ollama_unknown_options", route=request.path, options=list(job.unknown))
    if job.load:
        entry = sup.resolve(job.model)
        load_options.check(entry.name, job.load, sup.runner_config(entry))


# ---------------------------------------------------------------------- generation


async def generate_route(request: web.Request) -> web.StreamResponse:
    return await _generation(request, ollama.parse_generate)


async def chat(request: web.Request) -> web.StreamResponse:
    return await _generation(request, ollama.parse_chat)


async def _generation(request: web.Request, parse) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    gen: ollama.Generation = parse(await request.read(), limits(sup.settings))
    _check_options(request, sup, gen)
    if gen.job is None:
        return await _load_only(sup, gen)
    job, kind = gen.job, gen.kind

    async def respond(run: Generation, stream) -> web.StreamResponse:
        return await _respond(kind, request, run, stream)

    return await generate(sup, job, respond, user=user_key(request, job.user, sup.settings.api_keys),
                          profile=wants_profile(request))


async def _load_only(sup: Supervisor, gen: ollama.Generation) -> web.Response:
    """Nothing to generate: load the model (Ollama's preload), or unload it when keep_alive is 0."""
    sup.check_open()
    entry = sup.resolve(gen.model)
    if gen.keep_alive == 0:
        rt = sup.lifecycle.get(entry.name)
        if rt is not None:
            await sup.lifecycle.unload(rt, reason="api")
        return json_response(ollama.load_record(gen.kind, entry.name, "unload"))
    lease = await sup.lifecycle.acquire(entry, keep_alive=gen.keep_alive)
    sup.lifecycle.release(lease)  # idle now: its keep-alive timer starts
    return json_response(ollama.load_record(gen.kind, entry.name, "load"))


def _final(kind: str, run: Generation, final, answer: Answer | None = None) -> dict:
    """The closing record: everything when not streamed (``answer``), the measurements when streamed."""
    profile = run.done(final)
    parsed = final.message  # a parsed chat: the parser's reading of the answer
    text, thinking, calls = "", "", None
    if answer is not None:
        text = parsed.content if parsed is not None else answer.text
        thinking = parsed.reasoning_content if parsed is not None else ""
        calls = parsed.tool_calls if parsed is not None else None
    return ollama.final_record(kind, run.model, text, final.stats, final.finish_reason,
                               total_ms=(time.perf_counter() - run.t0) * 1000,
                               load_ms=run.lease.load_wait_ms if run.lease else 0.0,
                               extra={"profile": profile} if run.want_profile else None,
                               calls=calls, thinking=thinking, logprobs=answer.logprobs if answer else None)


async def _respond(kind: str, request: web.Request, run: Generation, stream) -> web.StreamResponse:
    if not run.job.stream:
        final, answers = await run.gather_choices(stream)
        return json_response(_final(kind, run, final, answers[0]))

    out = await DeadlineWriter.open(request, run, stream.ready, NDJSON_HEADERS)
    resp = out.response
    chunk = ollama.chat_chunk if kind == "chat" else ollama.generate_chunk

    async def frame(ev: wire.CompletionChunk | wire.CompletionFinal) -> None:
        """Text and thinking as they come (a parsed chat's tool calls come whole, last), with the
        log-probabilities of the tokens they came from."""
        text, thinking = ev.content, ""
        if ev.deltas is not None:
            text = "".join(d.content for d in ev.deltas)
            thinking = "".join(d.reasoning_content for d in ev.deltas)
        if text or thinking or ev.logprobs:
            await out.write(chunk(run.model, text, thinking=thinking, logprobs=ev.logprobs))

    try:
        await run.relay_frames(stream, frame)
    except errors.MullamaError as exc:
        await out.write_eof(ollama.error_line(str(run.failed(exc))))
        return resp
    final = stream.final
    if final.finish_reason == "error":
        run.generation_failed()
        await out.write_eof(ollama.error_line(f"generation failed: {final.error}"))
        return resp
    calls = final.message.tool_calls if final.message is not None else []
    head = ollama.calls_chunk(run.model, calls) if calls else b""
    await out.write_eof(head + msgspec.json.encode(_final(kind, run, final)) + b"\n")
    return resp


# ---------------------------------------------------------------------- embeddings


async def _embed(request: web.Request, sup: Supervisor, job: ollama.EmbedJob) -> Embedded:
    return await embed_inputs(sup, job.model, job.inputs, keep_alive=job.keep_alive,
                              user=user_key(request, None, sup.settings.api_keys))


async def embed(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    job = ollama.parse_embed(await request.read(), limits(sup.settings))
    _check_options(request, sup, job)
    done = await _embed(request, sup, job)
    vectors = [ollama.truncate(v, job.dimensions) for v in done.vectors]
    return json_response(ollama.embed_response(done.model, vectors, done.prompt_tokens, total_ms=done.total_ms,
                                               load_ms=done.load_ms))


async def embeddings(request: web.Request) -> web.Response:
    """The legacy route: one prompt, one vector (L2-normalised, like /api/embed's)."""
    sup = request.app[SUPERVISOR]
    job = ollama.parse_embeddings(await request.read(), limits(sup.settings))
    _check_options(request, sup, job)
    done = await _embed(request, sup, job)
    return json_response({"embedding": done.vectors[0] if done.vectors else []})


# ---------------------------------------------------------------------- models


async def tags(request: web.Request) -> web.Response:
    """Every servable model by its catalog name, and again by each name it was pulled or copied as
    (as Ollama lists ``hf.co/org/repo:quant``): clients check ``list()`` after a pull."""
    sup = request.app[SUPERVISOR]
    catalog = sup.catalog()
    servable = {e.name: e for e in catalog.entries() if e.error is None}
    named = [(name, e) for name, e in servable.items()]
    named += [(alias, servable[target]) for alias, target in catalog.pulled_names().items() if target in servable]
    models = [{"name": name, "model": name, "modified_at": ollama.rfc3339(e.modified), "size": e.size_bytes,
               "digest": ollama.entry_digest(e), "details": ollama.header_details(e.header)}
              for name, e in named]
    return json_response({"models": models + presets.tag_rows(sup)})


async def show(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    name = ollama.parse_model(await request.read())
    entry = sup.resolve(name)
    h = entry.header
    metadata = h.metadata if h is not None else {}
    cfg = sup.runner_config(entry)
    parameters = f"num_ctx {cfg.n_ctx}"
    preset = sup.preset(name)
    return json_response({
        "license": str(metadata.get("general.license", "")),
        "modelfile": ollama.modelfile(entry.name, str(entry.path), parameters),
        "parameters": parameters,
        "template": (h.chat_template or "") if h is not None else "",
        "details": ollama.header_details(entry.header),
        "model_info": ollama.model_info(metadata, h.parameters if h else 0),
        "capabilities": ollama.capabilities(metadata),
        "modified_at": ollama.rfc3339(entry.modified),
        **(presets.show(preset, entry, cfg) if preset is not None else {}),
    })




# ---------------------------------------------------------------------- misc


async def version(request: web.Request) -> web.Response:
    return json_response({"version": __version__})


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


#: (method, path, handler) of every Ollama-compatible route; their errors are in Ollama's shape
ROUTES = (
    ("GET", "/", root),  # HEAD too: clients probe it
    ("POST", "/api/generate", generate_route),
    ("POST", "/api/chat", chat),
    ("POST", "/api/embed", embed),
    ("POST", "/api/embeddings", embeddings),
    ("GET", "/api/tags", tags),
    ("POST", "/api/show", show),
    ("GET", "/api/version", version),
)
PATHS = frozenset(path for _, path, _ in ROUTES)


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD
        else:
            app.router.add_route(method, path, handler)
