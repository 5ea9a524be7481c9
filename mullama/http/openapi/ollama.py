"""OpenAPI paths and schemas of the Ollama-compatible routes and the model store; ``openapi_spec.spec``
merges them into /openapi.json.

Request schemas say what ``ollama.py`` accepts (its option table and checks, the server's ``Limits``);
response schemas list the fields the handlers write, extra properties allowed. Errors on these routes
are Ollama's ``{"error": "message"}`` (``OllamaError``), not the OpenAI shape. Streaming answers are
``application/x-ndjson``: one JSON object a line, the last with ``"done": true`` (or an ``error``
line). /api/pull, /api/delete and /api/copy follow Ollama's documented shapes (``store_api.py``), /api/create
too (``ollama/presets.py``).
Pure: builds dicts.
"""

from __future__ import annotations

import math
from typing import Any

from mullama.http.ollama import format as ollama
from mullama.http.ollama import request as ollama_request
from mullama.http.openai import request as openai_request
from mullama.http.openai.body import INT32_MAX
from mullama.http.openapi.openai_requests import TOOL
from mullama.http.openapi.schema import (
    BOOL as _BOOL,
)
from mullama.http.openapi.schema import (
    DURATION,
    Schema,
)
from mullama.http.openapi.schema import (
    INT as _INT,
)
from mullama.http.openapi.schema import (
    NULL as _NULL,
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
from mullama.http.shapes import NDJSON

TAG = {"name": "ollama", "description": "Ollama-compatible API and the model store"}

_NS = {"type": "integer", "minimum": 0, "description": "nanoseconds"}
_EMPTY_OR_NULL = {"anyOf": [_NULL, {"type": "array", "maxItems": 0}],
                  "description": "Not supported; only null or an empty array."}


def _opt(schema: Schema) -> Schema:
    return {"anyOf": [_NULL, schema]}


def _keep_alive() -> Schema:
    return {"anyOf": [_NULL, _NUM, {"type": "string", "pattern": DURATION, "maxLength": 64}],
            "description": "How long the model stays loaded after this request: seconds, or a duration such "
                           "as '5m'; negative: forever; 0: unload now."}


def _option_schema(name: str, limits: openai_request.Limits) -> Schema:
    kind, target, lo, hi = ollama_request.OPTIONS[name]
    if kind == "bool":
        schema: Schema = dict(_BOOL)
    elif kind == "stop":
        text = {"type": "string", "minLength": 1, "maxLength": limits.max_stop_len}
        schema = {"anyOf": [text, {"type": "array", "maxItems": limits.max_stop, "items": text}]}
    else:
        schema = {"type": "integer" if kind == "int" else "number"}
        if name == "num_predict":
            hi = limits.max_tokens
        if lo > -math.inf:
            schema["minimum"] = int(lo) if kind == "int" else lo
        if hi < math.inf:
            schema["maximum"] = int(hi) if kind == "int" else hi
        if name == "repeat_penalty":
            schema = {"type": "number", "exclusiveMinimum": 0}
        if name == "num_predict":
            schema["not"] = {"const": 0}
    if name in ollama_request.REMOVED:
        schema = {"const": ollama_request.REMOVED[name],
                  "description": "llama.cpp no longer has this sampler: only its 'off' value is accepted."}
    elif target is None:
        schema["description"] = ("A load-time option: accepted when the model is already loaded that way, else "
                                 "a 400 naming the per-model setting to change (docs/ollama.md).")
    return _opt(schema)


def _options(limits: openai_request.Limits) -> Schema:
    props = {name: _option_schema(name, limits) for name in ollama.OPTION_NAMES}
    props["num_predict"]["description"] = "-1 or -2: until the context is full."
    return {"anyOf": [_NULL, {"type": "object", "properties": props,
                              "description": "Unknown options are ignored, as Ollama does."}]}


def _request_schemas(limits: openai_request.Limits) -> dict[str, Schema]:
    model = {"type": "string", "description": "Model name as on the OpenAI routes; empty: the default model."}
    common = {
        "model": _opt(model), "stream": _opt(_BOOL), "options": _options(limits), "keep_alive": _keep_alive(),
        "format": {"anyOf": [_NULL, {"enum": ["", "json"]}, {"type": "object"}],
                   "description": "\"json\": any JSON object; an object: a JSON schema the answer follows."},
        "think": {"anyOf": [_NULL, _BOOL, {"enum": ["", "low", "medium", "high"]}],
                  "description": "A model that reasons: true (or a level) thinks and returns it apart "
                                 "('thinking'), false answers without; others ignore it."},
        "logprobs": {**_opt(_BOOL), "description": "Each generated token's log-probability ('logprobs')."},
        "top_logprobs": {"anyOf": [_NULL, {"type": "integer", "minimum": 0, "maximum": 20}],
                         "description": "With logprobs: the most likely tokens at each position."},
    }
    unsupported_text = {"anyOf": [_NULL, {"type": "string", "maxLength": 0}], "description": "Not supported."}
    call = {"type": "object", "required": ["function"], "properties": {"function": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}, "arguments": {"type": "object"}}}}}
    message = _obj({"role": {"enum": ["system", "user", "assistant", "tool"]}, "content": _opt(_STR),
                    "images": _EMPTY_OR_NULL,
                    "tool_calls": {"anyOf": [_NULL, {"type": "array", "items": call}],
                                   "description": "Assistant messages only: the calls it made."},
                    "tool_name": {**_opt(_STR), "description": "role 'tool': the function whose result this is"},
                    "thinking": _opt(_STR)}, ("role",))
    message["if"] = {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}}
    message["then"] = {"properties": {"role": {"const": "assistant"}}}
    name = {"model": _opt(model), "name": {**_opt(_STR), "description": "Older spelling of 'model'."}}
    store_name = {"model": {**_STR, "description": "The model (required: here or as 'name')."},
                  "name": {**_STR, "description": "Older spelling of 'model'."}}
    return {
        "OllamaGenerateRequest": _obj({
            **common, "prompt": {**_opt(_STR), "description": "Empty or missing: only load (or unload) the "
                                                              "model."},
            "system": _opt(_STR), "raw": _opt(_BOOL), "suffix": unsupported_text, "template": unsupported_text,
            "context": _EMPTY_OR_NULL, "images": _EMPTY_OR_NULL}),
        "OllamaChatMessage": message,
        "OllamaChatRequest": _obj({
            **common, "tools": {"anyOf": [_NULL, {"type": "array", "maxItems": 128, "items": TOOL}],
                                "description": "Functions the model may call (as Ollama's and OpenAI's)."},
            "messages": {"anyOf": [_NULL, {"type": "array", "maxItems": limits.max_messages,
                                           "items": _ref("OllamaChatMessage")}],
                         "description": "Empty or missing: only load (or unload) the model."}}),
        "OllamaEmbedRequest": _obj({
            "model": _opt(model), "options": _options(limits), "keep_alive": _keep_alive(),
            "truncate": _opt(_BOOL),
            "dimensions": _opt({"type": "integer", "minimum": 1, "maximum": INT32_MAX}),
            "input": {"anyOf": [_NULL, _STR, {"type": "array", "maxItems": limits.max_inputs,
                                              "items": {"type": "string", "minLength": 1}}],
                      "description": "\"\", [] or missing: only load the model."}}),
        "OllamaEmbeddingsRequest": _obj({"model": _opt(model), "prompt": _opt(_STR), "options": _options(limits),
                                         "keep_alive": _keep_alive()}),
        "OllamaModelRequest": _obj({**name, "verbose": _opt(_BOOL)}),
        # store_api.py's bodies: non-null fields; "force" is mullama's (delete a loaded model after unloading it)
        "OllamaPullRequest": _obj({**store_name, "insecure": _BOOL, "stream": _BOOL}),
        "OllamaDeleteRequest": _obj({**store_name, "force": {**_BOOL, "description": "Unload a loaded model "
                                                                                      "first (mullama)."}}),
        "OllamaCopyRequest": _obj({"source": _STR, "destination": _STR}, ("source", "destination")),
        "OllamaCreateRequest": _obj({
            **store_name, "stream": _opt(_BOOL),
            "from": {**_opt(_STR), "description": "The base model (required unless 'modelfile')."},
            "modelfile": {**_opt(_STR), "description": "Older clients: the Modelfile's text (FROM, SYSTEM, "
                                                      "TEMPLATE, PARAMETER, ADAPTER, MESSAGE, LICENSE)."},
            "system": _opt(_STR),
            "template": {**_opt(_STR), "description": "A Jinja chat template or a llama.cpp built-in template's "
                                                      "name; Ollama's Go templates are refused."},
            "license": {"anyOf": [_NULL, _STR, _array(_STR)]},
            "parameters": {"anyOf": [_NULL, {"type": "object"}],
                           "description": "Ollama's names (temperature, num_predict, stop, ...); load settings "
                                          "(num_ctx, ...) and unknown names are refused."},
            "messages": {"anyOf": [_NULL, _array(_obj({"role": {"enum": ["system", "user", "assistant"]},
                                                       "content": _STR}, ("role",)))]},
            "adapters": {"anyOf": [_NULL, {"type": "object", "additionalProperties": _STR}],
                         "description": "File name -> digest: the base's adapter named by the file's stem."},
            "files": {"anyOf": [_NULL, {"type": "object", "maxProperties": 0}],
                      "description": "Not supported: no weights are uploaded."},
            "quantize": {"anyOf": [_NULL, {"type": "string", "maxLength": 0}], "description": "Not supported."}}),
    }


