"""The supervisor's OpenAPI 3.1 document, served at ``/openapi.json``.

Request schemas of the OpenAI routes come from ``openai_requests.py`` (generated from the Structs
``openai_request.py`` decodes into, with its hand-made checks laid over them). Response schemas are
written by hand and kept loose (extra properties allowed), so every response the server sends
conforms. ``spec`` merges ``openapi_internal.py`` (/internal/*, /metrics), ``ollama.py``, ``anthropic.py``
and ``responses.py`` (the Responses API).
"""

from __future__ import annotations

from typing import Any

from mullama import __version__
from mullama.http.openai import request as openai_request
from mullama.http.openapi import anthropic as openapi_anthropic
from mullama.http.openapi import internal as openapi_internal
from mullama.http.openapi import ollama as openapi_ollama
from mullama.http.openapi import responses as openapi_responses
from mullama.http.openapi.openai_requests import (  # noqa: F401  (TOKEN_ID_KEY: part of this module's surface)
    _KEEP_ALIVE,
    TOKEN_ID_KEY,
    request_schemas,
)
from mullama.http.openapi.schema import (
    BOOL as _BOOL,
)
from mullama.http.openapi.schema import (  # noqa: F401  (DURATION: part of this module's surface)
    DURATION,
    Schema,
)
from mullama.http.openapi.schema import (
    INT as _INT,
)
from mullama.http.openapi.schema import (
    NUM as _NUM,
)
from mullama.http.openapi.schema import (
    STR as _STR,
)
from mullama.http.openapi.schema import (
    array as _array,
)
from mullama.http.openapi.schema import (
    obj as _obj,
)
from mullama.http.openapi.schema import (
    ref as _ref,
)

# ---------------------------------------------------------------------- responses


_OPT_STR, _OPT_INT, _NULL = {"type": ["string", "null"]}, {"type": ["integer", "null"]}, {"type": "null"}
_USAGE = _obj({"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT,
               "prompt_tokens_details": _obj({"cached_tokens": _INT})}, ("prompt_tokens", "total_tokens"))
_OPT_USAGE = {"anyOf": [_NULL, _USAGE]}
_HEAD = {"id": _STR, "created": _INT, "model": _STR, "system_fingerprint": _STR}
_HEAD_REQUIRED = ("id", "object", "created", "model", "choices")
_FINISH = {"type": ["string", "null"],
           "description": "'stop', 'length' or 'tool_calls' (the answer is tool calls); null until the last chunk."}


