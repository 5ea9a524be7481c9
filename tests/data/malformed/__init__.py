"""Hostile and malformed requests for ``tests/integration/test_malformed_requests.py``, one module per group.

Each ``Case`` is one HTTP request (method, path, raw body bytes, extra headers) and what the server
must answer: an exact status, or ``"4xx"``. Nothing here is sent anywhere by importing it. The
server the corpus is written for runs with the ``LIMITS`` below (small, so that "too big" is cheap)
and ``n_ctx`` = ``N_CTX``; ``expect=200`` marks odd-but-valid input (unicode edge cases) that must be
served, with ``max_tokens: 1`` so each costs one token.

``raw=True`` cases are whole HTTP/1.1 requests written to a socket: aiohttp's HTTP parser answers
those before any handler runs, so they get a 4xx but not necessarily the OpenAI error shape.

Groups: ``bad_json`` (every JSON route), ``chat`` (fields, JSON schemas, grammars),
``completions_embeddings``, ``names`` (path escapes, unknown models), ``routes`` (management and
internal routes, wrong methods), ``unicode``, ``transport`` (sizes, raw HTTP); ``common`` holds what
they share. ``cases()`` is all of them, in that order.
"""

from __future__ import annotations

from .bad_json import BAD_JSON, JSON_ROUTES, bad_json_cases
from .chat import CHAT_BAD, GRAMMARS_BAD, SCHEMAS_BAD, chat_cases
from .common import (
    CHAT,
    CHAT_HEAD,
    COMPLETIONS,
    EMBEDDINGS,
    HI,
    LIMITS,
    LOAD,
    N_CTX,
    SCHEDULER,
    UNLOAD,
    VARIANT,
    Case,
    chat,
    completion,
    j,
    nested,
)
from .completions_embeddings import completion_cases, embedding_cases
from .names import ESCAPES, UNKNOWN, name_cases
from .routes import management_cases, method_cases
from .transport import raw_cases, size_cases
from .unicode import unicode_cases

__all__ = [
    "BAD_JSON",
    "CHAT",
    "CHAT_BAD",
    "CHAT_HEAD",
    "COMPLETIONS",
    "EMBEDDINGS",
    "ESCAPES",
    "GRAMMARS_BAD",
    "HI",
    "JSON_ROUTES",
    "LIMITS",
    "LOAD",
    "N_CTX",
    "SCHEDULER",
    "SCHEMAS_BAD",
    "UNKNOWN",
    "UNLOAD",
    "VARIANT",
    "Case",
    "cases",
    "chat",
    "completion",
    "j",
    "nested",
]


def cases() -> list[Case]:
    out = (
        bad_json_cases()
        + chat_cases()
        + completion_cases()
        + embedding_cases()
        + name_cases()
        + management_cases()
        + method_cases()
        + unicode_cases()
        + size_cases()
        + raw_cases()
    )
    names = [c.name for c in out]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    return out