def _response_schemas() -> dict[str, Schema]:
    stats = {"done_reason": {"type": "string", "description": "'stop', 'length', 'load' or 'unload'"},
             "truncated": {"const": True, "description": "Present when the context filled up (done_reason "
                                                         "'length' that num_predict did not set; mullama)."},
             "total_duration": _NS, "load_duration": _NS, "prompt_eval_count": _INT,
             "prompt_eval_duration": _NS, "eval_count": _INT, "eval_duration": _NS,
             "profile": {"type": "object", "description": "With 'X-Profile: true' (mullama)."}}
    top = _obj({"token": _STR, "logprob": _NUM, "bytes": _array(_INT)}, ("token", "logprob"))
    logprobs = _array(_obj({"token": _STR, "logprob": _NUM, "bytes": _array(_INT), "top_logprobs": _array(top)},
                           ("token", "logprob")))
    head = {"model": _STR, "created_at": {"type": "string", "format": "date-time"}, "done": _BOOL,
            "logprobs": logprobs, **stats}
    details = _obj({"parent_model": _STR, "format": _STR, "family": _STR,
                    "families": {"type": ["array", "null"], "items": _STR}, "parameter_size": _STR,
                    "quantization_level": _STR})
    return {
        "OllamaError": _obj({"error": _STR}, ("error",)),
        "OllamaGenerateResponse": _obj({**head, "response": _STR, "thinking": _STR},
                                       ("model", "created_at", "response", "done")),
        "OllamaChatResponse": _obj({**head, "message": _obj({"role": _STR, "content": _STR, "thinking": _STR,
                                                             "tool_calls": _array(
            _obj({"function": _obj({"name": _STR, "arguments": {"type": "object"}}, "*")}, "*"))}, ("role",))},
                                   ("model", "created_at", "message", "done")),
        "OllamaEmbedResponse": _obj({"model": _STR, "embeddings": {"type": "array", "items": {
            "type": "array", "items": _NUM}}, "total_duration": _NS, "load_duration": _NS,
            "prompt_eval_count": _INT}, ("model", "embeddings")),
        "OllamaEmbeddingsResponse": _obj({"embedding": {"type": "array", "items": _NUM}}, ("embedding",)),
        "OllamaDetails": details,
        "OllamaModel": _obj({"name": _STR, "model": _STR, "modified_at": {"type": "string", "format": "date-time"},
                             "size": _INT, "digest": {**_STR, "description": "sha256 hex (docs/ollama.md)"},
                             "details": _ref("OllamaDetails")}, ("name", "model", "size", "digest")),
        "OllamaTags": _obj({"models": {"type": "array", "items": _ref("OllamaModel")}}, ("models",)),
        "OllamaShowResponse": _obj({
            "license": _STR, "modelfile": _STR, "parameters": _STR, "template": _STR,
            "details": _ref("OllamaDetails"), "capabilities": {"type": "array", "items": _STR},
            "model_info": {"type": "object", "description": "GGUF key/values; arrays as null"},
            "modified_at": {"type": "string", "format": "date-time"},
            "system": {**_STR, "description": "A preset's system prompt"},
            "messages": {"type": "array", "description": "A preset's few-shot messages"}},
            ("modelfile", "parameters", "template", "details", "model_info")),
        "OllamaVersion": _obj({"version": _STR}, ("version",)),
        "OllamaStatus": _obj({"status": _STR, "digest": _STR, "total": _INT, "completed": _INT}),
    }


