"""Hostile input against one real ``mullama serve``: the corpus of ``tests/data/malformed_corpus.py``
(bad JSON, wrong types, missing fields, huge and negative numbers, unknown models and path escapes,
unicode edge cases, oversized bodies, prompts longer than the context, invalid JSON schemas and GBNF
grammars, wrong methods, broken HTTP) over every JSON route.

Every malformed case must get its 4xx in OpenAI's error shape, never a 5xx; odd-but-valid unicode
must be served. Between batches ``/health`` must answer, and at the end the model's runner must be the
one from the start (same pid, no crash recorded) and the supervisor must have logged no unhandled
exception. The server runs with small limits (``LIMITS``, ``N_CTX``) so the "too big" cases are cheap;
cases go out four at a time, each worker on its own kept-alive connection.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from supervisor_harness import Server, assert_openai_error, base_settings, q8_variant

_spec = importlib.util.spec_from_file_location(
    "malformed_corpus", Path(__file__).resolve().parents[1] / "data" / "malformed_corpus.py"
)
corpus = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("malformed_corpus", corpus)  # dataclasses look their module up there
_spec.loader.exec_module(corpus)  # type: ignore[union-attr]

CASES = corpus.cases()
WORKERS = 4
BATCH = 100
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    q8_variant()  # a second variant of the family: the variant route has something to name
    settings = base_settings(
        threads=1, threads_batch=1, n_ctx=corpus.N_CTX, n_parallel=1, keep_alive="1h", **corpus.LIMITS
    )
    srv = Server(tmp_path_factory.mktemp("malformed"), settings)
    try:
        yield srv
    finally:
        srv.stop()


class _Client:
    """One kept-alive connection per thread; a connection the server closed (413, parser errors) is
    opened again on the next request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        return conn

    def _drop(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
        self.local.conn = None

    def send(self, case) -> tuple[int, bytes]:
        if case.raw:
            return self._raw(case.body)
        headers = {"Content-Type": "application/json", **case.headers}
        chunked = headers.get("Transfer-Encoding") == "chunked"
        body: Any = case.body
        if chunked:
            headers.pop("Transfer-Encoding")
            body = iter([case.body[i : i + 8192] for i in range(0, len(case.body), 8192)])
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(
                    case.method, case.path, body=body or None, headers=headers, encode_chunked=chunked
                )
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.HTTPException):
                self._drop()  # a kept-alive connection the server had closed: one more try on a fresh one
                if attempt == 2:
                    raise
                if chunked:
                    body = iter([case.body[i : i + 8192] for i in range(0, len(case.body), 8192)])
                continue
            if resp.getheader("Connection", "").lower() == "close":
                self._drop()
            return resp.status, data
        raise AssertionError("unreachable")

    def _raw(self, request: bytes) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            data = b""
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
                    data += chunk
        line = data.split(b"\r\n", 1)[0].split()
        assert len(line) >= 2 and line[0].startswith(b"HTTP/"), data[:200]
        return int(line[1]), data.split(b"\r\n\r\n", 1)[-1]


def _problem(case, status: int, raw: bytes) -> str | None:
    """What is wrong with the answer to ``case``, or None."""
    if status >= 500:
        return f"server error {status}: {raw[:300]!r}"
    if case.expect == "4xx":
        if not 400 <= status < 500:
            return f"expected a 4xx, got {status}: {raw[:200]!r}"
    elif status != case.expect:
        return f"expected {case.expect}, got {status}: {raw[:200]!r}"
    if case.raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return f"not JSON ({status}): {raw[:200]!r}"
    if status >= 400:
        try:
            assert_openai_error(body)
        except AssertionError as exc:
            return f"not OpenAI's error shape: {exc}"
    elif case.path == corpus.CHAT and body.get("object") != "chat.completion":
        return f"not a chat completion: {raw[:200]!r}"
    return None


def _health(server: Server) -> None:
    status, body = server.call("GET", "/health", timeout=10)
    assert (status, body) == (200, {"status": "ok"})


