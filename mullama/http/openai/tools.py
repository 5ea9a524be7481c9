"""OpenAI function calling in requests: ``tools``, ``tool_choice``, assistant ``tool_calls`` and ``tool``
messages, checked into wire types with errors naming the parameter, as OpenAI words them. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from mullama import wire
from mullama.http.openai.body import bad, missing

MAX_TOOLS = 128                       # OpenAI's own limit
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHOICES = ("auto", "none", "required")


def parse_tools(raw: Any) -> list[wire.Tool]:
    if not isinstance(raw, list):
        raise bad("Invalid type for 'tools': expected an array of tools.", "tools")
    if len(raw) > MAX_TOOLS:
        raise bad(f"Invalid value for 'tools': {len(raw)} tools, above the limit of {MAX_TOOLS}.", "tools")
    tools = []
    for i, t in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(t, dict):
            raise bad(f"Invalid type for '{where}': expected an object.", where)
        if t.get("type") != "function":
            raise bad(f"Invalid value for '{where}.type': only 'function' tools are supported, got "
                      f"{t.get('type')!r}.", f"{where}.type")
        f = t.get("function")
        if not isinstance(f, dict):
            raise missing(f"{where}.function")
        name = f.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise bad(f"Invalid value for '{where}.function.name': expected 1 to 64 letters, digits, '_' or "
                      f"'-', got {name!r}.", f"{where}.function.name")
        description = f.get("description", "")
        if not isinstance(description, str):
            raise bad(f"Invalid type for '{where}.function.description': expected a string.",
                      f"{where}.function.description")
        parameters = f.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise bad(f"Invalid type for '{where}.function.parameters': expected a JSON schema object.",
                      f"{where}.function.parameters")
        tools.append(wire.Tool(function=wire.FunctionSpec(name=name, description=description,
                                                          parameters=parameters)))
    return tools


def parse_tool_choice(raw: Any, tools: list[wire.Tool]) -> tuple[list[wire.Tool], wire.ToolChoice]:
    """The tools the model may call and how: a named function keeps only that tool, and requires it."""
    if raw is None:
        return tools, "auto"
    if isinstance(raw, str):
        if raw not in _CHOICES:
            raise bad(f"Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or a named "
                      f"function, got {raw!r}.", "tool_choice")
        if raw == "required" and not tools:
            raise bad("Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.",
                      "tool_choice")
        return tools, raw  # type: ignore[return-value]
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        name = raw["function"].get("name")
        named = [t for t in tools if t.function.name == name]
        if not named:
            raise bad(f"Invalid value for 'tool_choice': function {name!r} is not in 'tools'.",
                      "tool_choice.function.name")
        return named, "required"
    raise bad("Invalid type for 'tool_choice': expected a string or {\"type\": \"function\", \"function\": "
              "{\"name\": ...}}.", "tool_choice")


def parse_tool_calls(raw: Any, where: str) -> list[wire.ToolCall]:
    """An assistant message's ``tool_calls`` (history sent back by the client)."""
    if not isinstance(raw, list) or not raw:
        raise bad(f"Invalid value for '{where}': expected a non-empty array of tool calls.", where)
    calls = []
    for j, c in enumerate(raw):
        at = f"{where}[{j}]"
        if not isinstance(c, dict) or not isinstance(c.get("function"), dict):
            raise missing(f"{at}.function")
        f = c["function"]
        if not isinstance(f.get("name"), str) or not f["name"]:
            raise missing(f"{at}.function.name")
        arguments = f.get("arguments", "{}")
        if not isinstance(arguments, str):  # some clients send the object itself
            arguments = msgspec.json.encode(arguments).decode()
        call_id = c.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"call_{j}"
        calls.append(wire.ToolCall(id=call_id, function=wire.ToolFunction(name=f["name"], arguments=arguments)))
    return calls
