"""The Batcher's slot choice (prefix reuse), through the pure ``_engine.choose_slot``.

Rule: among free slots, the longest common prefix among those worth reusing (it keeps
3/4 of the slot's cache or covers 90% of the prompt; ties: least recently used, then
the lowest index); else an empty slot (least recently used first); else the least
recently used. The chosen slot's common prefix is reused, at most ``len(prompt) - 1``
tokens. ``(-1, 0)`` when no slot is free.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mullama import _engine


@dataclass(frozen=True)
class Slot:
    cache: tuple[int, ...] = ()
    busy: bool = False
    last_used: int = 0


def seq(start: int, n: int) -> tuple[int, ...]:
    return tuple(range(start, start + n))


def choose(prompt, slots):
    return _engine.choose_slot(
        list(prompt), [list(s.cache) for s in slots], [s.busy for s in slots], [s.last_used for s in slots]
    )


TEMPLATE = (1, 900, 901)                      # what every chat prompt starts with (BOS + role header)
TURN1 = TEMPLATE + seq(100, 30)               # first user message + the answer the slot generated
TURN2 = TURN1 + seq(300, 12)                  # the same conversation, one more user message
OTHER_CHAT = TEMPLATE + seq(500, 30)          # another conversation: only the template is shared
UNRELATED = seq(700, 20)

CASES = [
    # ----------------------------------------------------------------- no prefix anywhere
    pytest.param(seq(10, 5), [], (-1, 0), id="no-slots"),
    pytest.param(seq(10, 5), [Slot(), Slot(), Slot()], (0, 0), id="all-empty-lowest-index"),
    pytest.param(seq(10, 5), [Slot(last_used=5), Slot(last_used=2), Slot(last_used=9)], (1, 0),
                 id="all-empty-least-recently-used"),
    pytest.param(seq(10, 5), [Slot(UNRELATED, last_used=1), Slot(last_used=7)], (1, 0),
                 id="empty-slot-before-an-older-unrelated-cache"),
    pytest.param(seq(10, 5), [Slot(UNRELATED, last_used=4), Slot(UNRELATED, last_used=3)], (1, 0),
                 id="only-unrelated-caches-least-recently-used"),
    # ----------------------------------------------------------------- busy slots
    pytest.param(TURN2, [Slot(TURN1, busy=True), Slot(TURN1, busy=True)], (-1, 0), id="all-busy-none"),
    pytest.param(TURN2, [Slot(TURN1, busy=True, last_used=0), Slot(UNRELATED, last_used=9)], (1, 0),
                 id="busy-slot-with-the-prefix-is-skipped"),
    pytest.param(seq(10, 5), [Slot(busy=True), Slot(UNRELATED, busy=True), Slot(UNRELATED, last_used=50)], (2, 0),
                 id="the-one-free-slot"),
    # ----------------------------------------------------------------- a real shared conversation
    pytest.param(TURN2, [Slot(), Slot(TURN1, last_used=8)], (1, len(TURN1)),
                 id="conversation-prefix-beats-empty-slot"),
    pytest.param(TURN2, [Slot(OTHER_CHAT, last_used=1), Slot(TURN1, last_used=8)], (1, len(TURN1)),
                 id="conversation-prefix-beats-older-other-chat"),
    pytest.param(TURN1, [Slot(UNRELATED), Slot(TURN1, last_used=3)], (1, len(TURN1) - 1),
                 id="identical-prompt-evaluates-its-last-token"),
    # ----------------------------------------------------------------- only the chat template shared
    pytest.param(TEMPLATE + seq(200, 20), [Slot(OTHER_CHAT, last_used=0), Slot(last_used=5)], (1, 0),
                 id="template-only-prefers-empty-slot"),
    pytest.param(TEMPLATE + seq(200, 20), [Slot(OTHER_CHAT, last_used=5), Slot(UNRELATED, last_used=2)], (1, 0),
                 id="template-only-is-not-reuse-takes-lru"),
    pytest.param(TEMPLATE + seq(200, 20), [Slot(OTHER_CHAT, last_used=2), Slot(UNRELATED, last_used=5)],
                 (0, len(TEMPLATE)), id="template-only-slot-taken-as-lru-keeps-its-prefix"),
    # ----------------------------------------------------------------- several reusable slots
    pytest.param(TURN2, [Slot(TURN1[:20], last_used=1), Slot(TURN1, last_used=9)], (1, len(TURN1)),
                 id="longest-prefix-wins-over-older"),
    pytest.param(TURN2, [Slot(TURN1, last_used=6), Slot(TURN1, last_used=4)], (1, len(TURN1)),
                 id="equal-prefix-tie-least-recently-used"),
    pytest.param(TURN2, [Slot(TURN1, last_used=4), Slot(TURN1, last_used=4)], (0, len(TURN1)),
                 id="full-tie-lowest-index"),
    pytest.param(TURN2, [Slot(TURN1 + (1, 2), last_used=4), Slot(TURN1 + (3,), last_used=2)], (1, len(TURN1)),
                 id="equal-prefix-different-cache-sizes-lru"),
    # ----------------------------------------------------------------- the 3/4-of-the-cache rule
    pytest.param(seq(1, 6) + seq(50, 94), [Slot(seq(1, 8), last_used=9), Slot()], (0, 6),
                 id="keeps-exactly-3/4-of-cache"),
    pytest.param(seq(1, 5) + seq(50, 95), [Slot(seq(1, 8), last_used=0), Slot(last_used=9)], (1, 0),
                 id="keeps-under-3/4-of-cache"),
    pytest.param((7, 8), [Slot((7,)), Slot()], (0, 1), id="one-token-cache-fully-shared"),
    # ----------------------------------------------------------------- the 90%-of-the-prompt rule
    pytest.param(seq(1, 18) + (999, 998), [Slot(seq(1, 100), last_used=9), Slot()], (0, 18),
                 id="covers-exactly-90%-of-prompt"),
    pytest.param(seq(1, 17) + (999, 998, 997), [Slot(seq(1, 100), last_used=0), Slot(last_used=9)], (1, 0),
                 id="covers-under-90%-of-prompt"),
    pytest.param(seq(1, 5), [Slot(), Slot(seq(1, 10), last_used=9)], (1, 4),
                 id="prompt-is-a-prefix-of-the-cache"),
    # ----------------------------------------------------------------- edge cases
    pytest.param((), [Slot(TURN1, last_used=0), Slot(last_used=5)], (1, 0),
                 id="empty-prompt-reuses-nothing-prefers-empty"),
    pytest.param((), [Slot(TURN1, last_used=3), Slot(UNRELATED, last_used=1)], (1, 0),
                 id="empty-prompt-least-recently-used"),
    pytest.param((42,), [Slot((42, 43), last_used=0), Slot(last_used=9)], (0, 0),
                 id="one-token-prompt-evaluates-that-token"),
]


@pytest.mark.parametrize(("prompt", "slots", "expected"), CASES)
def test_choose_slot(prompt, slots, expected):
    assert choose(prompt, slots) == expected


def test_choice_does_not_depend_on_unrelated_busy_slots():
    free = [Slot(TURN1, last_used=3), Slot(OTHER_CHAT, last_used=1)]
    busy = Slot(TURN2, busy=True, last_used=0)
    slot, reuse = choose(TURN2, [busy, *free])
    assert (slot - 1, reuse) == choose(TURN2, free)


@pytest.mark.parametrize(("busy", "last_used"), [([False], [0, 0]), ([False, False], [0]), ([], [])])
def test_per_slot_lists_must_have_one_entry_per_slot(busy, last_used):
    with pytest.raises(_engine.ENGINE_ERRORS["InvalidArgument"], match="one entry per slot"):
        _engine.choose_slot([1, 2], [[1], [2]], busy, last_used)