def schemas(limits: openai_request.Limits | None = None) -> dict[str, Any]:
    return {**_response_schemas(), **_request_schemas(limits or openai_request.Limits())}


# ---------------------------------------------------------------------- paths

_ERRORS = {400: "Invalid request",
           401: "Missing or invalid API key (only when the server has keys); for a pull, also: the hub "
                "needs a token (HF_TOKEN)",
           403: "The hub refused the token for this repository (gated: accept its terms)",
           404: "Model not found", 408: "Deadline exceeded", 409: "The model's state forbids this now",
           413: "Request body too large", 422: "The model file cannot be served", 429: "Queue full",
           500: "Internal error", 502: "The model's runner crashed or failed; for a pull: the hub failed",
           503: "Shutting down, or the model failed to load",
           507: "The model does not fit in memory; for a pull: not enough free disk"}
_GENERATE = (400, 401, 404, 408, 413, 422, 429, 500, 502, 503, 507)
_EMBED = (400, 401, 404, 413, 422, 500, 502, 503, 507)
_NAMED = (400, 401, 404, 413, 422, 500)
_READ = (401, 500)
_STORE = (400, 401, 403, 404, 409, 413, 500, 502, 503, 507)


def _error(code: int) -> Schema:
    return {"description": _ERRORS[code], "content": {"application/json": {"schema": _ref("OllamaError")}}}


