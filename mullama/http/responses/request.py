"""A ``POST /v1/responses`` body in, a chat ``Job`` out: ``parse_responses``.

Pure: no I/O. The body is decoded into ``body.py``'s Structs and checked here, so every problem is one
``InvalidArgument`` whose ``param`` names the field. The instructions become the system message, the
input items chat messages (``items.py``) after the conversation ``previous_response_id`` continues
(``history`` looks it up; the store raises for an unknown id). Tools and ``tool_choice`` go through the
chat endpoint's checks (``http/openai/tools.py``), the server's ``Limits`` are the chat endpoint's.
Fields that cannot be honoured (hosted tools, background runs, log probabilities, ``truncation:
"auto"``) are refused; harmless ones are echoed or ignored. Sampling fields left out stay at the
runner's defaults, as on the chat endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from mullama import wire
from mullama.core.errors import InvalidArgument
from mullama.http.openai.body import bad, bounds, decode, missing, unsupported
from mullama.http.openai.request import Limits, keep_alive_param
from mullama.http.openai.tools import parse_tool_choice, parse_tools
from mullama.http.responses.body import _Format, _Item, _ResponsesBody, _Tool
from mullama.http.responses.items import conversation
from mullama.serving.job import Job

#: reasoning.effort -> the template's enable_thinking
EFFORTS = {"none": False, "minimal": False, "low": True, "medium": True, "high": True, "xhigh": True}
#: the ``include`` that asks for the log-probabilities of the answer's tokens (``top_logprobs`` implies it)
LOGPROBS = "message.output_text.logprobs"
#: ``include`` values that only add data this server never produces (hosted tools, encrypted reasoning)
IGNORED_INCLUDES = frozenset({
    "reasoning.encrypted_content", "file_search_call.results", "web_search_call.results",
    "web_search_call.action.sources", "code_interpreter_call.outputs", "computer_call_output.output.image_url",
    "message.input_image.image_url"})
MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512   # OpenAI's own limits


@dataclass(frozen=True)
class ResponsesJob:
    """What the routes need of one request: the Job, the settings the response object repeats, and the
    conversation (without the instructions) that a stored response continues."""

    job: Job
    echo: dict[str, Any]
    messages: list[wire.ChatMessage]
    store: bool


def parse_responses(body: bytes, limits: Limits, history: Callable[[str], list[wire.ChatMessage]]
                    ) -> ResponsesJob:
    """A /v1/responses body as a chat Job; raises InvalidArgument naming the parameter."""
    b: _ResponsesBody = decode(body, _ResponsesBody)
    _refuse(b)
    prior = history(b.previous_response_id) if b.previous_response_id is not None else []
    messages = [*prior, *conversation(_items(b.input), prior)]
    system = [wire.ChatMessage(role="system", content=b.instructions)] if b.instructions else []
    if len(system) + len(messages) > limits.max_messages:
        raise bad(f"Invalid value for 'input': the conversation has {len(system) + len(messages)} messages, "
                  f"above this server's limit of {limits.max_messages}.", "input")
    source: dict[str, Any] = {"messages": [*system, *messages]}
    schema = _json_schema(b.text.format if b.text else None)
    parallel = b.parallel_tool_calls is not False    # OpenAI's default: true
    if b.tools:
        tools, choice = _tool_choice(b.tool_choice, _tools(b.tools))
        if choice != "none" and schema is not None:
            raise bad("'tools' cannot be combined with a JSON 'text.format'; use tool_choice 'none' to answer "
                      "in a format.", "tools")
        source.update(tools=tools, tool_choice=choice, parallel_tool_calls=parallel)
    elif b.tool_choice not in (None, "none", "auto"):
        raise bad("Invalid value for 'tool_choice': there are no 'tools' to choose from.", "tool_choice")
    req = _sampling(b, limits)
    if LOGPROBS in (b.include or ()) or b.top_logprobs:
        req.update(logprobs=True, top_logprobs=b.top_logprobs or 0)
    if schema is not None:
        req["json_schema"] = schema
    if b.reasoning is not None and b.reasoning.effort is not None:
        if b.reasoning.effort not in EFFORTS:
            raise bad(f"Invalid value for 'reasoning.effort': expected one of {', '.join(EFFORTS)}, got "
                      f"{b.reasoning.effort!r}.", "reasoning.effort")
        req["think"] = EFFORTS[b.reasoning.effort]
        if req["think"]:
            req["reasoning_format"] = "deepseek"
    keep_alive = keep_alive_param(b.keep_alive)
    request = wire.CompletionRequest(**{**source, "stream": True, "max_tokens": -1, **req})
    job = Job(kind="chat", model=b.model or "", request=request, stream=bool(b.stream), include_usage=False,
              priority=b.priority or 0, deadline_ms=b.deadline_ms, keep_alive=keep_alive,
              user=b.safety_identifier or b.user, given=frozenset(req))
    return ResponsesJob(job=job, echo=_echo(b, parallel), messages=messages, store=b.store is not False)


def _refuse(b: _ResponsesBody) -> None:
    """What this server cannot honour, refused rather than silently ignored."""
    if b.background:
        raise unsupported("background", "responses run while the request is open; use 'stream'")
    if b.conversation is not None:
        raise unsupported("conversation", "no Conversations API; continue with 'previous_response_id'")
    if b.prompt is not None:
        raise unsupported("prompt", "no stored prompt templates")
    bounds("top_logprobs", b.top_logprobs, 0, 20)
    if b.truncation not in (None, "disabled"):
        if b.truncation == "auto":
            raise unsupported("truncation", "the conversation is never shortened; one past the context is a "
                              "400 context_length_exceeded")
        raise bad(f"Invalid value for 'truncation': expected 'auto' or 'disabled', got {b.truncation!r}.",
                  "truncation")
    for i, name in enumerate(b.include or ()):
        if name != LOGPROBS and name not in IGNORED_INCLUDES:
            raise bad(f"Invalid value for 'include[{i}]': {name!r} is not a known include.", f"include[{i}]")
    metadata = b.metadata or {}
    if len(metadata) > MAX_METADATA:
        raise bad(f"Invalid value for 'metadata': at most {MAX_METADATA} pairs, got {len(metadata)}.", "metadata")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise bad(f"Invalid value for 'metadata': keys have at most {MAX_METADATA_KEY} characters and values "
                      f"at most {MAX_METADATA_VALUE} (key {key[:MAX_METADATA_KEY]!r}).", "metadata")


def _items(raw: str | list[_Item] | None) -> list[_Item]:
    if raw is None:
        raise missing("input")
    if isinstance(raw, str):
        return [_Item(type="message", role="user", content=raw)]
    if not raw:
        raise bad("Invalid value for 'input': expected a string or a non-empty array of items.", "input")
    return raw


def _flat(exc: InvalidArgument) -> InvalidArgument:
    """The chat checks name the chat shape ('tools[0].function.name'); the Responses shape has no
    'function' level ('tools[0].name')."""
    return bad(str(exc).replace(".function.", "."), exc.param.replace(".function.", ".") if exc.param else None)


def _tools(raw: list[_Tool]) -> list[wire.Tool]:
    for i, t in enumerate(raw):
        if t.type != "function":
            raise unsupported(f"tools[{i}].type", f"only 'function' tools; the hosted tool {t.type!r} is not "
                              "available")
    nested = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                "parameters": t.parameters}} for t in raw]
    try:
        return parse_tools(nested)
    except InvalidArgument as exc:
        raise _flat(exc) from None


def _tool_choice(raw: Any, tools: list[wire.Tool]) -> tuple[list[wire.Tool], wire.ToolChoice]:
    """"auto" | "none" | "required" | {"type": "function", "name"} | {"type": "allowed_tools", "mode",
    "tools"}: a named function keeps only that tool and requires it; allowed_tools keeps those."""
    if isinstance(raw, dict) and raw.get("type") == "function":
        raw = {"type": "function", "function": {"name": raw.get("name")}}
    elif isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        allowed = raw.get("tools")
        if not isinstance(allowed, list) or not allowed:
            raise bad("Invalid value for 'tool_choice.tools': expected a non-empty array of tools.",
                      "tool_choice.tools")
        names = {t.get("name") for t in allowed if isinstance(t, dict) and t.get("type") == "function"}
        if len(names) != len(allowed) or not names <= {t.function.name for t in tools}:
            raise bad("Invalid value for 'tool_choice.tools': each must be {\"type\": \"function\", \"name\": ...} "
                      "naming a function in 'tools'.", "tool_choice.tools")
        tools, raw = [t for t in tools if t.function.name in names], raw.get("mode", "auto")
        if raw not in ("auto", "required"):
            raise bad("Invalid value for 'tool_choice.mode': expected 'auto' or 'required'.", "tool_choice.mode")
    elif isinstance(raw, dict):
        raise unsupported("tool_choice", f"only function tools; the hosted tool {raw.get('type')!r} is not available")
    try:
        return parse_tool_choice(raw, tools)
    except InvalidArgument as exc:
        raise _flat(exc) from None


def _json_schema(f: _Format | None) -> dict[str, Any] | None:
    if f is None or f.type == "text":
        return None
    if f.type == "json_object":
        return {"type": "object"}
    if f.type == "json_schema":
        if f.schema is None:
            raise missing("text.format.schema")
        return f.schema
    raise bad(f"Invalid value for 'text.format.type': expected 'text', 'json_object' or 'json_schema', got "
              f"{f.type!r}.", "text.format.type")


_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "seed")


def _sampling(b: _ResponsesBody, limits: Limits) -> dict[str, Any]:
    bounds("temperature", b.temperature, 0, 2)
    bounds("top_p", b.top_p, 0, 1)
    bounds("top_k", b.top_k, 0, 2**31 - 1)
    bounds("min_p", b.min_p, 0, 1)
    bounds("seed", b.seed, -1, 2**32 - 1)
    bounds("priority", b.priority, -1000, 1000)
    bounds("deadline_ms", b.deadline_ms, 0, open_lo=True)
    req = {name: getattr(b, name) for name in _SAMPLING if getattr(b, name) is not None}
    if b.max_output_tokens is not None:
        if not 1 <= b.max_output_tokens <= limits.max_tokens:
            raise bad(f"Invalid value for 'max_output_tokens': expected an integer from 1 to this server's limit "
                      f"of {limits.max_tokens}, got {b.max_output_tokens}.", "max_output_tokens")
        req["max_tokens"] = b.max_output_tokens
    return req


def _echo(b: _ResponsesBody, parallel: bool) -> dict[str, Any]:
    """The request's settings as the response object repeats them (OpenAI's defaults where left out)."""
    fmt = msgspec.structs.asdict(b.text.format) if b.text and b.text.format else {"type": "text"}
    return {
        "instructions": b.instructions, "previous_response_id": b.previous_response_id,
        "tools": [msgspec.structs.asdict(t) for t in b.tools or ()],
        "tool_choice": b.tool_choice if b.tool_choice is not None else "auto",
        "parallel_tool_calls": parallel, "temperature": b.temperature, "top_p": b.top_p,
        "max_output_tokens": b.max_output_tokens, "text": {"format": {k: v for k, v in fmt.items() if v is not None}},
        "reasoning": msgspec.structs.asdict(b.reasoning) if b.reasoning else {"effort": None, "summary": None},
        "metadata": b.metadata or {}, "store": b.store is not False, "truncation": "disabled",
        "user": b.user, "safety_identifier": b.safety_identifier, "background": False,
        "top_logprobs": b.top_logprobs or 0,
    }