def _generation_schemas() -> dict[str, Schema]:
    call = _obj({"id": _STR, "type": {"const": "function"},
                 "function": _obj({"name": _STR, "arguments": {**_STR, "description": "JSON text"}}, "*")}, "*")
    call_delta = _obj({"index": _INT, "id": _STR, "type": {"const": "function"},
                       "function": _obj({"name": _STR, "arguments": _STR})}, ("index", "function"))
    reasoning = {**_STR, "description": "The model's reasoning, apart from the answer (reasoning models)."}
    message = _obj({"role": {"const": "assistant"}, "content": _OPT_STR, "refusal": _OPT_STR,
                    "reasoning_content": reasoning, "tool_calls": _array(call)}, ("role",))
    delta = _obj({"role": _STR, "content": _OPT_STR, "refusal": _OPT_STR, "reasoning_content": reasoning,
                  "tool_calls": _array(call_delta)})
    truncated = {"const": True, "description": "Present when the context filled up (finish_reason 'length' that "
                                               "the request's max_tokens did not set; llama-server's field)."}
    top = _obj({"token": _STR, "logprob": _NUM, "bytes": {"type": ["array", "null"], "items": _INT}},
               ("token", "logprob"))
    token = _obj({"token": _STR, "logprob": _NUM, "bytes": {"type": ["array", "null"], "items": _INT},
                  "top_logprobs": _array(top)}, ("token", "logprob", "top_logprobs"))
    chat_lp = {"anyOf": [_NULL, _obj({"content": {"type": ["array", "null"], "items": token},
                                      "refusal": {"type": ["array", "null"]}})],
               "description": "With 'logprobs': each generated token's log-probability and the most likely others."}
    text_lp = {"anyOf": [_NULL, _obj({"tokens": _array(_STR), "token_logprobs": _array(_NUM),
                                      "top_logprobs": _array({"type": "object", "additionalProperties": _NUM}),
                                      "text_offset": _array(_INT)})],
               "description": "With 'logprobs': the legacy parallel lists."}
    choice = {"index": _INT, "finish_reason": _FINISH, "truncated": truncated, "logprobs": chat_lp}
    vector = {"anyOf": [_array(_NUM), {"type": "string", "contentEncoding": "base64",
                                       "description": "little-endian float32"}]}
    return {
        "ChatCompletion": _obj(
            {**_HEAD, "object": {"const": "chat.completion"}, "usage": _USAGE,
             "choices": _array(_obj({**choice, "message": message}, ("index", "message")))}, _HEAD_REQUIRED),
        "ChatCompletionChunk": _obj(
            {**_HEAD, "object": {"const": "chat.completion.chunk"}, "usage": _OPT_USAGE,
             "choices": _array(_obj({**choice, "delta": delta}, ("index", "delta")))}, _HEAD_REQUIRED),
        "Completion": _obj({**_HEAD, "object": {"const": "text_completion"}, "usage": _OPT_USAGE,
                            "choices": _array(_obj({**choice, "logprobs": text_lp, "text": _STR},
                                                   ("text", "index")))},
                           _HEAD_REQUIRED),
        "Embeddings": _obj({"object": {"const": "list"}, "model": _STR, "usage": _USAGE,
                            "data": _array(_obj({"object": {"const": "embedding"}, "index": _INT,
                                                 "embedding": vector}, ("object", "index", "embedding")))},
                           ("object", "data", "model")),
    }


def _management_schemas() -> dict[str, Schema]:
    # /api/ps serves `mullama ps` and the ollama client alike: Ollama's fields (details as /api/tags has
    # them, family = architecture) plus ours
    details = _obj({"parent_model": _STR, "format": _STR, "family": _STR,
                    "families": {"type": ["array", "null"], "items": _STR}, "parameter_size": _STR,
                    "quantization_level": _STR})
    ps_row = _obj({
        "name": _STR, "model": _STR, "id": _STR, "digest": {**_STR, "description": "sha256 hex; id is its start"},
        "size": {**_INT, "description": "bytes"}, "size_vram": {**_INT, "description": "bytes on GPUs"},
        "processor": {**_STR, "examples": ["100% CPU", "100% GPU", "48%/52% CPU/GPU"]},
        "context_length": _OPT_INT, "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "until": {**_STR, "examples": ["4 minutes from now", "forever", "while in use"]}, "state": _STR,
        "progress": _NUM, "pid": _OPT_INT, "port": _OPT_INT, "in_flight": _INT, "n_parallel": _INT,
        "pinned": _BOOL, "details": details}, ("name", "model", "size", "state"))
    describe = {
        "name": _STR, "family": _STR, "variant": _STR, "id": _STR, "path": _STR, "parts": _array(_STR),
        "size": _INT, "modified": _NUM, "source": _STR,
        "error": {**_OPT_STR, "description": "Why the file cannot be served; null when it can."},
        "architecture": _STR, "parameters": _INT, "parameters_label": _STR, "quantization": _STR,
        "context_length": _OPT_INT, "n_layer": _INT, "n_embd": _OPT_INT, "n_head": _OPT_INT,
        "n_head_kv": _OPT_INT, "has_chat_template": _BOOL,
        "base": {**_OPT_STR, "description": "A preset (source 'preset'): the model that serves it (docs/presets.md)"},
        "preset": {"type": "object", "description": "A preset: from, system, template, parameters, ..."}}
    model_name = {**_STR, "description": "Model name; empty: the server's default."}
    return {
        "Model": _obj({"id": _STR, "object": {"const": "model"}, "created": _INT, "owned_by": _STR,
                       "family": _STR, "variant": _STR, "size": _INT, "state": _STR, "quantization": _STR,
                       "context_length": _OPT_INT, "architecture": _STR,
                       "base": {**_STR, "description": "A preset: the model that serves it (docs/presets.md)"}},
                      ("id", "object", "created", "owned_by")),
        "ModelList": _obj({"object": {"const": "list"}, "data": _array(_ref("Model"))}, ("object", "data")),
        "Health": _obj({"status": {"const": "ok"}}, ("status",)),
        "Ready": _obj({"status": {"enum": ["ready", "draining"]}, "loaded": _array(_STR), "uptime_s": _NUM,
                       "failed": {"type": "object", "additionalProperties": {"type": ["string", "null"]},
                                  "description": "models whose load failed or whose runner crashed or froze: "
                                                 "model -> error (the next request retries)"}},
                      ("status", "loaded")),
        "RunningModel": ps_row,
        "RunningModels": _obj({"models": _array(_ref("RunningModel"))}, ("models",)),
        "ModelRequest": _obj({"model": model_name,
                              "keep_alive": {"anyOf": [{"type": "string", **_KEEP_ALIVE}, _NUM, _NULL]}}),
        "TokenizeRequest": {**_obj({"content": _STR,
                                    "add_special": {**_BOOL, "description": "add BOS/EOS as the model's vocabulary "
                                                    "says (default false, as llama-server)"},
                                    "with_pieces": {**_BOOL, "description": "not supported: 400 when true"},
                                    "model": {**model_name, "description": "whose vocabulary; default: the "
                                              "default model"}}, ("content",)), "additionalProperties": False},
        "TokenizeResponse": _obj({"tokens": _array(_INT)}, ("tokens",)),
        "DetokenizeRequest": {**_obj({"tokens": _array(_INT), "model": model_name}, ("tokens",)),
                              "additionalProperties": False},
        "DetokenizeResponse": _obj({"content": _STR}, ("content",)),
        "LoadResponse": {"allOf": [_ref("RunningModel"), _obj({"load_ms": _NUM}, ("load_ms",))]},
        "UnloadResponse": _obj({"model": _STR, "was": {**_STR, "description": "state before the call"},
                                "state": _STR}, ("model", "was", "state")),
        "CatalogEntry": _obj({**describe, "state": _STR}, ("name", "id", "path", "size", "source")),
        "Catalog": _obj({"models": _array(_ref("CatalogEntry")), "dir_errors": _array(_STR),
                         "default": _OPT_STR}, ("models", "dir_errors", "default")),
        "ModelDetails": _obj({**describe,
                              "metadata": {"type": "object", "description": "GGUF scalar key/values"},
                              "config": {"type": "object", "description": "effective runner settings"}},
                             ("name", "id", "path", "metadata", "config")),
    }


def response_schemas() -> dict[str, Schema]:
    """What the server answers; loose on purpose (extra properties allowed)."""
    error = _obj({"message": _STR, "type": _STR, "param": _OPT_STR, "code": _OPT_STR}, ("message", "type"))
    return {"Error": _obj({"error": error}, ("error",)), **_generation_schemas(), **_management_schemas()}


# ---------------------------------------------------------------------- paths

_ERRORS = {400: "Invalid request", 401: "Missing or invalid API key (only when the server has keys)",
           403: "A Host or Origin this server does not serve (the browser guard, docs/security.md)",
           415: "The body is not declared as JSON ('Content-Type: application/json')",
           404: "Model not found", 408: "Deadline exceeded", 409: "The model's state forbids this now",
           413: "Request body too large", 422: "The model file cannot be served", 429: "Queue full",
           500: "Internal error", 502: "The model's runner crashed or failed",
           503: "Shutting down, or the model failed to load", 507: "The model does not fit in memory"}
_GENERATE_ERRORS = (400, 401, 404, 408, 409, 413, 422, 429, 500, 502, 503, 507)
_LOAD_ERRORS = (400, 401, 404, 409, 413, 422, 429, 500, 502, 503, 507)
_UNLOAD_ERRORS = (400, 401, 404, 409, 413, 500, 503)
_READ_ERRORS = (401, 500)
_NAMED_ERRORS = (400, 401, 404, 422, 500)


def sse_event(payload: Schema, description: str, *, done: bool = False) -> Schema:
    """One server-sent event as OpenAPI 3.1 tools read a ``text/event-stream`` schema (each event is an
    object of its fields, as 3.2's ``itemSchema`` says outright): ``data`` is JSON of ``payload`` or an
    Error; with ``done`` it may also be the final ``[DONE]``."""
    data: Schema = {"type": "string", "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [payload, _ref("Error")]}}
    if done:
        data = {"anyOf": [{"const": "[DONE]"}, data]}
    return {"type": "object", "description": description, "required": ["data"],
            "properties": {"event": _STR, "data": data, "id": _STR, "retry": _INT}}


def _json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _op(op_id: str, summary: str, tag: str, ok: Schema, errors: tuple[int, ...], *,
        body: Schema | None = None, body_required: bool = True, stream_event: str | None = None,
        params: list[Schema] | None = None, description: str | None = None) -> Schema:
    content = _json_content(ok)
    if stream_event:
        content["text/event-stream"] = {
            "schema": sse_event(_ref(stream_event), f"With \"stream\": true: server-sent events, each "
                                f"'data: <{stream_event} JSON>', then 'data: [DONE]'; an error mid-stream is "
                                "an event with an \"error\" object (the Error schema).", done=True),
            "x-sse-event": _ref(stream_event)}
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag],
                  "responses": {"200": {"description": "OK", "content": content},
                                **{str(c): {"$ref": f"#/components/responses/E{c}"} for c in errors},
                                "default": {"$ref": "#/components/responses/Error"}}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": _json_content(body)}
    return op


def paths() -> dict[str, Schema]:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "description": "Model name: 'family', 'family:variant', an alias or a file name."}
    refresh = {"name": "refresh", "in": "query", "required": False, "schema": {"type": "string"},
               "description": "'1' rescans the models directories now."}
    default_model = "An empty or missing model means the server's default model."
    health = _op("health", "Liveness: the process answers (never needs a key)", "management",
                 _ref("Health"), ())
    ready = _op("ready", "Readiness and the loaded models", "management", _ref("Ready"), _READ_ERRORS)
    ready["responses"]["503"] = {"description": "Draining: the server is shutting down",
                                 "content": _json_content(_ref("Ready"))}
    return {
        "/v1/chat/completions": {"post": _op(
            "createChatCompletion", "Chat completion (OpenAI)", "openai", _ref("ChatCompletion"),
            _GENERATE_ERRORS, body=_ref("ChatCompletionRequest"), stream_event="ChatCompletionChunk",
            description=default_model)},
        "/v1/completions": {"post": _op(
            "createCompletion", "Text completion (OpenAI)", "openai", _ref("Completion"), _GENERATE_ERRORS,
            body=_ref("CompletionRequest"), stream_event="Completion", description=default_model)},
        "/v1/embeddings": {"post": _op(
            "createEmbedding", "Embeddings (OpenAI)", "openai", _ref("Embeddings"), _GENERATE_ERRORS,
            body=_ref("EmbeddingRequest"), description=default_model)},
        "/v1/models": {"get": _op("listModels", "Servable models (OpenAI)", "openai", _ref("ModelList"),
                                  _READ_ERRORS)},
        "/v1/models/{name}": {"get": _op("retrieveModel", "One model (OpenAI)", "openai", _ref("Model"),
                                         _NAMED_ERRORS, params=[name])},
        "/health": {"get": {**health, "security": [{}]}},
        "/ready": {"get": ready},
        "/api/ps": {"get": _op("listRunning", "Loaded models, like 'ollama ps' (Ollama's and mullama's fields)",
                               "management",
                               _ref("RunningModels"), _READ_ERRORS)},
        "/api/load": {"post": _op("loadModel", "Load a model now and wait until it is ready", "management",
                                  _ref("LoadResponse"), _LOAD_ERRORS, body=_ref("ModelRequest"),
                                  body_required=False, description=default_model)},
        "/api/unload": {"post": _op("unloadModel", "Unload a model (its requests finish first)", "management",
                                    _ref("UnloadResponse"), _UNLOAD_ERRORS, body=_ref("ModelRequest"),
                                    body_required=False, description=default_model)},
        "/api/models": {"get": _op("listCatalog", "Every model file found, broken ones with their error",
                                   "management", _ref("Catalog"), _READ_ERRORS, params=[refresh])},
        "/api/models/{name}": {"get": _op("showModel", "One model: header, GGUF metadata, effective config",
                                          "management", _ref("ModelDetails"), _NAMED_ERRORS, params=[name])},
        "/tokenize": {"post": _op("tokenize", "A model's tokens for a text (llama-server's route; loads the model)",
                                  "management", _ref("TokenizeResponse"), _LOAD_ERRORS, body=_ref("TokenizeRequest"))},
        "/detokenize": {"post": _op("detokenize", "The text of a model's tokens (llama-server's route)", "management",
                                    _ref("DetokenizeResponse"), _LOAD_ERRORS, body=_ref("DetokenizeRequest"))},
        "/openapi.json": {"get": _op("openapi", "This document", "management", {"type": "object"},
                                     _READ_ERRORS)},
    }


