"""A chat with tools, or with a template that reasons, in the runner: rendered by llama.cpp's chat layer
(each family's native tool-call format: prompt, lazy grammar, triggers, stops; thinking switched on or
off) or, for templates that know no tools, by the generic JSON format (``generic_tools``); the answer
read back into content, reasoning and tool calls, one reader per choice.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from mullama import _engine, engine, wire
from mullama.core.errors import InvalidArgument
from mullama.runner import generic_tools
from mullama.runner.params import sampling_params

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def template_id(call_id: str) -> str:
    """A tool-call id as every template takes it: 9 letters and digits (Mistral's templates refuse any
    other), the same for a call and the result that answers it. The client's ids stay the client's."""
    n = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        n, r = divmod(n, 62)
        out.append(_ALNUM[r])
    return "".join(out)


def _with_template_ids(messages: list[wire.ChatMessage]) -> list[wire.ChatMessage]:
    out = []
    for m in messages:
        if m.tool_calls:
            m = msgspec.structs.replace(m, tool_calls=[msgspec.structs.replace(c, id=template_id(c.id))
                                                       for c in m.tool_calls])
        if m.tool_call_id is not None:
            m = msgspec.structs.replace(m, tool_call_id=template_id(m.tool_call_id))
        out.append(m)
    return out


def uses_tools(req: wire.CompletionRequest) -> bool:
    """Tools offered, or tool turns in the history: the chat goes through ``render``."""
    return req.tools is not None or any(m.tool_calls or m.role == "tool" for m in req.messages or [])


class ChatReader:
    """Reads one choice's answer after each event: the changes as ``wire.ChatDelta``s. The text is kept
    by the parser (in C++ for the native formats): each call passes only what was generated since."""

    def __init__(self, parser: _engine.ChatParser | generic_tools.GenericParser) -> None:
        self._parser = parser

    def feed(self, piece: str, done: bool) -> list[wire.ChatDelta]:
        return [wire.ChatDelta(content=d.content, reasoning_content=d.reasoning_content, tool_index=d.tool_index,
                               name=d.name, arguments=d.arguments)
                for d in self._parser.append(piece, done)]

    def message(self) -> wire.ChatResult:
        r = self._parser.result()
        if isinstance(r, wire.ChatResult):
            return r
        return wire.ChatResult(content=r.content, reasoning_content=r.reasoning_content,
                               tool_calls=[wire.ToolFunction(name=c.name, arguments=c.arguments)
                                           for c in r.tool_calls])


@dataclass
class Rendered:
    prompt: str
    sampling: engine.SamplingParams
    stop: list[str]
    new_reader: Callable[[], ChatReader] | None  # one per choice; None: nothing to parse (tool_choice none
                                                 # on a template without tools)


async def render(model: engine.Model, native: bool, req: wire.CompletionRequest, sampling: engine.SamplingParams,
                 reasoning_format: str) -> Rendered:
    """``req.messages`` with ``req.tools`` (or a template that reasons): the prompt, the sampling constraints
    and the readers. ``native``: the template renders tool calls itself."""
    messages, tools = req.messages or [], req.tools or []
    if req.chat_template is None and (native or not uses_tools(req)):  # a request's own template: plain render
        chat = await asyncio.to_thread(engine.apply_chat, model,
                                       wire.encoder.encode(_with_template_ids(messages)).decode(),
                                       wire.encoder.encode(tools).decode() if tools else "", req.tool_choice,
                                       req.parallel_tool_calls, True, req.reasoning_format or reasoning_format,
                                       req.think is not False and req.reasoning_budget != 0)  # budget 0: no thinking
        stop = [*req.stop, *(s for s in chat.additional_stops if s not in req.stop)]
        return Rendered(chat.prompt, engine.with_chat(sampling, chat), stop,
                        lambda: ChatReader(engine.ChatParser(chat)))
    new_reader = None
    if tools and req.tool_choice != "none":
        if req.grammar or req.json_schema:
            raise InvalidArgument("a grammar or JSON schema cannot be combined with tools")
        schema = generic_tools.schema(tools, req.tool_choice, req.parallel_tool_calls)
        sampling = sampling_params(msgspec.structs.replace(req, json_schema=schema), model.info.n_vocab)
        new_reader = lambda: ChatReader(generic_tools.GenericParser())
    prompt = model.apply_chat_template(generic_tools.messages(messages, tools, req.tool_choice,
                                                              req.parallel_tool_calls), True, req.chat_template or "")
    return Rendered(prompt, sampling, list(req.stop), new_reader)
