"""Shared by the supervisor-through-the-``openai``-SDK tests (``test_supervisor_openai*.py``): the
prompts, one real ``mullama serve`` per test module serving SmolLM2 in two variants (family "smollm2":
"q4_1" bundled and default, "q8_0" made by ``q8_variant()``), sync and async SDK clients, and checks.

``server`` and ``client`` (module scope) and ``aclient`` (per test) are fixtures: a test module imports them.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from supervisor_harness import Server, base_settings, q8_variant

DEFAULT = "smollm2:q4_1"
Q8 = "smollm2:q8_0"
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
STORY = [{"role": "user", "content": "Tell me a story about a dragon."}]
#: an instruction SmolLM2 answers with a short, closed JSON object well inside 24 tokens
JSON_PROMPT = [{"role": "user", "content": 'Reply with JSON: {"name": "Tom", "ok": true}'}]
SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"}},
          "required": ["name", "ok"], "additionalProperties": False}
#: ~3000 tokens: more than the runner's whole 2048-token context (a slot may use all of it: the KV cache is
#: unified across the 4 slots)
TOO_LONG = "apple " * 3000
SETTLE_S = 10.0
#: well under the ~15 s the disconnect test's generation would take if nothing cancelled it
DISCONNECT_SETTLE_S = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    q8_variant()
    srv = Server(tmp_path_factory.mktemp("supervisor-openai"), base_settings())
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture
async def aclient(server: Server):
    """Per test: the async client's connections belong to the test's own event loop."""
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                                  timeout=120) as c:
        yield c


# ---------------------------------------------------------------------- helpers


def _check_usage(usage: Any, max_tokens: int, finish: str | None) -> None:
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= max_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if finish == "length":
        assert usage.completion_tokens == max_tokens


def _raw_post(server: Server, path: str, data: bytes,
              content_type: str = "application/json") -> tuple[int, Any]:
    """POST bytes as they are (the harness's ``call`` always sends valid JSON)."""
    req = urllib.request.Request(server.url + path, data=data, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _in_flight(server: Server) -> dict[str, int]:
    status, body = server.call("GET", "/api/ps")
    assert status == 200, body
    return {row["name"]: row["in_flight"] for row in body["models"]}


def _wait_idle(server: Server, timeout: float = SETTLE_S) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _in_flight(server)
        if not any(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def _decode_b64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