def _guarded(paths: dict[str, Schema]) -> dict[str, Schema]:
    """Every route passes the browser guard: 403 for a foreign Host or Origin, 415 for a body that is not
    declared as JSON -- in the shape of the route's API (Ollama's routes answer ``{"error"}``)."""
    for ops in paths.values():
        for op in ops.values():
            ollama = openapi_ollama.TAG["name"] in op.get("tags", ())
            codes = (403, 415) if "requestBody" in op else (403,)
            for code in codes:
                if ollama:
                    shape = {"content": {"application/json": {"schema": _ref("OllamaError")}}}
                    op["responses"].setdefault(str(code), {"description": _ERRORS[code], **shape})
                else:
                    op["responses"].setdefault(str(code), {"$ref": f"#/components/responses/E{code}"})
    return paths


def spec(limits: openai_request.Limits | None = None) -> dict[str, Any]:
    """The whole document; ``limits`` are the server's request caps (default ``openai_request.Limits()``)."""
    responses = {f"E{c}": {"description": text, "content": _json_content(_ref("Error"))}
                 for c, text in _ERRORS.items()}
    responses["Error"] = {"description": "Error", "content": _json_content(_ref("Error"))}
    only_with_keys = "; needed only when the server has API keys configured."
    return {
        "openapi": "3.1.0",
        "info": {"title": "mullama", "version": __version__,
                 "description": "A transparent local LLM serving layer over llama.cpp: an OpenAI-compatible "
                                "API plus management routes. API keys are optional: a server without keys "
                                "configured needs no credentials."},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [{"name": "openai", "description": "OpenAI-compatible API"},
                 {"name": "management", "description": "Health, loaded models, the model catalog"},
                 dict(openapi_internal.TAG), dict(openapi_ollama.TAG), dict(openapi_anthropic.TAG)],
        "paths": _guarded({**paths(), **openapi_responses.paths(), **openapi_internal.paths(),
                           **openapi_ollama.paths(), **openapi_anthropic.paths()}),
        "components": {
            "schemas": {**response_schemas(), **request_schemas(limits), **openapi_internal.schemas(),
                        **openapi_ollama.schemas(limits), **openapi_anthropic.schemas(limits),
                        **openapi_responses.schemas(limits)},
            "responses": responses,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "'Authorization: Bearer <key>'" + only_with_keys},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                           "description": "'X-Api-Key: <key>' instead of the bearer" + only_with_keys},
            },
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }
