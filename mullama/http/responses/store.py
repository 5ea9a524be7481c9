"""The recent responses, in memory, so that ``previous_response_id`` continues a conversation.

A bounded LRU (``responses_store`` responses; 0 keeps none): each entry is the response object as it
was sent (for ``GET /v1/responses/{id}``) and its whole conversation as chat messages (the input it
continued, its own input and its output), without the instructions, which OpenAI does not carry over
either. A follow-up's conversation shares the message objects of the one it continues, so a chain of
turns costs one list of references per turn, not a copy of the text. Nothing survives a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from mullama import wire
from mullama.core.errors import InvalidArgument, MullamaError


class ResponseNotFound(MullamaError):
    """No stored response has this id (never stored, ``store: false``, evicted or deleted)."""

    status = 404
    type = "not_found_error"


class PreviousResponseNotFound(InvalidArgument):
    """``previous_response_id`` names no stored response."""

    type = "previous_response_not_found"


class ResponseStore:
    """At most ``capacity`` responses by id, the least recently used dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[bytes, list[wire.ChatMessage]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response: dict[str, Any], messages: list[wire.ChatMessage]) -> None:
        if self.capacity <= 0:
            return
        self._entries[response["id"]] = (msgspec.json.encode(response), messages)
        self._entries.move_to_end(response["id"])
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def get(self, id: str) -> bytes:
        """The stored response object as JSON; ResponseNotFound (404) if there is none."""
        return self._entry(id, ResponseNotFound(f"No response with id {id!r} is stored here (responses are "
                                                "kept in memory, the most recent ones only)."))[0]

    def history(self, id: str) -> list[wire.ChatMessage]:
        """The conversation ``previous_response_id`` continues; 400 previous_response_not_found if unknown."""
        return self._entry(id, PreviousResponseNotFound(
            f"Previous response with id {id!r} not found: it was never stored (store: false), or it is no "
            "longer among the recent responses this server keeps in memory; resend the whole conversation "
            "as 'input' instead.", param="previous_response_id"))[1]

    def delete(self, id: str) -> None:
        if self._entries.pop(id, None) is None:
            raise ResponseNotFound(f"No response with id {id!r} is stored here.")

    def _entry(self, id: str, missing: MullamaError) -> tuple[bytes, list[wire.ChatMessage]]:
        entry = self._entries.get(id)
        if entry is None:
            raise missing
        self._entries.move_to_end(id)
        return entry
