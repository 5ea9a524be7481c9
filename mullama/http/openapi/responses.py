"""OpenAPI paths and schemas of the OpenAI Responses API (``http/responses/``); ``spec.spec`` merges
them into /openapi.json under the "openai" tag.

The request schema says what ``responses/request.py`` accepts (the server's ``Limits``, the same tool
and sampling bounds as the chat endpoint); response schemas list the fields the handlers write,
extra properties allowed. Streamed answers are typed server-sent events (``event: <type>`` and
``data: <ResponseStreamEvent JSON>``), with no ``[DONE]``. Pure: builds dicts.
"""

from __future__ import annotations

from typing import Any

from mullama.http.openai import request as openai_request
from mullama.http.openai.tools import MAX_TOOLS
from mullama.http.openapi.schema import BOOL, INT, NULL, NUM, STR, Schema, array, obj, ref
from mullama.http.responses.request import (
    EFFORTS,
    IGNORED_INCLUDES,
    LOGPROBS,
    MAX_METADATA,
    MAX_METADATA_VALUE,
)

_GENERATE = (400, 401, 404, 408, 409, 413, 422, 429, 500, 502, 503, 507)
_STORED = (401, 404, 500)


def _opt(schema: Schema) -> Schema:
    return {"anyOf": [NULL, schema]}


