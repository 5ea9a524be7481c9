"""The events of one completion as the runner's HTTP side reads them: one request of the C++ loop per
choice (``n`` of them share one prefill), their events in one queue, and per choice what turns its text
into wire values (the chat reader, log-probabilities).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mullama import _engine, engine, wire
from mullama.runner.chat import ChatReader


class Choice:
    """One choice: its request id in the C++ loop, its chat reader (a chat read back), whether it ended."""

    def __init__(self, index: int, rid: str, reader: ChatReader | None) -> None:
        self.index, self.id, self.reader = index, rid, reader
        self.done = False


class Stream:
    """``async for ev in stream``: the events of every choice, in the order the loop made them; it ends
    after the last choice's final event (``stream.choice(ev)`` says whose it is).

    ``close()`` before the end cancels the choices still running (the C++ loop frees their slots before
    its next decode step).
    """

    def __init__(self, ids: list[str], new_reader: Callable[[], ChatReader] | None, *,
                 cancel: Callable[[str], object], on_closed: Callable[[list[str]], None],
                 logprobs: Logprobs | None = None) -> None:
        self.id = ids[0]
        self.logprobs = logprobs  # set: the request asked for log-probabilities
        self.queue: asyncio.Queue = asyncio.Queue()
        self.choices = [Choice(i, rid, new_reader() if new_reader else None) for i, rid in enumerate(ids)]
        self._by_id = {c.id: c for c in self.choices}
        self._cancel, self._on_closed = cancel, on_closed
        self._open = len(ids)
        self._attached = True

    def choice(self, ev: _engine.Event) -> Choice:
        return self._by_id[ev.id]

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> _engine.Event:
        if self._open == 0:
            raise StopAsyncIteration
        ev = await self.queue.get()
        if ev.done:
            choice = self._by_id[ev.id]
            if not choice.done:
                choice.done = True
                self._open -= 1
            if self._open == 0:
                self.detach()
        return ev

    def ready(self) -> bool:
        """Another event is waiting: it can be read without waiting for the loop."""
        return not self.queue.empty()

    @property
    def finished(self) -> bool:
        """Every choice has had its final event."""
        return self._open == 0

    def detach(self) -> None:
        if self._attached:
            self._attached = False
            self._on_closed([c.id for c in self.choices])

    def close(self) -> None:
        for c in self.choices:
            if not c.done:
                c.done = True
                self._cancel(c.id)
        self._open = 0
        self.detach()


class Logprobs:
    """Turns the loop's ``TokenProb``s into wire values; a token's text and bytes are looked up once per
    model (at most its vocabulary)."""

    def __init__(self, model: engine.Model) -> None:
        self._model = model
        self._pieces: dict[int, tuple[str, list[int]]] = {}

    def _piece(self, token: int) -> tuple[str, list[int]]:
        piece = self._pieces.get(token)
        if piece is None:
            raw = self._model.token_to_piece(token, False)
            piece = self._pieces[token] = (raw.decode("utf-8", "replace"), list(raw))
        return piece

    def convert(self, probs: list[_engine.TokenProb]) -> list[wire.TokenLogprob]:
        out = []
        for p in probs:
            text, raw = self._piece(p.token)
            top = []
            for token, logprob in p.top:
                t, b = self._piece(token)
                top.append(wire.TopLogprob(token=token, text=t, bytes=b, logprob=logprob))
            out.append(wire.TokenLogprob(token=p.token, text=text, bytes=raw, logprob=p.logprob, top=top))
        return out
