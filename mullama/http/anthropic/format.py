"""Internal results in, Anthropic-shaped JSON out: the message object, its stop reason and usage, the
count_tokens answer and errors.

Pure: no I/O. Ids are Anthropic's shapes ("msg_...", "toolu_..."); a ``thinking`` block's ``signature`` is
``SIGNATURE`` (nothing is signed here; a client sends it back and it is dropped). Usage follows
Anthropic's split: ``input_tokens`` are the prompt tokens computed for this request,
``cache_read_input_tokens`` those reused from the runner's prefix cache (their sum is the prompt). The
streamed events are ``stream.py``'s.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from mullama import wire

SIGNATURE = ""  # thinking blocks are not signed by this server

#: HTTP status -> Anthropic's error type (https://docs.anthropic.com/en/api/errors); other 4xx are
#: invalid_request_error, other 5xx api_error
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                413: "request_too_large", 429: "rate_limit_error", 408: "timeout_error", 504: "timeout_error",
                503: "overloaded_error", 529: "overloaded_error"}

#: the runner's finish reason -> Anthropic's stop_reason (a stop string: "stop_sequence"; calls: "tool_use")
_STOP = {"stop": "end_turn", "length": "max_tokens", "context_full": "model_context_window_exceeded",
         "repeat_limit": "end_turn", "cancelled": "end_turn", "error": "end_turn"}


def _alnum(n: int) -> str:
    return secrets.token_urlsafe(n).replace("-", "0").replace("_", "1")[:n]


def message_id(rid: str) -> str:
    """The message's id from the request's id (the one the runner, the logs and the events know)."""
    return "msg_" + rid.rsplit("-", 1)[-1]


def tool_use_id() -> str:
    return "toolu_" + _alnum(24)


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error(message: str, status: int) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_body(message: str, status: int) -> bytes:
    return msgspec.json.encode(error(message, status))


def stop_reason(final: wire.CompletionFinal, stops: list[str], called: bool) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence): tool calls are "tool_use" unless cut short by max_tokens."""
    if final.finish_reason == "stop" and final.stop_string and final.stop_string in stops:
        return "stop_sequence", final.stop_string
    if called and final.finish_reason == "stop":
        return "tool_use", None
    return _STOP[final.finish_reason], None


def usage(stats: wire.CompletionStats) -> dict[str, int]:
    return {"input_tokens": stats.prompt_tokens - stats.cached_tokens, "output_tokens": stats.completion_tokens,
            "cache_read_input_tokens": stats.cached_tokens, "cache_creation_input_tokens": 0}


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's arguments as the object Anthropic's ``input`` is; text that is no JSON object (a call cut
    short) is kept whole under ``"_raw"``."""
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        value = None
    return value if isinstance(value, dict) else {"_raw": arguments}


def thinking_block(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": SIGNATURE}


def tool_use_block(call: wire.ToolFunction, id: str | None = None, *, streaming: bool = False) -> dict[str, Any]:
    """A ``tool_use`` block; ``streaming``: the content_block_start's, whose input arrives as deltas."""
    return {"type": "tool_use", "id": id or tool_use_id(), "name": call.name,
            "input": {} if streaming else tool_input(call.arguments)}


def content(final: wire.CompletionFinal, text: str) -> tuple[list[dict[str, Any]], bool]:
    """The answer's content blocks (thinking, text, tool_use, in that order) and whether it called tools."""
    parsed = final.message
    reasoning, calls = "", []
    if parsed is not None:  # the chat parser's reading: tools or reasoning were asked for
        text, reasoning, calls = parsed.content, parsed.reasoning_content, parsed.tool_calls
    blocks: list[dict[str, Any]] = []
    if reasoning:
        blocks.append(thinking_block(reasoning))
    if text:
        blocks.append({"type": "text", "text": text})
    blocks.extend(tool_use_block(c) for c in calls)
    return blocks, bool(calls)


def message(*, id: str, model: str, final: wire.CompletionFinal, text: str, stops: list[str],
            extra: dict[str, Any] | None = None) -> bytes:
    """A whole message object; ``extra`` (e.g. {"profile": ...}) joins the top level."""
    blocks, called = content(final, text)
    reason, sequence = stop_reason(final, stops, called)
    return msgspec.json.encode({"id": id, "type": "message", "role": "assistant", "model": model,
                                "content": blocks, "stop_reason": reason, "stop_sequence": sequence,
                                "usage": usage(final.stats), **(extra or {})})


def token_count(prompt_tokens: int) -> bytes:
    """/v1/messages/count_tokens: the whole prompt, cached or not."""
    return msgspec.json.encode({"input_tokens": prompt_tokens})
