"""Bad JSON, on every JSON route."""

from __future__ import annotations

from .common import CHAT, COMPLETIONS, EMBEDDINGS, LOAD, SCHEDULER, UNLOAD, VARIANT, Case, nested

BAD_JSON: list[tuple[str, bytes]] = [
    ("whitespace", b"   \n"),
    ("open_brace", b"{"),
    ("close_brace", b"}"),
    ("garbage", b"{not json"),
    ("array", b"[]"),
    ("null", b"null"),
    ("number", b"42"),
    ("string", b'"text"'),
    ("single_quotes", b"{'model': 'x'}"),
    ("trailing_comma", b'{"model": "x",}'),
    ("missing_colon", b'{"model" "x"}'),
    ("nan_literal", b'{"model": NaN}'),
    ("infinity_literal", b'{"model": Infinity}'),
    ("utf16_bom", b"\xff\xfe{\x00}\x00"),
    ("deep_arrays", b"[" * 100_000 + b"]" * 100_000),
    ("deep_objects", nested(5000)),
    ("truncated", b'{"model": "smollm2", "messages": [{"role": "us'),
    ("two_documents", b"{}{}"),
    ("lone_surrogate_key", b'{"\\ud800": 1}'),
    ("invalid_utf8_key", b'{"\xff": 1}'),
]
JSON_ROUTES = [CHAT, COMPLETIONS, EMBEDDINGS, LOAD, UNLOAD, SCHEDULER, VARIANT]


def bad_json_cases() -> list[Case]:
    # msgspec skips unknown keys without checking their UTF-8: to load/unload, whose fields are all
    # optional, {"\xff": 1} is "{}" (the default model), a valid request
    cases = [
        Case(f"bad_json:{route}:{name}", "POST", route, body)
        for route in JSON_ROUTES
        for name, body in BAD_JSON
        if not (name == "invalid_utf8_key" and route in (LOAD, UNLOAD))
    ]
    # an empty body is "{}" for load/unload (the default model); everywhere else it is a 400
    cases += [
        Case(f"bad_json:{route}:empty", "POST", route, b"", 400)
        for route in (CHAT, COMPLETIONS, EMBEDDINGS, SCHEDULER, VARIANT)
    ]
    return cases
