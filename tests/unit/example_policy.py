"""Shortest prompt first, with ageing: an example custom scheduling policy for mullama.

Short prompts finish prefill sooner, so serving them first lowers the mean time to first token.
Ordering by `arrived + prompt_chars / chars_per_second` makes a long prompt count as if it had
arrived a little later, so it lets short prompts go first, but only those that arrive within that
handicap: nothing waits forever. Use it with
`PYTHONPATH=DIR mullama serve --scheduler example_policy:ShortestPromptFirst`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mullama.policies import Request


class ShortestPromptFirst:
    name = "shortest_prompt"
    chars_per_second = 1000.0  # 1000 prompt characters weigh as much as one second of waiting

    def __init__(self) -> None:
        self._queued: dict[str, Request] = {}  # by id; the scheduler adds and removes each once

    def add(self, req: Request) -> None:
        self._queued[req.id] = req

    def remove(self, req: Request, dispatched: bool) -> None:
        del self._queued[req.id]

    def order(self, now: float) -> Iterator[Request]:
        def handicapped_arrival(r: Request) -> tuple[float, int]:
            return r.arrived + r.prompt_chars / self.chars_per_second, r.seq

        # sorted() makes a snapshot, so the scheduler may call remove() while it walks this
        return iter(sorted(self._queued.values(), key=handicapped_arrival))

    def victim(self, urgent: Request, running: Sequence[Request], now: float) -> Request | None:
        return None  # never pauses a running request
