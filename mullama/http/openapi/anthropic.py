"""OpenAPI paths and schemas of the Anthropic Messages routes (``http/anthropic/``); ``spec.spec`` merges
them into /openapi.json.

Request schemas say what ``anthropic/request.py`` accepts (its block types, checks and the server's
``Limits``); response schemas list the fields ``anthropic/format.py`` and ``stream.py`` write, extra
properties allowed. Errors on these routes are Anthropic's ``{"type": "error", "error": {"type",
"message"}}`` (``AnthropicError``). Pure: builds dicts.
"""

from __future__ import annotations

from typing import Any

from mullama.http.anthropic import request as anthropic_request
from mullama.http.openai.request import Limits
from mullama.http.openai.tools import MAX_TOOLS
from mullama.http.openapi.schema import BOOL, INT, NULL, STR, Schema, array, obj, ref

TAG = {"name": "anthropic", "description": "Anthropic-compatible Messages API (docs/anthropic.md)"}


def _opt(schema: Schema) -> Schema:
    return {"anyOf": [NULL, schema]}


def _tagged(kind: str, props: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return obj({"type": {"const": kind}, **props}, ("type", *required))


def _request_schemas(limits: Limits) -> dict[str, Schema]:
    text = _tagged("text", {"text": STR}, ("text",))
    blocks = {"anyOf": [
        text,
        _tagged("tool_use", {"id": {"type": "string", "minLength": 1},
                             "name": {"type": "string", "minLength": 1}, "input": {"type": "object"}},
                ("id", "name", "input")),
        _tagged("tool_result", {"tool_use_id": {**STR, "description": "A tool_use id of the assistant message "
                                                                     "right before."},
                                "content": _opt({"anyOf": [STR, array(text)]}), "is_error": BOOL},
                ("tool_use_id",)),
        {**_tagged("thinking", {"thinking": STR, "signature": STR}),
         "description": "Earlier reasoning: accepted and dropped."},
        {**_tagged("redacted_thinking", {"data": STR}), "description": "Accepted and dropped."},
    ]}
    message = obj({"role": {"enum": ["user", "assistant"]},
                   "content": {"anyOf": [STR, {"type": "array", "minItems": 1, "items": blocks}]}},
                  ("role", "content"))
    tool = obj({"name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": STR,
                "input_schema": {"type": "object", "description": "JSON schema of the tool's input"},
                "type": _opt({"const": "custom"})}, ("name", "input_schema"))
    parallel = {"disable_parallel_tool_use": BOOL}
    choice = {"anyOf": [NULL, _tagged("auto", parallel), _tagged("any", parallel),
                        _tagged("tool", {"name": STR, **parallel}, ("name",)), _tagged("none", {})]}
    thinking = {"anyOf": [
        NULL, _tagged("enabled", {"budget_tokens": {
            "type": "integer", "minimum": anthropic_request.MIN_THINKING_BUDGET,
            "description": "At least 1024 and less than max_tokens, as Anthropic requires; the reasoning is "
                           "bounded by max_tokens only."}},
                      ("budget_tokens",)),
        _tagged("adaptive", {}), _tagged("disabled", {})],
        "description": "enabled: the template's thinking on, reasoning split into thinking blocks; adaptive: the "
                       "template's default, reasoning split; disabled: thinking off."}
    prompt = {
        "model": {**STR, "description": "Model name as on the OpenAI routes (an alias may name a Claude model)."},
        "messages": {"type": "array", "minItems": 1, "maxItems": limits.max_messages, "items": message,
                     "description": "The last turn must be the user's (no prefill)."},
        "system": _opt({"anyOf": [STR, array(text)]}),
        "tools": _opt({"type": "array", "maxItems": MAX_TOOLS, "items": tool}),
        "tool_choice": choice, "thinking": thinking}
    stop = {"type": "string", "minLength": 1, "maxLength": limits.max_stop_len}
    return {
        "AnthropicCountTokensRequest": obj(prompt, ("model", "messages")),
        "AnthropicMessagesRequest": obj({
            **prompt,
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": limits.max_tokens},
            "stop_sequences": _opt({"type": "array", "maxItems": limits.max_stop, "items": stop}),
            "temperature": _opt({"type": "number", "minimum": 0, "maximum": 1, "default": 1}),
            "top_p": _opt({"type": "number", "minimum": 0, "maximum": 1}),
            "top_k": _opt({"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
            "metadata": _opt(obj({"user_id": {**_opt(STR), "description": "The scheduler's fairness key"}})),
            "stream": _opt(BOOL)}, ("model", "messages", "max_tokens")),
    }


def _response_schemas() -> dict[str, Schema]:
    usage = obj({"input_tokens": INT, "output_tokens": INT, "cache_read_input_tokens": INT,
                 "cache_creation_input_tokens": INT}, ("input_tokens", "output_tokens"))
    block = {"anyOf": [
        _tagged("text", {"text": STR}, ("text",)),
        _tagged("thinking", {"thinking": STR, "signature": {**STR, "description": "Always empty: not signed."}},
                ("thinking", "signature")),
        _tagged("tool_use", {"id": {**STR, "pattern": "^toolu_"}, "name": STR, "input": {"type": "object"}},
                ("id", "name", "input"))]}
    reason = {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use", "model_context_window_exceeded"]}
    message = obj({"id": {**STR, "pattern": "^msg_"}, "type": {"const": "message"}, "role": {"const": "assistant"},
                   "model": STR, "content": array(block), "stop_reason": {"anyOf": [NULL, reason]},
                   "stop_sequence": _opt(STR), "usage": usage,
                   "profile": {"type": "object", "description": "With 'X-Profile: true' (mullama)."}},
                  ("id", "type", "role", "model", "content", "stop_reason", "usage"))
    delta = {"anyOf": [_tagged("text_delta", {"text": STR}, ("text",)),
                       _tagged("thinking_delta", {"thinking": STR}, ("thinking",)),
                       _tagged("input_json_delta", {"partial_json": STR}, ("partial_json",))]}
    event = {"anyOf": [
        _tagged("message_start", {"message": ref("AnthropicMessage")}, ("message",)),
        _tagged("ping", {}),
        _tagged("content_block_start", {"index": INT, "content_block": block}, ("index", "content_block")),
        _tagged("content_block_delta", {"index": INT, "delta": delta}, ("index", "delta")),
        _tagged("content_block_stop", {"index": INT}, ("index",)),
        _tagged("message_delta", {"delta": obj({"stop_reason": reason, "stop_sequence": _opt(STR)}),
                                  "usage": usage}, ("delta", "usage")),
        _tagged("message_stop", {}),
        ref("AnthropicError")]}
    error = obj({"type": STR, "message": STR}, ("type", "message"))
    return {
        "AnthropicError": obj({"type": {"const": "error"}, "error": error}, ("type", "error")),
        "AnthropicMessage": message,
        "AnthropicStreamEvent": event,
        "AnthropicTokenCount": obj({"input_tokens": {**INT, "description": "The whole prompt, as rendered by "
                                                                           "the model's template"}},
                                   ("input_tokens",)),
    }


def schemas(limits: Limits | None = None) -> dict[str, Any]:
    return {**_response_schemas(), **_request_schemas(limits or Limits())}


# ---------------------------------------------------------------------- paths

_ERRORS = {400: "invalid_request_error", 401: "authentication_error (only when the server has keys)",
           403: "permission_error: a Host or Origin this server does not serve", 404: "not_found_error: no such "
           "model", 408: "timeout_error: deadline exceeded", 413: "request_too_large",
           415: "invalid_request_error: the body is not declared as JSON", 422: "invalid_request_error: the model "
           "file cannot be served", 429: "rate_limit_error: queue full", 500: "api_error",
           502: "api_error: the model's runner crashed or failed", 503: "overloaded_error: shutting down, or the "
           "model failed to load", 507: "api_error: the model does not fit in memory"}
_CODES = (400, 401, 403, 404, 408, 413, 415, 422, 429, 500, 502, 503, 507)


def error_response(code: int) -> Schema:
    return {"description": _ERRORS[code], "content": {"application/json": {"schema": ref("AnthropicError")}}}


def _op(op_id: str, summary: str, ok: Schema, body: str, *, stream: bool, description: str) -> Schema:
    content: Schema = {"application/json": {"schema": ok}}
    if stream:
        content["text/event-stream"] = {
            "schema": {"type": "object", "required": ["event", "data"],
                       "description": "With \"stream\": true: 'event: <type>' and 'data: <AnthropicStreamEvent "
                                      "JSON>' per event, in Anthropic's order; an error mid-stream is an 'error' "
                                      "event (AnthropicError).",
                       "properties": {"event": STR, "data": {"type": "string", "contentMediaType": "application/json",
                                                             "contentSchema": ref("AnthropicStreamEvent")}}},
            "x-sse-event": ref("AnthropicStreamEvent")}
    return {"operationId": op_id, "summary": summary, "tags": [TAG["name"]], "description": description,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref(body)}}},
            "responses": {"200": {"description": "OK", "content": content},
                          **{str(c): error_response(c) for c in _CODES},
                          "default": {"description": "Error",
                                      "content": {"application/json": {"schema": ref("AnthropicError")}}}}}


def paths() -> dict[str, Any]:
    headers = "The 'anthropic-version' and 'anthropic-beta' headers are accepted and ignored; 'x-api-key' works."
    return {
        "/v1/messages": {"post": _op(
            "anthropicCreateMessage", "Create a message (Anthropic)", ref("AnthropicMessage"),
            "AnthropicMessagesRequest", stream=True, description=headers)},
        "/v1/messages/count_tokens": {"post": _op(
            "anthropicCountTokens", "Count a prompt's tokens (Anthropic)", ref("AnthropicTokenCount"),
            "AnthropicCountTokensRequest", stream=False,
            description="The model's runner renders and prefills the prompt (tools included) and generates "
                        "nothing: the count is exact for that model. " + headers)},
    }
