"""Shared by the OpenAI request tests: JSON bodies, parse shortcuts, and the refusal check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mullama.core.errors import InvalidArgument
from mullama.http.openai import format as oa

USER = [{"role": "user", "content": "hi"}]


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def chat(**fields: Any) -> oa.Job:
    return oa.parse_chat(body(**{"messages": USER, **fields}))


def completion(**fields: Any) -> oa.Job:
    return oa.parse_completion(body(**{"prompt": "Once", **fields}))


def rejects(parse, raw: bytes, param: str | None, fragment: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        parse(raw)
    exc = info.value
    assert exc.status == 400 and exc.type == "invalid_request_error"
    assert exc.param == param, str(exc)
    assert fragment.lower() in str(exc).lower(), str(exc)
    return exc
