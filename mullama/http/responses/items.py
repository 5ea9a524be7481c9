"""Responses API items as chat messages: what the chat template renders (``wire.ChatMessage``).

A ``message`` item is a message (``developer`` reads as ``system``); ``function_call`` items join the
assistant message before them as its ``tool_calls`` (consecutive calls are one assistant turn, as
OpenAI's parallel calls are); a ``function_call_output`` is a ``tool`` message and must answer a call
made before it, in this input or in the stored conversation it continues. ``reasoning`` items are
skipped: chat templates do not take earlier reasoning back. Output items are input items too, which is
how a stored response's answer joins its conversation (``output_messages``). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mullama import wire
from mullama.http.openai.body import bad, missing, unsupported
from mullama.http.responses.body import _Item, _Part

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_SKIPPED = frozenset({"reasoning"})


def conversation(items: list[_Item], history: list[wire.ChatMessage], where: str = "input"
                 ) -> list[wire.ChatMessage]:
    """The messages ``items`` add after ``history``; InvalidArgument naming ``where[i]`` for a bad item."""
    calls = {c.id: c.function.name for m in history for c in m.tool_calls or ()}
    out: list[wire.ChatMessage] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        kind = item.type or ("message" if item.role is not None else None)
        if kind == "message":
            out.append(_message(item, at))
        elif kind == "function_call":
            call = _call(item, at)
            calls[call.id] = call.function.name
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = msgspec.structs.replace(last, content=last.content or None,
                                                  tool_calls=[*(last.tool_calls or ()), call])
            else:
                out.append(wire.ChatMessage(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            if not item.call_id:
                raise missing(f"{at}.call_id")
            if item.call_id not in calls:
                raise bad(f"Invalid value for '{at}.call_id': no function_call with call_id {item.call_id!r} "
                          "comes before this output (send the function_call item too, or continue its "
                          "response with 'previous_response_id').", f"{at}.call_id")
            if item.output is None:
                raise missing(f"{at}.output")
            out.append(wire.ChatMessage(role="tool", content=_text(item.output, f"{at}.output"),
                                        tool_call_id=item.call_id, name=calls[item.call_id]))
        elif kind in _SKIPPED:
            continue
        elif kind is None:
            raise missing(f"{at}.type")
        else:
            raise unsupported(f"{at}.type", f"input items of type {kind!r}; messages, function_call, "
                              "function_call_output and reasoning items only")
    return out


def output_messages(output: list[dict[str, Any]]) -> list[wire.ChatMessage]:
    """A response's output items as the messages that continue its conversation."""
    return conversation(msgspec.convert(output, list[_Item]), [], "output")


def _message(item: _Item, at: str) -> wire.ChatMessage:
    if item.role is None:
        raise missing(f"{at}.role")
    role = _ROLES.get(item.role)
    if role is None:
        raise bad(f"Invalid value for '{at}.role': expected 'user', 'assistant', 'system' or 'developer', "
                  f"got {item.role!r}.", f"{at}.role")
    if item.content is None:
        if role == "assistant":
            return wire.ChatMessage(role=role, content="")
        raise missing(f"{at}.content")
    return wire.ChatMessage(role=role, content=_text(item.content, f"{at}.content"))


def _call(item: _Item, at: str) -> wire.ToolCall:
    for name in ("call_id", "name"):
        if not getattr(item, name):
            raise missing(f"{at}.{name}")
    if item.arguments is None:
        raise missing(f"{at}.arguments")
    return wire.ToolCall(id=item.call_id or "",
                         function=wire.ToolFunction(name=item.name or "", arguments=item.arguments))


def _text(content: str | list[_Part], at: str) -> str:
    """A string, or text parts joined with "\\n" (as the chat endpoint joins them)."""
    if isinstance(content, str):
        return content
    if not content:
        raise bad(f"Invalid value for '{at}': expected a string or a non-empty array of content parts.", at)
    texts = []
    for j, part in enumerate(content):
        if part.type in _TEXT_PARTS:
            if part.text is None:
                raise missing(f"{at}[{j}].text")
            texts.append(part.text)
        elif part.type == "refusal":
            texts.append(part.refusal or "")
        else:
            raise unsupported(f"{at}[{j}].type", f"content parts of type {part.type!r}; text only")
    return "\n".join(texts)
