"""The Anthropic Messages request bodies as msgspec shapes, and decoding into them.

Types only: content blocks, tool choices and thinking settings are tagged unions on ``type``, so a block
of a kind this server does not take (``image``, ``document`` ...) is refused by name. Unknown fields are
ignored (the SDK sends fields that change nothing here, such as ``service_tier``); ranges and the order of
the conversation are checked by hand in ``request.py``. ``openapi/anthropic.py`` documents these shapes.
Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from mullama.core.errors import InvalidArgument
from mullama.http.openai import body as openai_body

# ---------------------------------------------------------------- content blocks


class TextBlock(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    text: str


class ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type", kw_only=True):
    """An assistant turn's call (history sent back by the client)."""

    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(msgspec.Struct, tag="tool_result", tag_field="type", kw_only=True):
    """A user turn's answer to the ``tool_use`` of the turn before."""

    tool_use_id: str
    content: str | list[TextBlock] | None = None
    is_error: bool = False


class ThinkingBlock(msgspec.Struct, tag="thinking", tag_field="type", kw_only=True):
    thinking: str = ""
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking", tag_field="type", kw_only=True):
    data: str = ""


Block = TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock
BLOCK_TYPES = ("text", "tool_use", "tool_result", "thinking", "redacted_thinking")


class Message(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[Block]


# ---------------------------------------------------------------- tools, tool choice, thinking


class Tool(msgspec.Struct, kw_only=True):
    name: str
    input_schema: dict[str, Any]
    description: str = ""
    type: str | None = None       # absent or "custom": a client tool; Anthropic's server tools are not served


class ChoiceAuto(msgspec.Struct, tag="auto", tag_field="type", kw_only=True):
    disable_parallel_tool_use: bool = False


class ChoiceAny(msgspec.Struct, tag="any", tag_field="type", kw_only=True):
    disable_parallel_tool_use: bool = False


class ChoiceTool(msgspec.Struct, tag="tool", tag_field="type", kw_only=True):
    name: str
    disable_parallel_tool_use: bool = False


class ChoiceNone(msgspec.Struct, tag="none", tag_field="type", kw_only=True):
    pass


ToolChoice = ChoiceAuto | ChoiceAny | ChoiceTool | ChoiceNone


class ThinkingEnabled(msgspec.Struct, tag="enabled", tag_field="type", kw_only=True):
    budget_tokens: int


class ThinkingAdaptive(msgspec.Struct, tag="adaptive", tag_field="type", kw_only=True):
    pass


class ThinkingDisabled(msgspec.Struct, tag="disabled", tag_field="type", kw_only=True):
    pass


Thinking = ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled


class Metadata(msgspec.Struct, kw_only=True):
    user_id: str | None = None


# ---------------------------------------------------------------- bodies


class CountTokensBody(msgspec.Struct, kw_only=True):
    """/v1/messages/count_tokens: the prompt part of a Messages body."""

    model: str
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None


class MessagesBody(CountTokensBody, kw_only=True):
    """/v1/messages."""

    max_tokens: int
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: Metadata | None = None
    stream: bool | None = None


# ---------------------------------------------------------------- decoding

_TAG = re.compile(r"Invalid value '([^']*)' - at `\$\.(.*)\.type`$")
_BLOCK_AT = re.compile(r"(^system|\.content)\[\d+\]$")


def _unknown_tag(value: str, path: str) -> InvalidArgument:
    path = path.replace("[...]", "")
    if _BLOCK_AT.search(path):
        what = "images are not supported" if value == "image" else f"blocks of type {value!r} are not supported"
        return InvalidArgument(f"Invalid content block at '{path}': {what} by this server (it takes "
                               f"{', '.join(BLOCK_TYPES)}).", param=f"{path}.type")
    return InvalidArgument(f"Invalid value for '{path}.type': {value!r} is not supported by this server.",
                           param=f"{path}.type")


def decode(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    """``raw`` as a ``kind``; an unknown ``type`` of a block, tool choice or thinking setting is refused by
    name, every other problem is worded as on the OpenAI routes (``openai.body.decode``)."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as e:
        if m := _TAG.match(str(e)):
            raise _unknown_tag(m.group(1), m.group(2)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass
    return openai_body.decode(raw, kind)  # raises, in words that name the field
