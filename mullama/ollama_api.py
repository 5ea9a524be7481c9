"""Ollama-compatible HTTP routes: /api/generate, /api/chat, /api/embed, /api/embeddings, /api/tags,
/api/show, /api/version and ``GET /`` ("Ollama is running").

Generation goes through ``api.generate``, the path the OpenAI routes take (resolve, schedule, acquire,
runner), with a ``respond`` that writes Ollama's NDJSON lines or one JSON object; parsing and shapes
live in ``ollama.py`` (pure). Errors on these routes come out as ``{"error": "..."}`` from
``api.error_middleware`` (``ollama.ERROR_PATHS``). /api/ps is ``api.ps``: one row shape for both APIs.
"""

from __future__ import annotations

import functools
import time

import msgspec
import structlog
from aiohttp import web

from mullama import __version__, api, errors, ollama
from mullama.app import SUPERVISOR, Supervisor

log = structlog.get_logger("mullama.ollama")



def _warn_ignored(route: str, ignored: tuple[str, ...]) -> None:
    if ignored:
        log.info("ollama_options_ignored", route=route, options=list(ignored))


# ---------------------------------------------------------------------- generation


async def generate(request: web.Request) -> web.StreamResponse:
    return await _generation(request, ollama.parse_generate)


async def chat(request: web.Request) -> web.StreamResponse:
    return await _generation(request, ollama.parse_chat)


async def _generation(request: web.Request, parse) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    gen: ollama.Generation = parse(await request.read(), api._limits(sup.settings))
    _warn_ignored(request.path, gen.ignored)
    if gen.job is None:
        return await _load_only(sup, gen)
    return await api.generate(request, sup, gen.job, functools.partial(_respond, gen.kind))


async def _load_only(sup: Supervisor, gen: ollama.Generation) -> web.Response:
    """Nothing to generate: load the model (Ollama's preload), or unload it when keep_alive is 0."""
    if sup.closing:
        raise errors.ShuttingDown("the server is shutting down; no new requests")
    entry = sup.resolve(gen.model)
    if gen.keep_alive == 0:
        rt = sup.lifecycle.runtimes.get(entry.name)
        if rt is not None:
            await sup.lifecycle.unload(rt, reason="api")
        return api.json_response(ollama.load_record(gen.kind, entry.name, "unload"))
    lease = await sup.lifecycle.acquire(entry, keep_alive=gen.keep_alive)
    sup.lifecycle.release(lease)  # idle now: its keep-alive timer starts
    return api.json_response(ollama.load_record(gen.kind, entry.name, "load"))


def _final(kind: str, run: api._Run, final, text: str) -> dict:
    profile = run.done(final)
    return ollama.final_record(kind, run.model, text, final.stats, final.finish_reason,
                               total_ms=(time.perf_counter() - run.t0) * 1000,
                               load_ms=run.lease.load_wait_ms if run.lease else 0.0,
                               extra={"profile": profile} if run.want_profile else None)


async def _respond(kind: str, request: web.Request, run: api._Run, stream) -> web.StreamResponse:
    if not run.job.stream:
        final, text = await run.gather(stream)
        return api.json_response(_final(kind, run, final, text))

    resp = web.StreamResponse(headers=ollama.NDJSON_HEADERS)
    await resp.prepare(request)
    chunk = ollama.chat_chunk if kind == "chat" else ollama.generate_chunk
    try:
        await run.relay(stream, lambda text: resp.write(chunk(run.model, text)))
    except errors.MullamaError as exc:
        await resp.write_eof(ollama.error_line(str(run.failed(exc))))
        return resp
    final = stream.final
    if final.finish_reason == "error":
        run.sup.observer.metrics.request_failed(run.model, "generation_failed")
        await resp.write_eof(ollama.error_line(f"generation failed: {final.error}"))
        return resp
    await resp.write_eof(msgspec.json.encode(_final(kind, run, final, "")) + b"\n")
    return resp


# ---------------------------------------------------------------------- embeddings


async def _embed(sup: Supervisor, job: ollama.EmbedJob) -> tuple[str, list[list[float]], int, float, float]:
    """(model, vectors, prompt tokens, load ms, total ms); no inputs: only load the model."""
    if sup.closing:
        raise errors.ShuttingDown("the server is shutting down; no new requests")
    t0 = time.perf_counter()
    entry = sup.resolve(job.model)
    lease = await sup.lifecycle.acquire(entry, keep_alive=job.keep_alive)
    try:
        vectors, tokens = [], 0
        if job.inputs:
            result = await lease.client.embedding(job.inputs)
            vectors, tokens = result.embeddings, result.prompt_tokens
    finally:
        sup.lifecycle.release(lease)
    return entry.name, vectors, tokens, lease.load_wait_ms, (time.perf_counter() - t0) * 1000


async def embed(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    job = ollama.parse_embed(await request.read(), api._limits(sup.settings))
    _warn_ignored(request.path, job.ignored)
    model, vectors, tokens, load_ms, total_ms = await _embed(sup, job)
    vectors = [ollama.truncate(v, job.dimensions) for v in vectors]
    return api.json_response(ollama.embed_response(model, vectors, tokens, total_ms=total_ms, load_ms=load_ms))


async def embeddings(request: web.Request) -> web.Response:
    """The legacy route: one prompt, one vector (L2-normalised, like /api/embed's)."""
    sup = request.app[SUPERVISOR]
    job = ollama.parse_embeddings(await request.read(), api._limits(sup.settings))
    _warn_ignored(request.path, job.ignored)
    _, vectors, _, _, _ = await _embed(sup, job)
    return api.json_response({"embedding": vectors[0] if vectors else []})


# ---------------------------------------------------------------------- models


async def tags(request: web.Request) -> web.Response:
    """Every servable model by its catalog name, and again by each name it was pulled or copied as
    (as Ollama lists ``hf.co/org/repo:quant``): clients check ``list()`` after a pull."""
    catalog = request.app[SUPERVISOR].catalog()
    servable = {e.name: e for e in catalog.entries() if e.error is None}
    named = [(name, e) for name, e in servable.items()]
    named += [(alias, servable[target]) for alias, target in catalog.pulled_names().items() if target in servable]
    models = [{"name": name, "model": name, "modified_at": ollama.rfc3339(e.modified), "size": e.size_bytes,
               "digest": ollama.entry_digest(e), "details": ollama.header_details(e.header)}
              for name, e in named]
    return api.json_response({"models": models})


async def show(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    entry = sup.resolve(ollama.parse_model(await request.read()))
    h = entry.header
    metadata = h.metadata if h is not None else {}
    cfg = sup.runner_config(entry)
    parameters = f"num_ctx {cfg.n_ctx}"
    return api.json_response({
        "license": str(metadata.get("general.license", "")),
        "modelfile": ollama.modelfile(entry.name, str(entry.path), parameters),
        "parameters": parameters,
        "template": (h.chat_template or "") if h is not None else "",
        "details": ollama.header_details(entry.header),
        "model_info": ollama.model_info(metadata, h.parameters if h else 0),
        "capabilities": ollama.capabilities(metadata),
        "modified_at": ollama.rfc3339(entry.modified),
    })




# ---------------------------------------------------------------------- misc


async def version(request: web.Request) -> web.Response:
    return api.json_response({"version": __version__})


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", root)    # HEAD too: clients probe it
    r.add_post("/api/generate", generate)
    r.add_post("/api/chat", chat)
    r.add_post("/api/embed", embed)
    r.add_post("/api/embeddings", embeddings)
    r.add_get("/api/tags", tags)
    r.add_post("/api/show", show)
    r.add_get("/api/version", version)
