"""Anthropic's streamed message as server-sent events: ``Events`` turns the runner's text and parsed
deltas into ``message_start``, ``ping``, ``content_block_start`` / ``content_block_delta`` (``text_delta``,
``thinking_delta``, ``input_json_delta``) / ``content_block_stop``, ``message_delta`` and
``message_stop``, in Anthropic's order.

Pure: each method returns the bytes of whole events; one block is open at a time, and a change of kind
(thinking, text, another tool call) closes it. The prompt's size is known only at the end (the runner's
final stats), so ``message_start`` says 0 input tokens and ``message_delta`` carries the real counts (the
SDK takes them from there). A tool call's arguments stream as ``input_json_delta`` pieces of its JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mullama import wire
from mullama.http.anthropic import format as fmt


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode({"type": kind, **payload}) + b"\n\n"


def error_event(message: str, status: int) -> bytes:
    """An error after the stream started (the SDK raises the status error it names)."""
    return b"event: error\ndata: " + fmt.error_body(message, status) + b"\n\n"


class Events:
    """The events of one streamed message."""

    def __init__(self, id: str, model: str) -> None:
        self.id, self.model = id, model
        self.index = -1            # the open block's index; -1: none yet
        self.kind = ""             # the open block's kind: "text", "thinking", "tool_use" or "" (closed)
        self.tool_index = -1       # the open tool_use block's tool_index
        self.called = False

    def start(self) -> bytes:
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return event("message_start", {"message": message}) + event("ping", {})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        head = self._close()
        self.index += 1
        self.kind = kind
        return head + event("content_block_start", {"index": self.index, "content_block": block})

    def _close(self) -> bytes:
        if not self.kind:
            return b""
        self.kind = ""
        return event("content_block_stop", {"index": self.index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"index": self.index, "delta": delta})

    def text(self, text: str) -> bytes:
        if not text:
            return b""
        head = self._open("text", {"type": "text", "text": ""}) if self.kind != "text" else b""
        return head + self._delta({"type": "text_delta", "text": text})

    def thinking(self, text: str) -> bytes:
        if not text:
            return b""
        head = self._open("thinking", fmt.thinking_block("")) if self.kind != "thinking" else b""
        return head + self._delta({"type": "thinking_delta", "thinking": text})

    def tool(self, delta: wire.ChatDelta) -> bytes:
        """A piece of tool call ``delta.tool_index``: its first opens a tool_use block (id and name)."""
        head = b""
        if self.kind != "tool_use" or self.tool_index != delta.tool_index:
            self.tool_index, self.called = delta.tool_index, True
            call = wire.ToolFunction(name=delta.name, arguments="")
            head = self._open("tool_use", fmt.tool_use_block(call, streaming=True))
        if not delta.arguments:
            return head
        return head + self._delta({"type": "input_json_delta", "partial_json": delta.arguments})

    def deltas(self, deltas: list[wire.ChatDelta]) -> bytes:
        """The parsed changes of one runner chunk (a chat with tools or reasoning), in order."""
        out = []
        for d in deltas:
            if d.tool_index >= 0:
                out.append(self.tool(d))
            elif d.reasoning_content:
                out.append(self.thinking(d.reasoning_content))
            if d.content:
                out.append(self.text(d.content))
        return b"".join(out)

    def finish(self, final: wire.CompletionFinal, stops: list[str], extra: dict[str, Any] | None = None) -> bytes:
        """The closing events: the open block's stop, the stop reason and usage, message_stop."""
        reason, sequence = fmt.stop_reason(final, stops, self.called)
        tail = event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence},
                                       "usage": fmt.usage(final.stats), **(extra or {})})
        return self._close() + tail + event("message_stop", {})
