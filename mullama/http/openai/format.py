"""Internal results in, OpenAI-shaped JSON and SSE bytes out; the OpenAI request parsers re-exported.

Pure: no I/O. Every ``*_chunk`` function and ``sse_error`` return one whole SSE event; the
``*_response`` functions and ``error_body`` return plain JSON. Parsing lives in
``openai_request.py`` (``parse_chat``, ``parse_completion``, ``parse_embeddings``, ``Limits``,
``Job``, ``EmbeddingJob``, ``keep_alive_seconds``) and is re-exported here, so callers use one
``openai`` namespace for both directions; the dependency points one way (the parsers never import
this module).
"""

from __future__ import annotations

import array
import base64
import secrets
import sys
from typing import Any, Literal

import msgspec

from mullama import wire
from mullama.http.openai.request import (
    MAX_KEEP_ALIVE_S,
    EmbeddingJob,
    Job,
    Limits,
    _ChatBody,
    _CompletionBody,
    _EmbeddingBody,
    keep_alive_seconds,
    parse_chat,
    parse_completion,
    parse_embeddings,
)
from mullama.serving.generation import Answer

__all__ = [
    # formatting (this module)
    "DONE", "SYSTEM_FINGERPRINT", "chat_chunk", "chat_response", "completion_chunk", "completion_response",
    "embeddings_response", "error_body", "finish_reason", "model_object", "models_list", "sse_error",
    "usage", "usage_chunk",
    # parsing (openai_request.py)
    "MAX_KEEP_ALIVE_S", "EmbeddingJob", "Job", "Limits", "_ChatBody", "_CompletionBody", "_EmbeddingBody",
    "keep_alive_seconds", "parse_chat", "parse_completion", "parse_embeddings",
]

DONE: bytes = b"data: [DONE]\n\n"
SYSTEM_FINGERPRINT = "mullama"


# OpenAI has only "stop" and "length" for a text-only answer. A full context is a length limit;
# cancelled / repeat_limit / error ended the text early without a limit the client set, so they read
# as "stop" (the runner's own reason stays visible in the profile extension).
_FINISH = {"stop": "stop", "length": "length", "context_full": "length", "repeat_limit": "stop",
           "cancelled": "stop", "error": "stop"}


def finish_reason(reason: str) -> str:
    """The runner's finish reason as OpenAI's; OpenAI's own values map to themselves."""
    try:
        return _FINISH[reason]
    except KeyError:
        raise ValueError(f"unknown finish reason {reason!r}") from None


def finish_fields(reason: str | None, tool_calls: bool = False) -> dict[str, Any]:
    """A choice's ``finish_reason`` (null while it streams): "tool_calls" when the answer is tool calls. A
    context that filled up reads as "length", as in llama-server, and adds ``"truncated": true`` (llama-server's
    field) so that a client can tell it from its own ``max_tokens``."""
    if reason is None:
        return {"finish_reason": None}
    if tool_calls and reason == "stop":  # a call cut short by max_tokens stays "length", as OpenAI's
        return {"finish_reason": "tool_calls"}
    return {"finish_reason": finish_reason(reason), **({"truncated": True} if reason == "context_full" else {})}


def new_call_id() -> str:
    """A tool call's id, as OpenAI writes them ("call_" and 24 letters and digits)."""
    return "call_" + secrets.token_urlsafe(18).replace("-", "0").replace("_", "1")


