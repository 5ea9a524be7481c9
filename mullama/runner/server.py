"""The runner's HTTP API (aiohttp): routes, bearer-token auth, error mapping.

Every request needs ``Authorization: Bearer <MULLAMA_RUNNER_TOKEN>``. Errors are
``{"error": {"type", "message"}}`` with the status of the typed error
(``mullama.core.errors``), mapped in ``error_middleware`` and nowhere else.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time

import msgspec
import structlog
from aiohttp import web

from mullama import wire
from mullama.core.errors import (
    ContextOverflow,
    InvalidArgument,
    InvalidGrammar,
    InvalidSchema,
    MullamaError,
    RequestNotFound,
)
from mullama.runner import adapters, cpu
from mullama.runner import completion as completion_answer
from mullama.runner.service import RunnerService

log = structlog.get_logger("mullama.runner")

SERVICE = web.AppKey("service", RunnerService)
MAX_BODY = 32 << 20
#: Deepest nesting of ( ) groups a GBNF grammar may have: llama.cpp's grammar parser recurses once per
#: level, and ~100k levels overflow the stack and kill the runner (see test_malformed_requests.py).
MAX_GRAMMAR_DEPTH = 256
#: A grammar's rules (a chain of rules recurses like nesting: 50 000 pass, 120 000 kill the runner)
#: and characters; real grammars, json-schema ones included, stay far below both.
MAX_GRAMMAR_RULES = 8192
MAX_GRAMMAR_BYTES = 1 << 20
#: A JSON schema's size and its enum values in all: the grammar built from it grows with both, and so does
#: the time to compile it and to apply it at every token (a 40 000-value enum burned 39 CPU-seconds).
#: An 8192-value enum builds in 0.16 s here; tool and response schemas stay far below both.
MAX_SCHEMA_BYTES = 256 << 10
MAX_SCHEMA_ENUM = 8192
_GBNF_SKIP = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|#[^\n]*')


def _json(obj: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=wire.encoder.encode(obj), status=status, content_type="application/json")


def error_response(status: int, type_: str, message: str) -> web.Response:
    return _json(wire.ErrorBody(error=wire.ErrorDetail(type=type_, message=message)), status)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except MullamaError as exc:
        return error_response(exc.status, exc.type, str(exc))
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return error_response(400, "invalid_request_error", f"invalid request body: {exc}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
                413: "request_too_large"}.get(exc.status, "invalid_request_error")
        return error_response(exc.status, kind, exc.reason or str(exc))
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception as exc:  # a bug: say so, keep serving
        log.exception("unhandled", path=request.path)
        return error_response(500, "server_error", f"internal error: {type(exc).__name__}: {exc}")


def auth_middleware(token: str):
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler):
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")  # any bytes
        if not hmac.compare_digest(given, expected):
            return error_response(401, "authentication_error", "missing or wrong bearer token")
        return await handler(request)

    return check


async def _body(request: web.Request, kind):
    raw = await request.read()
    if not raw:
        raise InvalidArgument("request body is empty (JSON expected)")
    return wire.decode(raw, kind)


def grammar_depth(grammar: str) -> int:
    """The deepest nesting of ( ) groups in a GBNF grammar, outside literals, classes and comments."""
    depth = deepest = 0
    for match in re.finditer(r"[()]", _GBNF_SKIP.sub("", grammar)):
        depth = depth + 1 if match.group() == "(" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


def check_completion(req: wire.CompletionRequest) -> None:
    """Refuse what would take the runner down rather than fail cleanly in llama.cpp: its grammar
    parser and left-recursion check recurse once per nesting level and once per rule of a chain
    (``r0 ::= r1 "x"``, ``r1 ::= r2 "x"``, ...; 120 000 of them overflow a thread's stack). Schemas are
    bounded by what it costs to compile and apply their grammar."""
    if isinstance(req.json_schema, dict):
        check_schema(req.json_schema)
    if not req.grammar:
        return
    if len(req.grammar) > MAX_GRAMMAR_BYTES:
        raise InvalidGrammar(f"invalid grammar: {len(req.grammar)} characters, above the limit of "
                             f"{MAX_GRAMMAR_BYTES}")
    rules = req.grammar.count("::=")
    if rules > MAX_GRAMMAR_RULES:
        raise InvalidGrammar(f"invalid grammar: {rules} rules, above the limit of {MAX_GRAMMAR_RULES}")
    if grammar_depth(req.grammar) > MAX_GRAMMAR_DEPTH:
        raise InvalidGrammar(f"invalid grammar: groups nested deeper than {MAX_GRAMMAR_DEPTH} levels")


def check_schema(schema: dict) -> None:
    size = len(wire.encoder.encode(schema))
    if size > MAX_SCHEMA_BYTES:
        raise InvalidSchema(f"invalid json schema: {size} bytes, above the limit of {MAX_SCHEMA_BYTES}")
    values, stack = 0, [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            enum = node.get("enum")
            if isinstance(enum, list):
                values += len(enum)
            stack.extend(v for k, v in node.items() if k not in ("enum", "const"))
        elif isinstance(node, list):
            stack.extend(node)
    if values > MAX_SCHEMA_ENUM:
        raise InvalidSchema(f"invalid json schema: {values} enum values, above the limit of {MAX_SCHEMA_ENUM} "
                            "(the grammar would take too long to build and to apply)")


async def health(request: web.Request) -> web.Response:
    return _json(request.app[SERVICE].health())


def clamp_batch(params: wire.LoadParams) -> wire.LoadParams:
    """n_batch and n_ubatch no larger than the requested n_ctx, as llama.cpp clamps them itself. The
    Batcher fills batches up to the n_batch it was *given*; with n_ctx under llama.cpp's 256-token floor
    the context would get a bigger n_ctx but keep n_batch = n_ctx, and a 129..255-token prompt then failed
    as "batch exceeds n_batch" (a 500) instead of being served."""
    if params.n_ctx <= 0 or params.n_batch <= params.n_ctx:
        return params
    n_batch = params.n_ctx
    return msgspec.structs.replace(params, n_batch=n_batch, n_ubatch=min(params.n_ubatch, n_batch))


async def load(request: web.Request) -> web.Response:
    params = clamp_batch(await _body(request, wire.LoadParams))
    return _json(await request.app[SERVICE].load(params))


async def completion(request: web.Request) -> web.StreamResponse:
    req = await _body(request, wire.CompletionRequest)
    check_completion(req)
    service = request.app[SERVICE]
    t0 = time.perf_counter()
    stream = await service.submit(req)
    finals = []
    try:
        if not req.stream:
            final = await completion_answer.collect(stream)
            finals = [final]
            return _json(final)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        finals, last = await completion_answer.relay(stream, resp.write)
        await resp.write_eof(last)  # the final line and the body's end in one send
        return resp
    finally:
        stream.close()  # cancels the request if the client went away first
        if finals:
            final = finals[-1]
            s = final.stats
            log.info("completion", id=stream.id, finish=final.finish_reason, prompt_tokens=s.prompt_tokens,
                     cached_tokens=s.cached_tokens, completion_tokens=s.completion_tokens,
                     ttft_ms=round(s.ttft_ms, 2), total_ms=round((time.perf_counter() - t0) * 1000, 2))
        else:
            log.info("completion_aborted", id=stream.id)


async def count(request: web.Request) -> web.Response:
    """The prompt's size, rendered and tokenized as /completion would (template, tools, thinking); nothing
    is evaluated and no slot is taken."""
    req = await _body(request, wire.CompletionRequest)
    return _json(wire.CountResult(prompt_tokens=await request.app[SERVICE].count(req)))


async def embedding(request: web.Request) -> web.Response:
    req = await _body(request, wire.EmbeddingRequest)
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise InvalidArgument("input is empty")
    service = request.app[SERVICE]
    n_ctx = service.kv().cells_total  # the model's context: no input may be longer (its memory grows with it)
    model = service.model()
    for i, text in enumerate(texts):
        n = len(model.tokenize(text, True, False))
        if n > n_ctx:
            raise ContextOverflow(f"input[{i}] has {n} tokens but the context holds {n_ctx}")
    vectors, n = await service.embed(texts)
    return _json(wire.EmbeddingResult(embeddings=vectors, prompt_tokens=n))


async def tokenize(request: web.Request) -> web.Response:
    req = await _body(request, wire.TokenizeRequest)
    model = request.app[SERVICE].model()
    return _json(wire.TokenizeResult(tokens=model.tokenize(req.content, req.add_special, req.parse_special)))


async def detokenize(request: web.Request) -> web.Response:
    req = await _body(request, wire.DetokenizeRequest)
    return _json(wire.DetokenizeResult(content=request.app[SERVICE].model().detokenize(req.tokens)))


async def apply_template(request: web.Request) -> web.Response:
    req = await _body(request, wire.ApplyTemplateRequest)
    messages = [{"role": m.role, "content": m.content or ""} for m in req.messages]
    prompt = request.app[SERVICE].model().apply_chat_template(messages, req.add_generation_prompt)
    return _json(wire.ApplyTemplateResult(prompt=prompt))


def _control(op: str):
    async def handler(request: web.Request) -> web.Response:
        req = await _body(request, wire.ControlRequest)
        return _json(wire.ControlResult(id=req.id, ok=request.app[SERVICE].control(op, req.id)))

    return handler


async def kv(request: web.Request) -> web.Response:
    return _json(request.app[SERVICE].kv())


async def stats(request: web.Request) -> web.Response:
    return _json(request.app[SERVICE].stats())


async def set_cpu(request: web.Request) -> web.Response:
    allotment = await _body(request, wire.CpuAllotment)
    return _json(await cpu.apply(request.app[SERVICE].batcher(), allotment))


async def cache_ram(request: web.Request) -> web.Response:
    """``GET``: the limit and the bytes held; ``POST {"limit": n}``: a new limit, answered once it applies."""
    batcher = request.app[SERVICE].batcher()
    if request.method == "POST":
        want = await _body(request, wire.CacheRam)
        await asyncio.to_thread(batcher.set_cache_ram, want.limit)
        log.info("cache_ram", limit=want.limit, held=batcher.counters().parked_bytes)
    return _json(wire.CacheRam(limit=max(0, batcher.cache_ram), held=batcher.counters().parked_bytes))


async def adapter_list(request: web.Request) -> web.Response:
    return web.Response(body=wire.encoder.encode(adapters.infos(request.app[SERVICE].batcher())),
                        content_type="application/json")


async def adapter_add(request: web.Request) -> web.Response:
    spec = await _body(request, wire.AdapterSpec)
    return _json(await adapters.add(request.app[SERVICE].batcher(), spec))


async def adapter_remove(request: web.Request) -> web.Response:
    try:
        adapter_id = int(request.match_info["id"])
    except ValueError:
        raise InvalidArgument(f"adapter id must be an integer, got {request.match_info['id']!r}") from None
    batcher = request.app[SERVICE].batcher()
    if not batcher.remove_adapter(adapter_id):
        raise RequestNotFound(f"no LoRA adapter with id {adapter_id} is loaded")
    return web.Response(body=wire.encoder.encode(adapters.infos(batcher)), content_type="application/json")


def create_app(service: RunnerService, token: str) -> web.Application:
    if not token:
        raise ValueError("a runner token is required")
    app = web.Application(middlewares=[error_middleware, auth_middleware(token)], client_max_size=MAX_BODY)
    app[SERVICE] = service
    app.router.add_get("/health", health)
    app.router.add_post("/load", load)
    app.router.add_post("/completion", completion)
    app.router.add_post("/count", count)
    app.router.add_post("/embedding", embedding)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_post("/apply-template", apply_template)
    for op in ("cancel", "pause", "resume"):
        app.router.add_post(f"/{op}", _control(op))
    app.router.add_get("/kv", kv)
    app.router.add_get("/stats", stats)
    app.router.add_post("/cpu", set_cpu)
    app.router.add_get("/cache-ram", cache_ram)
    app.router.add_post("/cache-ram", cache_ram)
    app.router.add_get("/adapters", adapter_list)
    app.router.add_post("/adapters", adapter_add)
    app.router.add_delete("/adapters/{id}", adapter_remove)
    return app
