"""Internal results in, Responses API objects out: the response object, its output items, usage.

Pure apart from fresh ids. A finished generation is ``output_items`` (reasoning, then the message, then
the function calls, as the chat template's parser read them) inside ``response_object``; ``outcome``
says whether it is "completed" or "incomplete" (a length limit: OpenAI's only reason the server can
give is "max_output_tokens"). The streamed events build the same objects (``events.py``).
"""

from __future__ import annotations

import secrets
from typing import Any

from mullama import wire
from mullama.http.openai import format as openai_format
from mullama.http.openai.format import new_call_id

#: runner finish reasons that end a response early: the max_output_tokens limit, or a full context
_INCOMPLETE = frozenset({"length", "context_full"})


def new_id(prefix: str) -> str:
    """An object id as OpenAI writes them: "resp_", "msg_", "fc_" or "rs_" and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


def outcome(finish_reason: str) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) of a response whose generation ended with ``finish_reason``."""
    if finish_reason in _INCOMPLETE:
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def output_text(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A message's text; ``logprobs`` (``token_logprobs``) when the request included them."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def token_logprobs(lps: list[wire.TokenLogprob] | None) -> list[dict[str, Any]]:
    """The Responses API's logprobs: per token its text, log-probability, bytes and the most likely others."""
    return openai_format.token_logprobs(lps) if lps else []


def message_item(item_id: str, text: str, status: str, logprobs: list[dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [output_text(text, logprobs)]}


def reasoning_text(text: str) -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}


def reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": [reasoning_text(text)]}


def function_call_item(item_id: str, name: str, arguments: str, status: str, call_id: str | None = None
                       ) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id or new_call_id(),
            "name": name, "arguments": arguments}


def output_items(final: wire.CompletionFinal, text: str, logprobs: list[wire.TokenLogprob] | None = None
                 ) -> list[dict[str, Any]]:
    """A whole answer's items: ``final.message`` when the chat parser read it (tools, reasoning), else
    ``text``; the message carries ``logprobs`` (of every generated token) when asked for. The last item is
    "incomplete" when the response is."""
    parsed = final.message
    content, reasoning, calls = (parsed.content, parsed.reasoning_content, parsed.tool_calls) if parsed else \
        (text, "", [])
    items = []
    if reasoning:
        items.append(reasoning_item(new_id("rs"), reasoning, "completed"))
    if content or not calls:
        items.append(message_item(new_id("msg"), content, "completed", token_logprobs(logprobs)))
    items += [function_call_item(new_id("fc"), c.name, c.arguments, "completed") for c in calls]
    if outcome(final.finish_reason)[0] == "incomplete":
        items[-1]["status"] = "incomplete"
    return items


def usage(stats: wire.CompletionStats) -> dict[str, Any]:
    """Token counts; reasoning tokens are not counted apart (0). Cache writes: prompt tokens that were
    computed and now sit in the slot's KV cache for a later prompt to reuse."""
    return {"input_tokens": stats.prompt_tokens,
            "input_tokens_details": {"cached_tokens": stats.cached_tokens,
                                     "cache_write_tokens": stats.prompt_tokens - stats.cached_tokens},
            "output_tokens": stats.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def response_object(*, id: str, created: int, model: str, echo: dict[str, Any], status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None = None,
                    incomplete: dict[str, str] | None = None, error: dict[str, str] | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole ``response`` object; ``echo`` holds the request's settings (``request.ResponsesJob.echo``),
    ``extra`` (e.g. {"profile": ...}) joins the top level."""
    return {"id": id, "object": "response", "created_at": created, "status": status, "error": error,
            "incomplete_details": incomplete, "model": model, "output": output, "usage": usage, **echo,
            **(extra or {})}


def deleted(id: str) -> dict[str, Any]:
    return {"id": id, "object": "response.deleted", "deleted": True}
