"""Tool calling for chat templates that know nothing of tools (SmolLM2's, many small models'): the
"generic" format older llama.cpp used.

llama.cpp's chat layer (``engine.apply_chat``) renders and parses each family's native tool-call format,
but a template without tool support gets no tools at all. For those, the tools are described in the
system message and the answer is constrained by a JSON schema to either ``{"tool_call": {"name": ...,
"arguments": {...}}}`` (``{"tool_calls": [...]}`` with parallel calls) or ``{"response": "..."}`` —
only the calls with ``tool_choice: required``. The arguments follow each tool's own parameter schema.
Earlier tool calls and results in the history are written as that same JSON, so the model sees its
own format. The answer is parsed once, when it is complete (``GenericParser``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from mullama import wire
from mullama.core.errors import InvalidArgument

INSTRUCTIONS = ("Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` "
                "reply to the user's request")
REQUIRED = "Respond in JSON format with `tool_call`: a request to call one of the tools"


def _call_schema(tool: wire.Tool) -> dict[str, Any]:
    params = tool.function.parameters or {"type": "object", "properties": {}}
    return {"type": "object", "properties": {"name": {"const": tool.function.name}, "arguments": params},
            "required": ["name", "arguments"]}


def schema(tools: list[wire.Tool], tool_choice: wire.ToolChoice, parallel: bool) -> dict[str, Any]:
    """The JSON schema an answer must follow."""
    if not tools:
        raise InvalidArgument("tools must not be empty with a tool_choice other than 'none'")
    one = _call_schema(tools[0]) if len(tools) == 1 else {"anyOf": [_call_schema(t) for t in tools]}
    if parallel:
        calls = {"type": "object", "properties": {"tool_calls": {"type": "array", "items": one, "minItems": 1}},
                 "required": ["tool_calls"]}
    else:
        calls = {"type": "object", "properties": {"tool_call": one}, "required": ["tool_call"]}
    if tool_choice == "required":
        return calls
    reply = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}
    return {"anyOf": [calls, reply]}


def messages(history: list[wire.ChatMessage], tools: list[wire.Tool], tool_choice: wire.ToolChoice,
             parallel: bool) -> list[dict[str, str]]:
    """The conversation as plain role/content turns: the tools and the answer format in the system
    message (not with ``tool_choice: none``), earlier calls and results as the JSON the model writes."""
    out: list[dict[str, str]] = []
    for m in history:
        if m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.function.name, "arguments": _arguments(c.function.arguments), "id": c.id}
                     for c in m.tool_calls]
            body = {"tool_calls": calls} if parallel or len(calls) > 1 else {"tool_call": calls[0]}
            out.append({"role": "assistant", "content": msgspec.json.encode(body).decode()})
        elif m.role == "tool":
            result = {"tool_response": {"tool_call_id": m.tool_call_id, "name": m.name, "content": m.content or ""}}
            out.append({"role": "user", "content": msgspec.json.encode(result).decode()})
        else:
            out.append({"role": m.role, "content": m.content or ""})
    if not tools or tool_choice == "none":
        return out
    described = msgspec.json.encode([t.function for t in tools]).decode()
    guide = f"You can call these tools:\n{described}\n{REQUIRED if tool_choice == 'required' else INSTRUCTIONS}"
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{guide}"}
    else:
        out.insert(0, {"role": "system", "content": guide})
    return out


def _arguments(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text  # not JSON: shown to the model as the string it was


class _Delta:
    """One change, shaped as ``engine.ChatParser``'s deltas."""

    def __init__(self, content: str = "", tool_index: int = -1, name: str = "", arguments: str = "") -> None:
        self.content, self.reasoning_content = content, ""
        self.tool_index, self.name, self.arguments = tool_index, name, arguments


class GenericParser:
    """Reads a generic-format answer when it is complete (the JSON is one value: nothing to stream before)."""

    def __init__(self) -> None:
        self._result = wire.ChatResult(content="")
        self._pieces: list[str] = []

    def append(self, piece: str, final: bool = False) -> list[_Delta]:
        """``feed`` with the text kept here: ``piece`` is what was generated since the last call."""
        self._pieces.append(piece)
        return self.feed("".join(self._pieces), final) if final else []

    def feed(self, text: str, final: bool = False) -> list[_Delta]:
        if not final:
            return []
        self._result = parse(text)
        if not self._result.tool_calls:
            return [_Delta(content=self._result.content)] if self._result.content else []
        return [_Delta(tool_index=i, name=c.name, arguments=c.arguments) for i, c in enumerate(self._result.tool_calls)]

    def result(self) -> wire.ChatResult:
        return self._result


def parse(text: str) -> wire.ChatResult:
    """The answer: tool calls, or the response text; anything else (cut short by max_tokens) as content."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return wire.ChatResult(content=text)
    if isinstance(value, dict):
        calls = value.get("tool_calls") if "tool_calls" in value else [value.get("tool_call")]
        if isinstance(calls, list) and calls and all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                                     for c in calls):
            return wire.ChatResult(content="", tool_calls=[
                wire.ToolFunction(name=c["name"], arguments=msgspec.json.encode(c.get("arguments", {})).decode())
                for c in calls])
        if isinstance(value.get("response"), str):
            return wire.ChatResult(content=value["response"])
    return wire.ChatResult(content=text)
