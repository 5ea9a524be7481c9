"""The supervisor's OpenAPI 3.1 document, served at ``/openapi.json``.

Request schemas of the OpenAI routes are generated from the msgspec Structs that ``openai_request.py``
decodes into, so a field added there shows up here; the range and "not supported" checks that
``openai_request.py`` makes by hand are laid over them (``_constraints``), because a schema-driven
fuzzer treats the schema as the contract: what the schema allows must be accepted, what it forbids
must be refused. Response schemas are written by hand and kept loose (extra properties allowed), so
every response the server sends conforms. ``spec`` merges ``openapi_internal.py`` (/internal/*, /metrics).
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from mullama import __version__, openai_request, openapi_internal, openapi_ollama

Schema = dict[str, Any]

_INT32_MAX = 2**31 - 1
#: logit_bias keys: ASCII digits (leading zeros allowed) naming a token id from 0 to 2**31-1.
TOKEN_ID_KEY = (r"^0*([0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
                r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]"
                r"|214748364[0-7])$")
_DECIMAL = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"
#: A duration string as ``units.parse_duration`` reads it: seconds ("300", "1e3"), or number+unit
#: parts ("5m", "1h30m", "250ms"); a leading "-" means forever.
DURATION = rf"^\s*([+-]?{_DECIMAL}([eE][+-]?[0-9]{{1,2}})?|-?({_DECIMAL}([mM][sS]|[sSmMhHdD]))+)\s*$"


class _Replace(dict):
    """An overlay that replaces the generated property schema (the Struct says ``Any`` or too little)."""


# Values Python reads as false: openai_request.py refuses only truthy values of unsupported fields.
_FALSY: Schema = {"anyOf": [{"type": "null"}, {"const": False}, {"const": 0}, {"const": ""},
                            {"type": "array", "maxItems": 0}, {"type": "object", "maxProperties": 0}]}
_UNSUPPORTED = _Replace(_FALSY, description="Not supported by this server; only empty or false values.")
_KEEP_ALIVE: Schema = {"pattern": DURATION, "maxLength": 64,
                       "description": "How long the model stays loaded after this request: seconds, or a "
                                      "duration such as '5m' or '1h30m'; negative means forever."}
_TOKEN_ID: Schema = {"type": "integer", "minimum": 0, "maximum": _INT32_MAX}

# openai_request.py's private request Structs -> public component names.
_NAMES = {"_ChatBody": "ChatCompletionRequest", "_CompletionBody": "CompletionRequest",
          "_EmbeddingBody": "EmbeddingRequest", "_Message": "ChatMessage", "_Part": "ContentPart",
          "_ResponseFormat": "ResponseFormat", "_JsonSchema": "JsonSchemaFormat",
          "_StreamOptions": "StreamOptions"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _shared_constraints(limits: openai_request.Limits) -> dict[str, Schema]:
    """``openai_request._job``'s checks, shared by chat and completion bodies. Keywords of one JSON
    type do not constrain the others, so ``minimum`` merged into ``number | null`` still allows null."""
    max_tokens = {"minimum": 1, "maximum": limits.max_tokens}
    stop_len = {"minLength": 1, "maxLength": limits.max_stop_len}
    return {
        "max_tokens": max_tokens, "max_completion_tokens": max_tokens,
        "temperature": {"minimum": 0, "maximum": 2}, "top_p": {"minimum": 0, "maximum": 1},
        "top_k": {"minimum": 0, "maximum": _INT32_MAX}, "min_p": {"minimum": 0, "maximum": 1},
        "repeat_penalty": {"exclusiveMinimum": 0},
        "presence_penalty": {"minimum": -2, "maximum": 2}, "frequency_penalty": {"minimum": -2, "maximum": 2},
        "seed": {"minimum": -1, "maximum": 2**32 - 1, "description": "-1: random"},
        "stop": {**stop_len, "maxItems": limits.max_stop, "items": {"type": "string", **stop_len}},
        "logit_bias": {"propertyNames": {"pattern": TOKEN_ID_KEY},
                       "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
        "n": {"minimum": 1, "maximum": 1, "description": "Only 1 is supported."},
        "priority": {"minimum": -1000, "maximum": 1000, "description": "Scheduling priority (mullama)."},
        "deadline_ms": {"exclusiveMinimum": 0, "description": "Give up after this many ms (mullama)."},
        "keep_alive": _KEEP_ALIVE,
        "grammar": {"description": "GBNF grammar (llama.cpp); not together with a JSON response_format."},
    }


def _constraints(limits: openai_request.Limits) -> dict[str, dict[str, Schema]]:
    """Per component, per property: keywords merged into msgspec's schema, or a ``_Replace``."""
    shared = _shared_constraints(limits)
    tool_choice = {"enum": [None, "none", "auto"]}
    one_prompt = {"type": "array", "minItems": 1, "maxItems": 1}
    return {
        "ChatCompletionRequest": {
            **shared, "messages": {"type": "array", "minItems": 1, "maxItems": limits.max_messages},
            "logprobs": {"not": {"const": True}}, "top_logprobs": {"minimum": 0, "maximum": 0},
            "tools": _UNSUPPORTED, "functions": _UNSUPPORTED, "audio": {"type": "null"},
            "tool_choice": tool_choice, "function_call": tool_choice,
            "modalities": {"items": {"const": "text"}},
        },
        "CompletionRequest": {
            **shared,
            "prompt": _Replace(description="A string, or token ids; one prompt per request.", anyOf=[
                {"type": "string"}, {**one_prompt, "items": {"type": "string"}},
                {"type": "array", "minItems": 1, "items": _TOKEN_ID},
                {**one_prompt, "items": {"type": "array", "minItems": 1, "items": _TOKEN_ID}}]),
            "echo": {"not": {"const": True}}, "best_of": {"minimum": 1, "maximum": 1},
            "suffix": {"maxLength": 0}, "logprobs": {"minimum": 0, "maximum": 0},
        },
        "EmbeddingRequest": {
            "input": _Replace(description="Text to embed: a string or an array of strings (not token ids).",
                              anyOf=[{"type": "string", "minLength": 1},
                                     {"type": "array", "minItems": 1, "maxItems": limits.max_inputs,
                                      "items": {"type": "string", "minLength": 1}}]),
            "encoding_format": {"enum": [None, "", "float", "base64"], "description": "null or '': float"},
            "dimensions": {"type": "null", "description": "Not supported: vectors keep the model's size."},
        },
        "ChatMessage": {"role": {"enum": ["system", "developer", "user", "assistant"]},
                        "content": {"minItems": 1}, "tool_calls": _UNSUPPORTED,
                        "function_call": _UNSUPPORTED},
        "ContentPart": {"type": {"const": "text"}, "text": {"type": "string"}},
        "ResponseFormat": {"type": {"enum": ["text", "json_object", "json_schema"]}},
    }


# Whole-object rules the per-property overlay cannot say.
_REQUIRED = {"ChatCompletionRequest": ["messages"], "CompletionRequest": ["prompt"],
             "EmbeddingRequest": ["input"], "ContentPart": ["type", "text"]}
_STREAM_OPTIONS_NEED_STREAM: Schema = {
    "if": {"required": ["stream_options"], "properties": {"stream_options": {"type": "object"}}},
    "then": {"required": ["stream"], "properties": {"stream": {"const": True}}}}
_GRAMMAR_OR_JSON: Schema = {"not": {
    "required": ["grammar", "response_format"],
    "properties": {"grammar": {"type": "string"},
                   "response_format": {"type": "object", "required": ["type"],
                                       "properties": {"type": {"enum": ["json_object", "json_schema"]}}}}}}
# Both token caps may be given only when equal; JSON Schema cannot compare two fields, so: give one.
_ONE_TOKEN_CAP: Schema = {"not": {
    "required": ["max_tokens", "max_completion_tokens"],
    "properties": {"max_tokens": {"type": "integer"}, "max_completion_tokens": {"type": "integer"}}}}
_NULL_ONLY_FOR_ASSISTANT: Schema = {
    "if": {"properties": {"role": {"const": "assistant"}}},
    "else": {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}}}
_JSON_SCHEMA_NEEDS_SCHEMA: Schema = {
    "if": {"properties": {"type": {"const": "json_schema"}}},
    "then": {"required": ["json_schema"], "properties": {"json_schema": {
        "type": "object", "required": ["schema"],
        "properties": {"schema": {"type": ["object", "boolean"]}}}}}}
_OBJECT_RULES: dict[str, list[Schema]] = {
    "ChatCompletionRequest": [_STREAM_OPTIONS_NEED_STREAM, _GRAMMAR_OR_JSON, _ONE_TOKEN_CAP],
    "CompletionRequest": [_STREAM_OPTIONS_NEED_STREAM, _GRAMMAR_OR_JSON, _ONE_TOKEN_CAP],
    "ChatMessage": [_NULL_ONLY_FOR_ASSISTANT],
    "ResponseFormat": [_JSON_SCHEMA_NEEDS_SCHEMA],
}


