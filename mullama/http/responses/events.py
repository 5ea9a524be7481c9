"""The typed server-sent events of one streamed response, as the ``openai`` SDK reads them.

``ResponseEvents`` is a small state machine: fed the answer's pieces (text, reasoning, tool-call
deltas), it returns the SSE bytes to send, each event numbered by ``sequence_number`` and named on its
``event:`` line. One output item is open at a time; a piece of another kind closes it (its ``.done``
events) and opens the next (``response.output_item.added``, then ``response.content_part.added`` for
a message or reasoning). ``finish`` closes the last item and ends with ``response.completed`` or
``response.incomplete``; ``fail`` with ``error`` and ``response.failed``. Pure apart from fresh ids.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mullama import wire
from mullama.http.responses.format import (
    function_call_item,
    message_item,
    new_id,
    output_text,
    reasoning_item,
    reasoning_text,
    token_logprobs,
)


class ResponseEvents:
    """The events of one response; ``response`` is its object as it starts (status "in_progress")."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.output: list[dict[str, Any]] = []
        self._seq = 0
        self._open: dict[str, Any] | None = None  # the last item of ``output`` while it is being written
        self._call = -1                           # the tool_index of the open function_call item
        self._logprobs: list[dict[str, Any]] = []  # of tokens whose text has not been sent yet

    def _event(self, type_: str, **fields: Any) -> bytes:
        data = msgspec.json.encode({"type": type_, "sequence_number": self._seq, **fields})
        self._seq += 1
        return b"event: " + type_.encode() + b"\ndata: " + data + b"\n\n"

    def _item_event(self, type_: str, **fields: Any) -> bytes:
        return self._event(type_, item_id=self._open["id"], output_index=len(self.output) - 1,  # type: ignore[index]
                           **fields)

    def start(self) -> bytes:
        return (self._event("response.created", response=self.response)
                + self._event("response.in_progress", response=self.response))

    # ------------------------------------------------------------------ pieces

    def text(self, delta: str, logprobs: list[dict[str, Any]] | None = None) -> bytes:
        """A piece of the message; ``logprobs`` of the tokens it came from go out with the next text."""
        self._logprobs += logprobs or []
        if not delta:
            return b""
        head = b"" if self._is_open("message") else self._open_item(message_item(new_id("msg"), "", "in_progress"))
        part = self._open["content"][0]  # type: ignore[index]
        part["text"] += delta
        sent, self._logprobs = self._logprobs, []
        part["logprobs"] += sent
        return head + self._item_event("response.output_text.delta", content_index=0, delta=delta, logprobs=sent)

    def reasoning(self, delta: str) -> bytes:
        head = b"" if self._is_open("reasoning") else self._open_item(
            reasoning_item(new_id("rs"), "", "in_progress"))
        self._open["content"][0]["text"] += delta  # type: ignore[index]
        return head + self._item_event("response.reasoning_text.delta", content_index=0, delta=delta)

    def call(self, delta: wire.ChatDelta) -> bytes:
        head = b""
        if not (self._is_open("function_call") and self._call == delta.tool_index):
            head = self._open_item(function_call_item(new_id("fc"), delta.name, "", "in_progress"))
            self._call = delta.tool_index
        if not delta.arguments:
            return head
        self._open["arguments"] += delta.arguments  # type: ignore[index]
        return head + self._item_event("response.function_call_arguments.delta", delta=delta.arguments)

    def deltas(self, deltas: list[wire.ChatDelta], logprobs: list[dict[str, Any]] | None = None) -> bytes:
        """The chat parser's changes: reasoning, tool-call pieces and text, in its order (``logprobs`` go
        with the message's text)."""
        self._logprobs += logprobs or []
        frames = []
        for d in deltas:
            if d.reasoning_content:
                frames.append(self.reasoning(d.reasoning_content))
            if d.tool_index >= 0:
                frames.append(self.call(d))
            if d.content:
                frames.append(self.text(d.content))
        return b"".join(frames)

    def frame(self, ev: wire.CompletionChunk | wire.CompletionFinal) -> bytes:
        """One frame of the runner's answer: its parsed changes, or its text, with its tokens' logprobs."""
        logprobs = token_logprobs(ev.logprobs)
        return self.deltas(ev.deltas, logprobs) if ev.deltas is not None else self.text(ev.content, logprobs)

    # ------------------------------------------------------------------ the end

    def finish(self, *, status: str, usage: dict[str, Any], incomplete: dict[str, str] | None = None,
               extra: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
        """The closing events and the finished response object (``status`` "completed" or "incomplete")."""
        head = self._close("incomplete" if status == "incomplete" else "completed")
        final = {**self.response, "status": status, "output": self.output, "usage": usage,
                 "incomplete_details": incomplete, **(extra or {})}
        return head + self._event(f"response.{status}", response=final), final

    def fail(self, message: str, code: str) -> bytes:
        head = self._close("incomplete")
        failed = {**self.response, "status": "failed", "output": self.output,
                  "error": {"code": code, "message": message}}
        return (head + self._event("error", code=code, message=message, param=None)
                + self._event("response.failed", response=failed))

    # ------------------------------------------------------------------ items

    def _is_open(self, kind: str) -> bool:
        return self._open is not None and self._open["type"] == kind

    def _open_item(self, item: dict[str, Any]) -> bytes:
        """Close the open item, add ``item``: its ``added`` events (a message or reasoning starts empty)."""
        head = self._close("completed")
        self.output.append(item)
        self._open = item
        if item["type"] == "function_call":
            return head + self._event("response.output_item.added", output_index=len(self.output) - 1, item=item)
        part = output_text("") if item["type"] == "message" else reasoning_text("")
        return (head + self._event("response.output_item.added", output_index=len(self.output) - 1,
                                   item={**item, "content": []})
                + self._item_event("response.content_part.added", content_index=0, part=part))

    def _close(self, status: str) -> bytes:
        item = self._open
        if item is None:
            return b""
        item["status"] = status
        if item["type"] == "function_call":
            frames = self._item_event("response.function_call_arguments.done", arguments=item["arguments"])
        else:
            part = item["content"][0]
            done = "response.output_text.done" if item["type"] == "message" else "response.reasoning_text.done"
            extra = {"logprobs": part["logprobs"]} if item["type"] == "message" else {}
            frames = (self._item_event(done, content_index=0, text=part["text"], **extra)
                      + self._item_event("response.content_part.done", content_index=0, part=part))
        frames += self._event("response.output_item.done", output_index=len(self.output) - 1, item=item)
        self._open = None
        return frames