def _request(limits: openai_request.Limits) -> Schema:
    part = obj({"type": {**STR, "description": "'input_text', 'output_text' or 'refusal'; others are refused"},
                "text": STR}, ("type",))
    content = {"anyOf": [STR, array(part)]}
    item = obj({"type": {**STR, "description": "'message' (may be left out when 'role' is given), "
                                               "'function_call', 'function_call_output' or 'reasoning' "
                                               "(skipped); others are refused"},
                "role": {"enum": ["user", "assistant", "system", "developer"]}, "content": _opt(content),
                "call_id": STR, "name": STR, "arguments": {**STR, "description": "JSON text"},
                "output": _opt(content)})
    tool = obj({"type": {**STR, "description": "'function'; hosted tools are refused"}, "name": STR,
                "description": _opt(STR), "parameters": _opt({"type": "object"}), "strict": _opt(BOOL)}, ("type",))
    text_format = obj({"type": {"enum": ["text", "json_object", "json_schema"]}, "name": _opt(STR),
                       "schema": _opt({"type": "object"}), "description": _opt(STR), "strict": _opt(BOOL)},
                      ("type",))
    choice = {"anyOf": [NULL, {"enum": ["auto", "none", "required"]},
                        obj({"type": {"const": "function"}, "name": STR}, ("type", "name")),
                        obj({"type": {"const": "allowed_tools"}, "mode": {"enum": ["auto", "required"]},
                             "tools": array(obj({"type": {"const": "function"}, "name": STR}))}, ("type", "tools"))]}
    number = {"type": "number"}
    return obj({
        "model": {**_opt(STR), "description": "Model name; empty or missing: the server's default."},
        "input": {"anyOf": [STR, {**array(item), "minItems": 1, "maxItems": limits.max_messages}]},
        "instructions": {**_opt(STR), "description": "The system message (not carried over by "
                                                     "previous_response_id)."},
        "previous_response_id": {**_opt(STR), "description": "A stored response whose conversation this one "
                                                             "continues; unknown: 400 previous_response_not_found"},
        "tools": _opt({**array(tool), "maxItems": MAX_TOOLS}), "tool_choice": choice,
        "parallel_tool_calls": _opt(BOOL),
        "max_output_tokens": _opt({"type": "integer", "minimum": 1, "maximum": limits.max_tokens}),
        "temperature": _opt({**number, "minimum": 0, "maximum": 2}),
        "top_p": _opt({**number, "minimum": 0, "maximum": 1}),
        "text": _opt(obj({"format": _opt(text_format), "verbosity": _opt(STR)})),
        "reasoning": _opt(obj({"effort": _opt({"enum": list(EFFORTS)}), "summary": _opt(STR)})),
        "metadata": _opt({"type": "object", "maxProperties": MAX_METADATA,
                          "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE}}),
        "user": _opt(STR), "safety_identifier": {**_opt(STR), "description": "The fairness key (before 'user')"},
        "store": {**_opt(BOOL), "description": "false: not kept for previous_response_id or GET"},
        "stream": _opt(BOOL),
        "include": _opt(array({"enum": sorted({*IGNORED_INCLUDES, LOGPROBS})})),
        "truncation": {**_opt({"enum": ["auto", "disabled"]}), "description": "'auto' is refused"},
        "top_logprobs": {**_opt({"type": "integer", "minimum": 0, "maximum": 20}),
                         "description": "the most likely tokens at each position of the message's logprobs"},
        "background": {**_opt(BOOL), "description": "only false"},
        "conversation": {"description": "not supported: only null"}, "prompt": {"description": "not supported: "
                                                                                                "only null"},
        "top_k": _opt({"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
        "min_p": _opt({**number, "minimum": 0, "maximum": 1}),
        "seed": _opt({"type": "integer", "minimum": -1, "maximum": 2**32 - 1}),
        "priority": _opt({"type": "integer", "minimum": -1000, "maximum": 1000}),
        "deadline_ms": _opt({**number, "exclusiveMinimum": 0}),
        "keep_alive": {"anyOf": [NULL, NUM, STR]},
    })


def _responses() -> dict[str, Schema]:
    top = obj({"token": STR, "logprob": NUM, "bytes": array(INT)}, ("token", "logprob"))
    logprob = obj({"token": STR, "logprob": NUM, "bytes": array(INT), "top_logprobs": array(top)},
                  ("token", "logprob"))
    text = obj({"type": {"const": "output_text"}, "text": STR, "annotations": array({}), "logprobs": array(logprob)},
               ("type", "text", "annotations"))
    status = {"enum": ["in_progress", "completed", "incomplete"]}
    message = obj({"id": STR, "type": {"const": "message"}, "role": {"const": "assistant"}, "status": status,
                   "content": array(text)}, "*")
    call = obj({"id": STR, "type": {"const": "function_call"}, "status": status, "call_id": STR, "name": STR,
                "arguments": {**STR, "description": "JSON text"}}, "*")
    reasoning = obj({"id": STR, "type": {"const": "reasoning"}, "status": status, "summary": array({}),
                     "content": array(obj({"type": {"const": "reasoning_text"}, "text": STR}, "*"))},
                    ("id", "type", "summary"))
    usage = obj({"input_tokens": INT, "output_tokens": INT, "total_tokens": INT,
                 "input_tokens_details": obj({"cached_tokens": INT, "cache_write_tokens": INT}),
                 "output_tokens_details": obj({"reasoning_tokens": INT})}, "*")
    return {
        "Response": obj({
            "id": STR, "object": {"const": "response"}, "created_at": INT,
            "status": {"enum": ["in_progress", "completed", "incomplete", "failed"]},
            "error": _opt(obj({"code": STR, "message": STR}, "*")),
            "incomplete_details": _opt(obj({"reason": {"const": "max_output_tokens"}}, "*")), "model": STR,
            "output": array({"anyOf": [message, call, reasoning]}), "usage": _opt(usage),
            "instructions": _opt(STR), "previous_response_id": _opt(STR), "tools": array({"type": "object"}),
            "tool_choice": {}, "parallel_tool_calls": BOOL, "temperature": _opt(NUM), "top_p": _opt(NUM),
            "max_output_tokens": _opt(INT), "text": {"type": "object"}, "reasoning": {"type": "object"},
            "metadata": {"type": "object"}, "store": BOOL, "truncation": STR, "user": _opt(STR),
            "safety_identifier": _opt(STR), "background": BOOL,
        }, ("id", "object", "created_at", "status", "model", "output")),
        "ResponseStreamEvent": obj({"type": STR, "sequence_number": INT, "response": ref("Response"),
                                    "output_index": INT, "content_index": INT, "item_id": STR, "delta": STR,
                                    "item": {"type": "object"}}, ("type", "sequence_number")),
        "ResponseDeleted": obj({"id": STR, "object": {"const": "response.deleted"}, "deleted": {"const": True}},
                               "*"),
    }


def schemas(limits: openai_request.Limits | None = None) -> dict[str, Any]:
    return {"ResponsesRequest": _request(limits or openai_request.Limits()), **_responses()}


def _op(op_id: str, summary: str, ok: str, errors: tuple[int, ...], *, body: bool = False, stream: bool = False,
        params: list[Schema] | None = None) -> Schema:
    content: Schema = {"application/json": {"schema": ref(ok)}}
    if stream:
        content["text/event-stream"] = {"schema": {
            "type": "object", "required": ["event", "data"],
            "description": "With \"stream\": true: typed server-sent events, 'event: <type>' and 'data: "
                           "<ResponseStreamEvent JSON>', from response.created to response.completed, "
                           "response.incomplete or (after an 'error' event) response.failed.",
            "properties": {"event": STR, "data": {"type": "string", "contentMediaType": "application/json",
                                                  "contentSchema": ref("ResponseStreamEvent")}}}}
    op: Schema = {"operationId": op_id, "summary": summary, "tags": ["openai"],
                  "responses": {"200": {"description": "OK", "content": content},
                                **{str(c): {"$ref": f"#/components/responses/E{c}"} for c in errors},
                                "default": {"$ref": "#/components/responses/Error"}}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref("ResponsesRequest")}}}
    return op


def paths() -> dict[str, Any]:
    rid = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
           "description": "A response's id ('resp_...')."}
    return {
        "/v1/responses": {"post": _op("createResponse", "Create a model response (OpenAI Responses API)",
                                      "Response", _GENERATE, body=True, stream=True)},
        "/v1/responses/{id}": {
            "get": _op("getResponse", "A stored response (the most recent ones, kept in memory)", "Response",
                       _STORED, params=[rid]),
            "delete": _op("deleteResponse", "Forget a stored response", "ResponseDeleted", _STORED, params=[rid]),
        },
    }
