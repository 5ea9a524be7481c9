"""The connection guard's pure parts: the cap under the fd limit, the JSON answers to unparseable
requests, and the accept-error log limiter (tests/integration/test_faults_connections.py drives it)."""

from __future__ import annotations

import asyncio
import json

import structlog
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from mullama.http import connections as conn


def test_the_cap_leaves_descriptors_for_everything_else():
    assert conn.connection_cap(1000, 20000) == 1000
    assert conn.connection_cap(1000, 1024) == 1024 - conn.FD_RESERVE
    assert conn.connection_cap(1000, 100) == 1  # never zero: the server must still answer someone


def test_unparseable_requests_map_to_statuses():
    assert conn._parse_error(400, LineTooLong(bytearray(b"/" + b"a" * 100), 8190))[:2] == (414, "uri_too_long")
    assert conn._parse_error(400, LineTooLong(b"X-Big: bbb", 8190))[:2] == (431, "header_too_long")
    status, code, message = conn._parse_error(400, BadHttpMessage("Invalid method encountered"))
    assert (status, code) == (400, "bad_request") and "Invalid method" in message
    assert conn._parse_error(500, RuntimeError("x"))[:2] == (500, "server_error")


def test_canned_answers_are_whole_http_responses_with_json_bodies():
    for raw, status in ((conn.BUSY, 503), (conn.SLOW_HEAD, 408)):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith(f"HTTP/1.1 {status} ")
        assert f"Content-Length: {len(body)}" in lines and "Connection: close" in lines
        assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}
    assert b"Retry-After: 1" in conn.BUSY


def test_accept_errors_are_logged_once_per_interval_with_a_count():
    loop = asyncio.new_event_loop()
    try:
        conn.limit_accept_errors(loop)
        passed_on: list[dict] = []
        loop.default_exception_handler = passed_on.append  # type: ignore[method-assign]
        with structlog.testing.capture_logs() as logs:
            for _ in range(1000):
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": OSError(24, "Too many open files")})
            loop.call_exception_handler({"message": "something else"})
        accepted = [e for e in logs if e["event"] == "accept_failed"]
        assert len(accepted) == 1 and accepted[0]["failures"] == 1
        assert passed_on == [{"message": "something else"}]
    finally:
        loop.close()