def _op(op_id: str, summary: str, ok: Schema, errors: tuple[int, ...], *, body: str | None = None,
        body_required: bool = True, stream_line: str | None = None, description: str | None = None,
        media: str = "application/json") -> Schema:
    content: Schema = {media: {"schema": ok}}
    if stream_line:
        content[NDJSON] = {
            "schema": {"type": "string", "description": f"Unless \"stream\": false: one {stream_line} JSON "
                       "object a line, the last with \"done\": true; an error mid-stream is a line "
                       "{\"error\": \"...\"}."},
            "x-ndjson-line": _ref(stream_line)}
    op: Schema = {"operationId": op_id, "summary": summary, "tags": ["ollama"],
                  "responses": {"200": {"description": "OK", "content": content},
                                **{str(c): _error(c) for c in errors},
                                "default": {"description": "Error",
                                            "content": {"application/json": {"schema": _ref("OllamaError")}}}}}
    if description:
        op["description"] = description
    if body:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def paths() -> dict[str, Any]:
    load = ("With nothing to generate the model is loaded (done_reason 'load'), or with keep_alive 0 unloaded "
            "(done_reason 'unload').")
    return {
        "/": {"get": _op("ollamaRoot", "'Ollama is running' (clients probe it; HEAD too)",
                         {"type": "string", "const": "Ollama is running"}, _READ, media="text/plain")},
        "/api/generate": {"post": _op("ollamaGenerate", "Generate from a prompt (Ollama)",
                                      _ref("OllamaGenerateResponse"), _GENERATE, body="OllamaGenerateRequest",
                                      stream_line="OllamaGenerateResponse", description=load)},
        "/api/chat": {"post": _op("ollamaChat", "Chat (Ollama)", _ref("OllamaChatResponse"), _GENERATE,
                                  body="OllamaChatRequest", stream_line="OllamaChatResponse", description=load)},
        "/api/embed": {"post": _op("ollamaEmbed", "Embeddings, L2-normalised (Ollama)", _ref("OllamaEmbedResponse"),
                                   _EMBED, body="OllamaEmbedRequest")},
        "/api/embeddings": {"post": _op("ollamaEmbeddings", "One embedding (Ollama, legacy)",
                                        _ref("OllamaEmbeddingsResponse"), _EMBED, body="OllamaEmbeddingsRequest")},
        "/api/tags": {"get": _op("ollamaTags", "Servable models (Ollama)", _ref("OllamaTags"), _READ)},
        "/api/show": {"post": _op("ollamaShow", "One model: details, GGUF metadata, chat template (Ollama)",
                                  _ref("OllamaShowResponse"), _NAMED, body="OllamaModelRequest",
                                  body_required=False)},
        "/api/version": {"get": _op("ollamaVersion", "mullama's version (not Ollama's)", _ref("OllamaVersion"),
                                    _READ)},
        "/api/pull": {"post": _op("ollamaPull", "Download a model into the store (Ollama)", _ref("OllamaStatus"),
                                  _STORE, body="OllamaPullRequest", stream_line="OllamaStatus")},
        "/api/delete": {"delete": _op("ollamaDelete", "Delete a model from the store (Ollama)",
                                      _ref("OllamaStatus"), _STORE, body="OllamaDeleteRequest")},
        "/api/copy": {"post": _op("ollamaCopy", "Copy a model under a new name (Ollama)", _ref("OllamaStatus"),
                                  _STORE, body="OllamaCopyRequest")},
        "/api/create": {"post": _op("ollamaCreate", "Create a preset: a base model with a system prompt, template, "
                                    "parameters, adapters, messages (Ollama; docs/presets.md)", _ref("OllamaStatus"),
                                    (400, 401, 404, 409, 413, 422, 500), body="OllamaCreateRequest",
                                    stream_line="OllamaStatus")},
    }