def tool_calls(calls: list[wire.ToolFunction], ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": i, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c, i in zip(calls, ids, strict=True)]


def tool_call_delta(delta: wire.ChatDelta, ids: dict[int, str]) -> dict[str, Any]:
    """One ``delta.tool_calls`` entry: the first of an index carries its id, type and name (OpenAI's shape)."""
    function: dict[str, Any] = {"arguments": delta.arguments}
    entry: dict[str, Any] = {"index": delta.tool_index}
    if delta.tool_index not in ids:
        ids[delta.tool_index] = new_call_id()
        entry.update(id=ids[delta.tool_index], type="function")
        function = {"name": delta.name, "arguments": delta.arguments}
    entry["function"] = function
    return entry


def usage(stats: wire.CompletionStats) -> dict[str, Any]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": stats.cached_tokens}}


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def _head(id: str, object_: str, created: int, model: str) -> dict[str, Any]:
    return {"id": id, "object": object_, "created": created, "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT}


def token_logprobs(lps: list[wire.TokenLogprob]) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content``: each token's text, log-probability, bytes and the most likely others."""
    return [{"token": t.text, "logprob": t.logprob, "bytes": t.bytes,
             "top_logprobs": [{"token": x.text, "logprob": x.logprob, "bytes": x.bytes} for x in t.top]}
            for t in lps]


def chat_logprobs(lps: list[wire.TokenLogprob] | None) -> dict[str, Any] | None:
    return None if lps is None else {"content": token_logprobs(lps), "refusal": None}


def completion_logprobs(lps: list[wire.TokenLogprob] | None, offset: int = 0) -> dict[str, Any] | None:
    """The legacy completions' shape: parallel lists; ``text_offset`` counts characters from ``offset``."""
    if lps is None:
        return None
    offsets = []
    for t in lps:
        offsets.append(offset)
        offset += len(t.text)
    return {"tokens": [t.text for t in lps], "token_logprobs": [t.logprob for t in lps],
            "top_logprobs": [{x.text: x.logprob for x in t.top} for t in lps], "text_offset": offsets}


def _single(final: wire.CompletionFinal, text: str) -> list[Answer]:
    """The one choice of an n = 1 answer, as ``Generation.gather_choices`` gives its answers."""
    return [Answer(0, text=text, logprobs=final.logprobs, finish_reason=final.finish_reason, message=final.message)]


def _message(text: str, parsed: wire.ChatResult | None, call_ids: list[str] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if parsed is not None:  # a parsed chat: the parser's reading of the answer
        message["content"] = parsed.content or (None if parsed.tool_calls else "")
        if parsed.reasoning_content:
            message["reasoning_content"] = parsed.reasoning_content
        if parsed.tool_calls:
            message["tool_calls"] = tool_calls(parsed.tool_calls, call_ids or
                                               [new_call_id() for _ in parsed.tool_calls])
    return message


def chat_response(*, id: str, created: int, model: str, final: wire.CompletionFinal, text: str = "",
                  extra: dict[str, Any] | None = None, call_ids: list[str] | None = None,
                  answers: list[Answer] | None = None) -> bytes:
    """A whole chat.completion; ``answers`` (``Generation.gather_choices``) give every choice, else the one
    is ``final`` and ``text``; ``extra`` (e.g. {"profile": ...}) joins the top level."""
    choices = []
    for a in answers or _single(final, text):
        called = bool(a.message and a.message.tool_calls)
        choices.append({"index": a.index, "message": _message(a.text, a.message, call_ids),
                        "logprobs": chat_logprobs(a.logprobs), **finish_fields(a.finish_reason, called)})
    return msgspec.json.encode({**_head(id, "chat.completion", created, model), "choices": choices,
                                "usage": usage(final.stats), **(extra or {})})


def chat_chunk(*, id: str, created: int, model: str, content: str | None = None, role: bool = False,
               finish: str | None = None, include_usage: bool = False, reasoning: str | None = None,
               tool_call: dict[str, Any] | None = None, called: bool = False, index: int = 0,
               logprobs: list[wire.TokenLogprob] | None = None) -> bytes:
    """One chat.completion.chunk event of choice ``index``. ``role`` marks the first (delta role+content "");
    ``finish`` the last (empty delta; ``called``: the answer was tool calls). ``reasoning`` and ``tool_call``
    (one entry of OpenAI's ``delta.tool_calls``) are the other deltas; ``logprobs`` those of the tokens this
    chunk brought. With ``include_usage`` the chunk carries "usage": null, as OpenAI's do."""
    delta: dict[str, Any] = {}
    if role:
        delta = {"role": "assistant", "content": content or "", "refusal": None}
    elif content is not None:
        delta = {"content": content}
    elif reasoning is not None:
        delta = {"reasoning_content": reasoning}
    elif tool_call is not None:
        delta = {"tool_calls": [tool_call]}
    choice = {"index": index, "delta": delta, "logprobs": chat_logprobs(logprobs), **finish_fields(finish, called)}
    obj = {**_head(id, "chat.completion.chunk", created, model), "choices": [choice]}
    if include_usage:
        obj["usage"] = None
    return _sse(obj)


def completion_response(*, id: str, created: int, model: str, final: wire.CompletionFinal, text: str = "",
                        extra: dict[str, Any] | None = None, answers: list[Answer] | None = None,
                        echo: str = "") -> bytes:
    """A whole text_completion (every choice of ``answers``, else ``final`` and ``text``); ``echo``: the
    prompt each text starts with; ``extra`` joins the top level."""
    choices = []
    for a in answers or _single(final, text):
        choices.append({"text": echo + a.text, "index": a.index,
                        "logprobs": completion_logprobs(a.logprobs, len(echo)), **finish_fields(a.finish_reason)})
    return msgspec.json.encode({**_head(id, "text_completion", created, model), "choices": choices,
                                "usage": usage(final.stats), **(extra or {})})


def completion_chunk(*, id: str, created: int, model: str, content: str = "", finish: str | None = None,
                     include_usage: bool = False, index: int = 0, logprobs: dict[str, Any] | None = None) -> bytes:
    """One streamed text_completion event: the whole response's shape, finish_reason null until the end.
    The text is ``content``, as in chat_chunk, so a caller can stream either kind the same way;
    ``logprobs`` is ``completion_logprobs`` of this chunk's tokens."""
    choice = {"text": content, "index": index, "logprobs": logprobs, **finish_fields(finish)}
    obj = {**_head(id, "text_completion", created, model), "choices": [choice]}
    if include_usage:
        obj["usage"] = None
    return _sse(obj)


def usage_chunk(*, id: str, created: int, model: str, kind: Literal["chat", "completion"],
                stats: wire.CompletionStats, extra: dict[str, Any] | None = None) -> bytes:
    """The event after the last choice when stream_options.include_usage: no choices, the usage."""
    object_ = "chat.completion.chunk" if kind == "chat" else "text_completion"
    return _sse({**_head(id, object_, created, model), "choices": [], "usage": usage(stats), **(extra or {})})


def _base64_f32(vector: list[float]) -> str:
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()               # the wire format is little-endian float32
    return base64.b64encode(packed.tobytes()).decode("ascii")


def embeddings_response(*, model: str, vectors: list[list[float]], prompt_tokens: int,
                        encoding_format: str) -> bytes:
    """A list of embedding objects; ``base64`` packs each vector as little-endian float32."""
    enc = _base64_f32 if encoding_format == "base64" else list
    data = [{"object": "embedding", "index": i, "embedding": enc(v)} for i, v in enumerate(vectors)]
    return msgspec.json.encode({"object": "list", "data": data, "model": model,
                                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})


def model_object(name: str, created: int, owned_by: str = "mullama", extra: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by, **(extra or {})}


def models_list(objects: list[dict[str, Any]]) -> bytes:
    return msgspec.json.encode({"object": "list", "data": objects})


def _error(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> bytes:
    return msgspec.json.encode(_error(message, type_, param, code))


def sse_error(message: str, type_: str, code: str | None = None) -> bytes:
    """An error inside a stream; the openai SDK raises APIError on an event with an "error" key."""
    return _sse(_error(message, type_, None, code))