def _public(name: str) -> str:
    return _NAMES.get(name, name.lstrip("_"))


def _rename_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                prefix, _, name = value.rpartition("/")
                value = f"{prefix}/{_public(name)}"
            out[key] = _rename_refs(value)
        return out
    if isinstance(node, list):
        return [_rename_refs(v) for v in node]
    return node


def request_schemas(limits: openai_request.Limits | None = None) -> dict[str, Schema]:
    """The OpenAI request bodies as components: ``openai_request.py``'s Structs plus its hand-made checks."""
    limits = limits or openai_request.Limits()
    _, generated = msgspec.json.schema_components(
        # the real shapes, private to the OpenAI request parsing
        [openai_request._ChatBody, openai_request._CompletionBody, openai_request._EmbeddingBody],
        ref_template="#/components/schemas/{name}")
    components = {_public(name): _rename_refs(schema) for name, schema in generated.items()}
    for name, overlay in _constraints(limits).items():
        props = components[name]["properties"]
        for field, extra in overlay.items():
            if isinstance(extra, _Replace):
                props[field] = copy.deepcopy(dict(extra))
            else:
                props[field] = {**props[field], **copy.deepcopy(extra)}
    for name, required in _REQUIRED.items():
        components[name]["required"] = sorted(set(components[name].get("required", [])) | set(required))
    for name, rules in _OBJECT_RULES.items():
        components[name]["allOf"] = copy.deepcopy(rules)
    for schema in components.values():
        schema.pop("title", None)
    return components


# ---------------------------------------------------------------------- responses


def _obj(props: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return {"type": "object", "properties": props, "required": list(required)}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_OPT_STR, _OPT_INT, _NULL = {"type": ["string", "null"]}, {"type": ["integer", "null"]}, {"type": "null"}
_USAGE = _obj({"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT,
               "prompt_tokens_details": _obj({"cached_tokens": _INT})}, ("prompt_tokens", "total_tokens"))
_OPT_USAGE = {"anyOf": [_NULL, _USAGE]}
_HEAD = {"id": _STR, "created": _INT, "model": _STR, "system_fingerprint": _STR}
_HEAD_REQUIRED = ("id", "object", "created", "model", "choices")
_FINISH = {"type": ["string", "null"], "description": "'stop' or 'length'; null until the last chunk."}


def _generation_schemas() -> dict[str, Schema]:
    message = _obj({"role": {"const": "assistant"}, "content": _OPT_STR, "refusal": _OPT_STR}, ("role",))
    delta = _obj({"role": _STR, "content": _OPT_STR, "refusal": _OPT_STR})
    choice = {"index": _INT, "finish_reason": _FINISH, "logprobs": _NULL}
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
                            "choices": _array(_obj({**choice, "text": _STR}, ("text", "index")))},
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
        "n_head_kv": _OPT_INT, "has_chat_template": _BOOL}
    model_name = {**_STR, "description": "Model name; empty: the server's default."}
    return {
        "Model": _obj({"id": _STR, "object": {"const": "model"}, "created": _INT, "owned_by": _STR,
                       "family": _STR, "variant": _STR, "size": _INT, "state": _STR, "quantization": _STR,
                       "context_length": _OPT_INT, "architecture": _STR},
                      ("id", "object", "created", "owned_by")),
        "ModelList": _obj({"object": {"const": "list"}, "data": _array(_ref("Model"))}, ("object", "data")),
        "Health": _obj({"status": {"const": "ok"}}, ("status",)),
        "Ready": _obj({"status": {"enum": ["ready", "draining"]}, "loaded": _array(_STR), "uptime_s": _NUM},
                      ("status", "loaded")),
        "RunningModel": ps_row,
        "RunningModels": _obj({"models": _array(_ref("RunningModel"))}, ("models",)),
        "ModelRequest": _obj({"model": model_name,
                              "keep_alive": {"anyOf": [{"type": "string", **_KEEP_ALIVE}, _NUM, _NULL]}}),
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
        "/openapi.json": {"get": _op("openapi", "This document", "management", {"type": "object"},
                                     _READ_ERRORS)},
    }


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
                 dict(openapi_internal.TAG), dict(openapi_ollama.TAG)],
        "paths": {**paths(), **openapi_internal.paths(), **openapi_ollama.paths()},
        "components": {
            "schemas": {**response_schemas(), **request_schemas(limits), **openapi_internal.schemas(),
                        **openapi_ollama.schemas(limits)},
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
