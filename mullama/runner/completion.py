"""How the runner answers a completion: NDJSON ``CompletionChunk`` lines while it streams and one
``CompletionFinal`` at the end, or one ``CompletionFinal`` with everything.

With ``n > 1`` every frame carries its choice's ``index``; a choice that ends before the others ends
with a chunk carrying its ``end``; the last one to end ends with the final frame, which lists every
choice's end (``choices``) and counts the prompt once and the tokens of all choices.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from mullama import _engine, wire
from mullama.runner.params import stats_of
from mullama.runner.stream import Choice, Stream


def _stats(finals: list[_engine.Event]) -> wire.CompletionStats:
    """The request's measurements: the first choice's, with the generated tokens of every choice."""
    first = stats_of(finals[0])
    if len(finals) == 1:
        return first
    return msgspec.structs.replace(first, completion_tokens=sum(ev.stats.completion_tokens for ev in finals))


def _end(choice: Choice, ev: _engine.Event, **whole) -> wire.ChoiceEnd:
    return wire.ChoiceEnd(index=choice.index, finish_reason=ev.finish_reason, stop_string=ev.stop_string or None,
                          error=ev.error or None, completion_tokens=ev.stats.completion_tokens,
                          message=choice.reader.message() if choice.reader else None, **whole)


def _failed(finals: list[_engine.Event]) -> _engine.Event | None:
    """A choice that ended in an error fails the whole request."""
    return next((ev for ev in finals if ev.finish_reason == "error"), None)


@dataclass
class _Whole:
    text: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[wire.TokenLogprob] = field(default_factory=list)
    final: _engine.Event | None = None


async def collect(stream: Stream) -> wire.CompletionFinal:
    """The whole answer in one frame (choice 0 at the top level; with n > 1, every choice in ``choices``)."""
    whole = [_Whole() for _ in stream.choices]
    async for ev in stream:
        w = whole[stream.choice(ev).index]
        w.text.append(ev.text)
        w.tokens.extend(ev.tokens)
        if stream.logprobs is not None:
            w.logprobs.extend(stream.logprobs.convert(ev.probs))
        if ev.done:
            w.final = ev
    ends = []
    for choice, w in zip(stream.choices, whole, strict=True):
        if choice.reader is not None:
            choice.reader.feed("".join(w.text), True)
        ends.append(_end(choice, w.final, content="".join(w.text),
                         logprobs=w.logprobs if stream.logprobs is not None else None))
    finals = [w.final for w in whole]
    first, failed = ends[0], _failed(finals)
    return wire.CompletionFinal(
        id=stream.id, content=first.content, tokens=whole[0].tokens,
        finish_reason="error" if failed else first.finish_reason, stop_string=first.stop_string,
        error=failed.error if failed else None, stats=_stats(finals), message=first.message,
        logprobs=first.logprobs, choices=ends if len(ends) > 1 else None)


async def relay(stream: Stream, write: Callable[[bytes], Awaitable[object]]) -> tuple[list[_engine.Event], bytes]:
    """Each event as an NDJSON line to ``write``, the lines of the events waiting together in one write;
    (the final events of the choices by index, the lines not written yet: the last, for the body's end)."""
    encode = wire.encoder.encode
    held: list[bytes] = []
    n = len(stream.choices)
    finals: list[_engine.Event | None] = [None] * n
    ends: list[wire.ChoiceEnd | None] = [None] * n
    async for ev in stream:
        choice = stream.choice(ev)
        deltas = choice.reader.feed(ev.text, ev.done) if choice.reader is not None else None
        logprobs = stream.logprobs.convert(ev.probs) if stream.logprobs is not None else None
        if ev.done:
            finals[choice.index] = ev
            ends[choice.index] = _end(choice, ev)
        if ev.done and stream.finished:
            done = [f for f in finals if f is not None]
            failed = _failed(done)
            line = encode(wire.CompletionFinal(
                id=stream.id, content=ev.text, tokens=ev.tokens,
                finish_reason="error" if failed else ev.finish_reason, stop_string=ev.stop_string or None,
                error=failed.error or None if failed else None, stats=_stats(done), deltas=deltas,
                message=ends[choice.index].message, logprobs=logprobs, index=choice.index,
                choices=[e for e in ends if e is not None] if n > 1 else None))
        else:
            line = encode(wire.CompletionChunk(id=stream.id, content=ev.text, tokens=ev.tokens, index=choice.index,
                                               deltas=deltas, logprobs=logprobs,
                                               end=ends[choice.index] if ev.done else None))
        held.append(line + b"\n")
        if not stream.finished and not stream.ready():  # one send per wake of the loop, not per event
            await write(b"".join(held))
            held.clear()
    return [f for f in finals if f is not None], b"".join(held)
