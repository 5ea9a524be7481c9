"""Anthropic Messages bodies in, internal jobs out: ``parse_messages`` (/v1/messages) and ``parse_count``
(/v1/messages/count_tokens).

Pure: no I/O. The body is decoded into ``body.py``'s Structs, then checked here, so every problem is one
``InvalidArgument`` (400) whose message names the field. The conversation becomes ``wire.ChatMessage``s:
``system`` first; consecutive turns of one role are one turn, as Anthropic combines them; ``tool_use``
blocks are the assistant's ``tool_calls`` (their ids kept), each ``tool_result`` a ``tool`` message
answering a ``tool_use`` of the turn before; ``thinking`` blocks of earlier turns become the turn's
``reasoning_content`` (a template that reasons renders what it keeps of it; ``redacted_thinking`` is
dropped). Sampling follows Anthropic's defaults where it documents one
(``temperature`` 1); the others stay at the runner's. A named tool choice reuses the OpenAI front end's
rule (``openai.tools.parse_tool_choice``): only that tool, required.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mullama import wire
from mullama.core.errors import InvalidArgument
from mullama.http.anthropic import body as shapes
from mullama.http.openai.body import bounds
from mullama.http.openai.request import Limits, stop_list
from mullama.http.openai.tools import MAX_TOOLS, parse_tool_choice
from mullama.serving.job import Job

__all__ = ["Limits", "parse_count", "parse_messages"]

DEFAULT_TEMPERATURE = 1.0  # Anthropic's
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for thinking.budget_tokens
DEFAULT_LIMITS = Limits()
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def bad(message: str, param: str | None = None) -> InvalidArgument:
    return InvalidArgument(message, param=param)


def parse_messages(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Job:
    """A /v1/messages body as a chat Job; raises InvalidArgument naming the field."""
    b: shapes.MessagesBody = shapes.decode(raw, shapes.MessagesBody)
    if not 1 <= b.max_tokens <= limits.max_tokens:
        raise bad(f"Invalid value for 'max_tokens': expected an integer from 1 to {limits.max_tokens} (this "
                  f"server's limit), got {b.max_tokens}.", "max_tokens")
    bounds("temperature", b.temperature, 0, 1)
    bounds("top_p", b.top_p, 0, 1)
    bounds("top_k", b.top_k, 0, 2**31 - 1)
    if isinstance(b.thinking, shapes.ThinkingEnabled) and b.thinking.budget_tokens >= b.max_tokens:
        raise bad(f"Invalid value for 'thinking.budget_tokens': expected less than max_tokens ({b.max_tokens}), "
                  f"got {b.thinking.budget_tokens}.", "thinking.budget_tokens")
    sampling: dict[str, Any] = {"max_tokens": b.max_tokens,
                                "temperature": DEFAULT_TEMPERATURE if b.temperature is None else b.temperature}
    if b.top_p is not None:
        sampling["top_p"] = b.top_p
    if b.top_k is not None:
        sampling["top_k"] = b.top_k
    if stops := stop_list(b.stop_sequences, limits, "stop_sequences"):
        sampling["stop"] = stops
    user = b.metadata.user_id if b.metadata is not None else None
    # Anthropic's default temperature is sent, but a model's configured default may replace it
    given = frozenset(sampling) - ({"temperature"} if b.temperature is None else set())
    return _job(b, limits, sampling, stream=bool(b.stream), user=user, given=given)


def parse_count(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Job:
    """A /v1/messages/count_tokens body as a chat Job that generates nothing (``max_tokens`` 0): the runner
    renders and tokenizes the prompt exactly as /v1/messages would (``generation.count_prompt``)."""
    b: shapes.CountTokensBody = shapes.decode(raw, shapes.CountTokensBody)
    return _job(b, limits, {"max_tokens": 0}, stream=False, user=None, given=frozenset({"max_tokens"}))


def _job(b: shapes.CountTokensBody, limits: Limits, sampling: dict[str, Any], *, stream: bool,
         user: str | None, given: frozenset[str]) -> Job:
    fields: dict[str, Any] = {"messages": messages(b.system, b.messages, limits), **sampling}
    if b.tools:
        tools, choice = _tools(b.tools), b.tool_choice or shapes.ChoiceAuto()
        if isinstance(choice, shapes.ChoiceAny):
            tools, fields["tool_choice"] = parse_tool_choice("required", tools)
        elif isinstance(choice, shapes.ChoiceTool):
            tools, fields["tool_choice"] = parse_tool_choice(
                {"type": "function", "function": {"name": choice.name}}, tools)
        elif isinstance(choice, shapes.ChoiceNone):
            fields["tool_choice"] = "none"
        fields.update(tools=tools, parallel_tool_calls=not getattr(choice, "disable_parallel_tool_use", False))
    elif isinstance(b.tool_choice, shapes.ChoiceAny | shapes.ChoiceTool):
        raise bad("Invalid value for 'tool_choice': there are no 'tools' to choose from.", "tool_choice")
    if isinstance(b.thinking, shapes.ThinkingEnabled) and b.thinking.budget_tokens < MIN_THINKING_BUDGET:
        raise bad(f"Invalid value for 'thinking.budget_tokens': expected at least {MIN_THINKING_BUDGET}, got "
                  f"{b.thinking.budget_tokens}.", "thinking.budget_tokens")
    if isinstance(b.thinking, shapes.ThinkingEnabled):
        fields.update(think=True, reasoning_format="deepseek", reasoning_budget=b.thinking.budget_tokens)
    elif isinstance(b.thinking, shapes.ThinkingAdaptive):
        fields.update(think=None, reasoning_format="deepseek")
    elif isinstance(b.thinking, shapes.ThinkingDisabled):
        fields["think"] = False
    request = wire.CompletionRequest(stream=True, **fields)
    return Job(kind="chat", model=b.model, request=request, stream=stream, include_usage=False, user=user,
               given=given)


def _tools(raw: list[shapes.Tool]) -> list[wire.Tool]:
    if len(raw) > MAX_TOOLS:
        raise bad(f"Invalid value for 'tools': {len(raw)} tools, above the limit of {MAX_TOOLS}.", "tools")
    seen: set[str] = set()
    tools = []
    for i, t in enumerate(raw):
        if t.type not in (None, "custom"):
            raise bad(f"Invalid value for 'tools[{i}].type': server tools such as {t.type!r} are not supported by "
                      "this server; give client tools (name, description, input_schema).", f"tools[{i}].type")
        if not 1 <= len(t.name) <= 64 or not set(t.name) <= _NAME_CHARS:
            raise bad(f"Invalid value for 'tools[{i}].name': expected 1 to 64 letters, digits, '_' or '-', got "
                      f"{t.name!r}.", f"tools[{i}].name")
        if t.name in seen:
            raise bad(f"Invalid value for 'tools': the name {t.name!r} is given twice.", f"tools[{i}].name")
        seen.add(t.name)
        tools.append(wire.Tool(function=wire.FunctionSpec(name=t.name, description=t.description,
                                                          parameters=t.input_schema)))
    return tools


# ---------------------------------------------------------------- the conversation


def _blocks(m: shapes.Message) -> list[shapes.Block]:
    return [shapes.TextBlock(text=m.content)] if isinstance(m.content, str) else list(m.content)


def _turns(raw: list[shapes.Message]) -> list[tuple[str, list[tuple[str, shapes.Block]]]]:
    """(role, [(where, block)]) per turn: consecutive messages of one role are one turn."""
    turns: list[tuple[str, list[tuple[str, shapes.Block]]]] = []
    for i, m in enumerate(raw):
        if m.role not in ("user", "assistant"):
            hint = " (give the system prompt as the top-level 'system')" if m.role == "system" else ""
            raise bad(f"Invalid value for 'messages[{i}].role': expected 'user' or 'assistant', got "
                      f"{m.role!r}{hint}.", f"messages[{i}].role")
        blocks = [(f"messages[{i}].content[{j}]", blk) for j, blk in enumerate(_blocks(m))]
        if not blocks:
            raise bad(f"Invalid value for 'messages[{i}].content': expected a string or a non-empty array of "
                      "content blocks.", f"messages[{i}].content")
        if turns and turns[-1][0] == m.role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((m.role, blocks))
    return turns


def messages(system: str | list[shapes.TextBlock] | None, raw: list[shapes.Message],
             limits: Limits) -> list[wire.ChatMessage]:
    """The conversation as wire messages (see the module's docstring)."""
    if not raw:
        raise bad("Invalid value for 'messages': expected a non-empty array.", "messages")
    if len(raw) > limits.max_messages:
        raise bad(f"Invalid value for 'messages': {len(raw)} messages, above this server's limit of "
                  f"{limits.max_messages}.", "messages")
    out: list[wire.ChatMessage] = []
    if system:
        text = system if isinstance(system, str) else "\n".join(b.text for b in system)
        out.append(wire.ChatMessage(role="system", content=text))
    turns = _turns(raw)
    if turns[-1][0] == "assistant":
        raise bad("Invalid value for 'messages': the last message must be a user message; continuing a partial "
                  "assistant answer (prefill) is not supported by this server.", "messages")
    calls: dict[str, str] = {}  # the previous assistant turn's tool_use ids -> tool names
    for role, blocks in turns:
        if role == "assistant":
            message, calls = _assistant(blocks)
            out.append(message)
        else:
            out.extend(_user(blocks, calls))
            calls = {}
    return out


def _assistant(blocks: list[tuple[str, shapes.Block]]) -> tuple[wire.ChatMessage, dict[str, str]]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[wire.ToolCall] = []
    names: dict[str, str] = {}
    for where, blk in blocks:
        if isinstance(blk, shapes.TextBlock):
            texts.append(blk.text)
        elif isinstance(blk, shapes.ThinkingBlock):
            thinking.append(blk.thinking)
        elif isinstance(blk, shapes.ToolUseBlock):
            if not blk.id:
                raise bad(f"Invalid value for '{where}.id': a tool_use block needs a non-empty id.", f"{where}.id")
            if blk.id in names:
                raise bad(f"Invalid value for '{where}.id': the tool_use id {blk.id!r} is used twice.",
                          f"{where}.id")
            if not blk.name:
                raise bad(f"Invalid value for '{where}.name': a tool_use block needs the tool's name.",
                          f"{where}.name")
            names[blk.id] = blk.name
            calls.append(wire.ToolCall(id=blk.id, function=wire.ToolFunction(
                name=blk.name, arguments=msgspec.json.encode(blk.input).decode())))
        elif isinstance(blk, shapes.ToolResultBlock):
            raise bad(f"Invalid content block at '{where}': tool_result blocks belong in user messages.",
                      f"{where}.type")
        # redacted_thinking: dropped (its content is opaque)
    text = "\n".join(texts)
    return wire.ChatMessage(role="assistant", content=text or (None if calls else ""),
                            tool_calls=calls or None, reasoning_content="\n".join(thinking) or None), names


def _user(blocks: list[tuple[str, shapes.Block]], calls: dict[str, str]) -> list[wire.ChatMessage]:
    """One user turn: its tool results as ``tool`` messages and its text as user messages, in order."""
    out: list[wire.ChatMessage] = []
    texts: list[str] = []
    for where, blk in blocks:
        if isinstance(blk, shapes.TextBlock):
            texts.append(blk.text)
            continue
        if not isinstance(blk, shapes.ToolResultBlock):
            kind = "tool_use" if isinstance(blk, shapes.ToolUseBlock) else "thinking"
            raise bad(f"Invalid content block at '{where}': {kind} blocks belong in assistant messages.",
                      f"{where}.type")
        if blk.tool_use_id not in calls:
            raise bad(f"Invalid value for '{where}.tool_use_id': {blk.tool_use_id!r} answers no tool_use block of "
                      "the assistant message right before it.", f"{where}.tool_use_id")
        if texts:
            out.append(wire.ChatMessage(role="user", content="\n".join(texts)))
            texts = []
        content = blk.content if isinstance(blk.content, str) else "\n".join(b.text for b in blk.content or [])
        out.append(wire.ChatMessage(role="tool", tool_call_id=blk.tool_use_id, name=calls[blk.tool_use_id],
                                    content=f"Error: {content}" if blk.is_error else content))
    if texts:
        out.append(wire.ChatMessage(role="user", content="\n".join(texts)))
    return out
