"""The ``POST /v1/responses`` body as msgspec shapes (types only; every check is in ``request.py``).

Lenient like the chat body (``http/openai/body.py``): unknown fields are ignored, ``null`` means "not
given". Input items are one Struct with every field any item kind has, told apart by ``type`` (a
message may leave ``type`` out, as the SDKs' "easy" messages do). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Part(msgspec.Struct, kw_only=True):
    """A content part: ``input_text`` / ``output_text`` (and ``refusal``) carry text; others are refused."""

    type: str
    text: str | None = None
    refusal: str | None = None


class _Item(msgspec.Struct, kw_only=True):
    """One input item: a message, a ``function_call``, a ``function_call_output`` or a ``reasoning``."""

    type: str | None = None
    role: str | None = None
    content: str | list[_Part] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[_Part] | None = None


class _Tool(msgspec.Struct, kw_only=True):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Format(msgspec.Struct, kw_only=True):
    type: str
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class _Text(msgspec.Struct, kw_only=True):
    format: _Format | None = None
    verbosity: str | None = None


class _Reasoning(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None


class _ResponsesBody(msgspec.Struct, kw_only=True):
    """Every field of OpenAI's create-response body this server reads, plus mullama's extensions (the
    sampling and scheduling fields the chat endpoint also takes)."""

    model: str | None = None
    input: str | list[_Item] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: list[_Tool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: _Text | None = None
    reasoning: _Reasoning | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    store: bool | None = None
    stream: bool | None = None
    include: list[str] | None = None
    truncation: str | None = None
    top_logprobs: int | None = None
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    # mullama's extensions, as on /v1/chat/completions
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    priority: int | None = None
    deadline_ms: float | None = None
    keep_alive: str | int | float | None = None
