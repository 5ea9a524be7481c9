"""What every group of malformed cases shares: the server's limits, the routes, ``Case`` and body builders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

LIMITS = {"max_body_bytes": 256 << 10, "max_tokens_limit": 64, "max_messages": 8, "max_stop": 4}
N_CTX = 256

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
LOAD, UNLOAD, SCHEDULER, VARIANT = (
    "/api/load",
    "/api/unload",
    "/internal/scheduler",
    "/internal/models/smollm2/variant",
)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes = b""
    expect: int | str = "4xx"
    headers: dict[str, str] = field(default_factory=dict)
    raw: bool = False

    @property
    def wants_4xx(self) -> bool:
        return self.expect == "4xx" or (isinstance(self.expect, int) and 400 <= self.expect < 500)


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


HI = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> bytes:
    return j({"messages": HI, "max_tokens": 1, **fields})


def completion(**fields: Any) -> bytes:
    return j({"prompt": "hi", "max_tokens": 1, **fields})


def with_raw(prefix: bytes, tail: bytes) -> bytes:
    """A chat body whose last field is written raw (for bytes json.dumps cannot produce)."""
    return prefix + tail + b"}"


CHAT_HEAD = b'{"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}], '


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth
