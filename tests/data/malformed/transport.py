"""Oversized bodies (413, also chunked), prompts longer than the context, broken raw HTTP."""

from __future__ import annotations

from .common import CHAT, COMPLETIONS, EMBEDDINGS, LIMITS, LOAD, SCHEDULER, VARIANT, Case, chat, completion, j


def size_cases() -> list[Case]:
    big = LIMITS["max_body_bytes"] + 1
    padding = "x" * big
    cases = [
        Case(f"size:{name}", "POST", route, body, 413)
        for name, route, body in [
            ("chat", CHAT, chat(messages=[{"role": "user", "content": padding}])),
            ("completions", COMPLETIONS, completion(prompt=padding)),
            ("embeddings", EMBEDDINGS, j({"input": padding})),
            ("load", LOAD, j({"model": padding})),
            ("scheduler", SCHEDULER, j({"policy": padding})),
            ("variant", VARIANT, j({"variant": padding})),
            ("spaces", CHAT, b" " * big),
            ("nuls", CHAT, b"\x00" * big),
        ]
    ]
    cases.append(
        Case(
            "size:chunked",
            "POST",
            CHAT,
            chat(messages=[{"role": "user", "content": padding}]),
            413,
            headers={"Transfer-Encoding": "chunked"},
        )
    )
    cases.append(
        Case(
            "size:chat_longer_than_context",
            "POST",
            CHAT,
            chat(messages=[{"role": "user", "content": "hello " * 2000}]),
            400,
        )
    )
    cases.append(
        Case(
            "size:many_small_messages_over_context",
            "POST",
            CHAT,
            chat(messages=[{"role": "user", "content": "hello " * 60}] * 8),
            400,
        )
    )
    return cases


def raw_cases() -> list[Case]:
    def req(head: str, body: bytes = b"") -> bytes:
        return head.encode() + b"\r\n\r\n" + body

    return [
        Case(
            "raw:content_length_lies",
            "POST",
            CHAT,
            req(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: -5"),
            raw=True,
        ),
        Case(
            "raw:content_length_word",
            "POST",
            CHAT,
            req(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: abc"),
            raw=True,
        ),
        Case(
            "raw:bad_chunk_size",
            "POST",
            CHAT,
            req(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n"),
            raw=True,
        ),
        Case(
            "raw:header_too_long",
            "GET",
            "/health",
            req("GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + "a" * 20000),
            raw=True,
        ),
        Case("raw:bad_request_line", "GET", "/health", req("GARBAGE"), raw=True),
        Case(
            "raw:non_ascii_target",
            "GET",
            "/health",
            b"GET /api/models?refresh=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
            "4xx",
            raw=True,
        ),
    ]
