"""The SSE events of a streamed OpenAI answer, made from the runner's frames, for every choice: its
opening (chat: the role delta; completions with ``echo``: the prompt), its text or parsed deltas (content,
reasoning, tool-call pieces) with the log-probabilities of the tokens they came from, and its finish
event when that choice ends. Pure: bytes out, no I/O.
"""

from __future__ import annotations

from typing import Any

from mullama import wire
from mullama.http.openai import format as openai
from mullama.serving.generation import Generation

Frame = wire.CompletionChunk | wire.CompletionFinal


def _end(ev: Frame) -> wire.CompletionFinal | wire.ChoiceEnd | None:
    """How the frame's choice ended, if it did; an error gets no finish event (the route reports it)."""
    end = ev if isinstance(ev, wire.CompletionFinal) else ev.end
    return end if end is not None and end.finish_reason != "error" else None


class ChatFrames:
    """chat.completion.chunk events."""

    def __init__(self, run: Generation) -> None:
        self._head = {"id": run.rid, "created": run.created, "model": run.model,
                      "include_usage": run.job.include_usage}
        self._n = run.job.request.n
        self._call_ids: dict[int, dict[int, str]] = {}  # choice -> tool-call index -> the id it was given

    def opening(self) -> bytes:
        return b"".join(openai.chat_chunk(**self._head, role=True, index=i) for i in range(self._n))

    def frame(self, ev: Frame) -> bytes:
        i = ev.index
        parts: list[dict[str, Any]] = []
        if ev.deltas is not None:
            ids = self._call_ids.setdefault(i, {})
            for d in ev.deltas:
                if d.tool_index >= 0:
                    parts.append({"tool_call": openai.tool_call_delta(d, ids)})
                elif d.reasoning_content:
                    parts.append({"reasoning": d.reasoning_content})
                if d.content:
                    parts.append({"content": d.content})
        elif ev.content:
            parts.append({"content": ev.content})
        if ev.logprobs:  # on the first event of the tokens they belong to (an empty delta when text is held back)
            if not parts:
                parts.append({"content": ""})
            parts[0]["logprobs"] = ev.logprobs
        end = _end(ev)
        if end is not None:
            parts.append({"finish": end.finish_reason, "called": bool(end.message and end.message.tool_calls)})
        return b"".join(openai.chat_chunk(**self._head, index=i, **p) for p in parts)


class TextFrames:
    """text_completion events (/v1/completions); ``echo`` starts every choice with the prompt."""

    def __init__(self, run: Generation) -> None:
        self._head = {"id": run.rid, "created": run.created, "model": run.model,
                      "include_usage": run.job.include_usage}
        self._n = run.job.request.n
        self._echo = run.job.request.prompt or "" if run.job.echo else ""
        self._offset = [len(self._echo)] * self._n  # characters before each choice's next token (text_offset)

    def opening(self) -> bytes:
        if not self._echo:
            return b""
        return b"".join(openai.completion_chunk(**self._head, content=self._echo, index=i) for i in range(self._n))

    def frame(self, ev: Frame) -> bytes:
        i = ev.index
        out = []
        if ev.content or ev.logprobs:
            logprobs = openai.completion_logprobs(ev.logprobs, self._offset[i]) if ev.logprobs else None
            if ev.logprobs:
                self._offset[i] += sum(len(t.text) for t in ev.logprobs)
            out.append(openai.completion_chunk(**self._head, content=ev.content, index=i, logprobs=logprobs))
        end = _end(ev)
        if end is not None:
            out.append(openai.completion_chunk(**self._head, finish=end.finish_reason, index=i))
        return b"".join(out)