def _runner(server: Server) -> tuple[int, int]:
    status, body = server.call("GET", "/internal/models")
    assert status == 200, body
    (model,) = [m for m in body["models"] if m["name"] == "smollm2:q4_1"]
    return model["pid"], model["crashes"]


def test_corpus_is_big_enough() -> None:
    assert sum(1 for c in CASES if c.wants_4xx) >= 200
    covered = {c.path.split("?")[0] for c in CASES}
    for route in (
        corpus.CHAT,
        corpus.COMPLETIONS,
        corpus.EMBEDDINGS,
        corpus.LOAD,
        corpus.UNLOAD,
        corpus.SCHEDULER,
        corpus.VARIANT,
        "/internal/events",
    ):
        assert route in covered, route


def test_malformed_requests_get_4xx_and_nothing_breaks(server: Server) -> None:
    status, body = server.call("POST", corpus.CHAT, {"messages": corpus.HI, "max_tokens": 1})
    assert status == 200, body  # the model is loaded: cases reach the runner where they can
    pid, crashes = _runner(server)
    assert pid and not crashes
    client = _Client(server.port)
    problems: dict[str, str] = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        for start in range(0, len(CASES), BATCH):
            batch = CASES[start : start + BATCH]
            for case, (status, raw) in zip(batch, pool.map(client.send, batch)):
                if (problem := _problem(case, status, raw)) is not None:
                    problems[case.name] = problem
            _health(server)
    assert not problems, "\n".join(f"{name}: {why}" for name, why in problems.items())
    assert server.proc.poll() is None
    assert _runner(server) == (pid, 0), "the runner was replaced or crashed"
    assert not server.events("unhandled"), server.events("unhandled")
    status, body = server.call("POST", corpus.CHAT, {"messages": corpus.HI, "max_tokens": 1})
    assert status == 200, body


@pytest.mark.parametrize("keep_alive", [1e308, "99999999999d", 2**63])
def test_absurd_keep_alive_means_forever(server: Server, keep_alive) -> None:
    """A keep-alive too long to be a date (1e308 s) once made every later /api/ps a 500."""
    try:
        status, body = server.call("POST", "/api/load", {"model": "smollm2:q4_1", "keep_alive": keep_alive})
        assert status == 200, body
        status, body = server.call(
            "POST", corpus.CHAT, {"messages": corpus.HI, "max_tokens": 1, "keep_alive": keep_alive}
        )
        assert status == 200, body
        status, ps = server.call("GET", "/api/ps")
        assert status == 200, ps
        (row,) = [r for r in ps["models"] if r["name"] == "smollm2:q4_1"]
        assert row["expires_at"] is None and row["until"] == "forever"
    finally:
        server.call("POST", "/api/load", {"model": "smollm2:q4_1", "keep_alive": "1h"})


def test_prompt_longer_than_a_tiny_n_ctx_but_within_the_slot_is_served(tmp_path) -> None:
    """n_ctx under llama.cpp's 256-token floor: the slot holds 256 tokens while llama.cpp caps n_batch at the
    n_ctx asked for, so a 129..255-token prompt once failed mid-generation with a 500 ("batch of N tokens
    exceeds n_batch"). The runner now clamps n_batch to n_ctx as llama.cpp does."""
    srv = Server(tmp_path, base_settings(threads=1, threads_batch=1, n_ctx=128, n_parallel=1))
    try:
        messages = [{"role": "user", "content": " hello" * 150}]
        status, body = srv.call("POST", corpus.CHAT, {"messages": messages, "max_tokens": 2})
        assert status == 200, body
        assert body["usage"]["prompt_tokens"] > 128
        status, body = srv.call("POST", corpus.CHAT, {"messages": messages * 2, "max_tokens": 2})
        assert status == 400 and assert_openai_error(body)["code"] == "context_length_exceeded", body
    finally:
        srv.stop()
