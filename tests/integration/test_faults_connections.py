"""Connections that never become requests (issue 16): slowloris, connection floods, unparseable heads.

A real ``mullama serve`` (no model is loaded: these are all about the HTTP server in front). Raw sockets
send request heads one line at a time and never finish them; more connections arrive than the cap
allows; URLs and headers are longer than the parser takes. The server must cut the slow ones at
``header_timeout`` (408), refuse the excess with a JSON 503 at once, answer what it cannot parse in the
API's JSON error shape, log one line per burst (never a traceback per connection), keep answering
``/health``, and give its memory back.
"""

from __future__ import annotations

import json
import socket
import time

import psutil
import pytest
from supervisor_harness import Server, base_settings

CAP = 40
HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"   # never finished: no blank line


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path, base_settings(max_connections=CAP, header_timeout="1s"))
    yield srv
    srv.stop()


def _answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict]:
    """The status and JSON body the server wrote before closing (b"" read = closed)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _rss(server: Server) -> int:
    return psutil.Process(server.proc.pid).memory_info().rss


def test_slow_heads_are_cut_and_connections_past_the_cap_refused(server):
    server.call("GET", "/health")
    rss0 = _rss(server)
    total_late = total_refused = 0
    for _ in range(3):
        t0 = time.monotonic()
        socks = []
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", server.port)))
            socks[-1].sendall(HEAD)
        counts: dict[tuple[int, str], int] = {}
        for s in socks:
            status, body = _answer(s)
            key = (status, body["error"]["code"])
            counts[key] = counts.get(key, 0) + 1
            s.close()
        # CAP connections at a time were served until their head was late (more than CAP when the first
        # were cut before the last connected); the rest were refused at their first bytes
        late, refused = counts.pop((408, "header_timeout"), 0), counts.pop((503, "too_many_connections"), 0)
        assert not counts and late + refused == 300 and late >= CAP and refused >= 300 - 3 * CAP, (late, refused)
        total_late, total_refused = total_late + late, total_refused + refused
        assert time.monotonic() - t0 < 10
        assert server.call("GET", "/health", timeout=10) == (200, {"status": "ok"})
    # memory back to where it was (900 connections later), within a few MiB
    assert _rss(server) - rss0 < 16 << 20, (rss0, _rss(server))
    status, text = server.call("GET", "/metrics")
    assert status == 200
    assert f"mullama_http_connections_refused_total {total_refused}.0" in text
    assert f"mullama_http_header_timeouts_total {total_late}.0" in text
    # a burst is logged once in a while, with counts; never a traceback
    assert 1 <= len(server.events("connections_refused")) <= 3
    assert not [line for line in server.lines if "Traceback" in line]


def test_a_slow_client_cannot_hold_a_connection_open_by_dripping_headers(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    t0 = time.monotonic()
    sock.sendall(HEAD)
    status = None
    for _ in range(20):  # one header line every 0.3 s, forever
        try:
            time.sleep(0.3)
            sock.sendall(b"X-Drip: 1\r\n")
        except OSError:
            break
    status, body = _answer(sock)
    assert status == 408 and body["error"]["type"] == "invalid_request_error"
    assert time.monotonic() - t0 < 3 * 1.0 + 1
    sock.close()


def test_a_client_that_connects_and_sends_nothing_is_closed_at_the_deadline(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    t0 = time.monotonic()
    status, body = _answer(sock)
    assert (status, body["error"]["code"]) == (408, "header_timeout")
    assert 0.8 < time.monotonic() - t0 < 5
    sock.close()


@pytest.mark.parametrize("raw, status, code", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "uri_too_long"),
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "header_too_long"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", 400, "bad_request"),
])
def test_requests_the_parser_cannot_take_get_json_errors(server, raw, status, code):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(raw)
    got, body = _answer(sock)
    assert (got, body["error"]["code"]) == (status, code), body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    sock.close()
    assert server.call("GET", "/health")[0] == 200
    assert not [line for line in server.lines if "Traceback" in line]


def test_at_the_cap_slow_connections_make_room_for_a_fast_one(tmp_path):
    """20 slow heads fill a cap of 20 for a header_timeout of 30 s; a client with a whole request still
    gets its answer: the oldest slow connection (over a second without its head) is cut to make room."""
    srv = Server(tmp_path, base_settings(max_connections=20, header_timeout="30s"))
    try:
        slow = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]
        for s in slow:
            s.sendall(HEAD)
        time.sleep(1.5)
        t0 = time.monotonic()
        assert srv.call("GET", "/health", timeout=10) == (200, {"status": "ok"})
        assert time.monotonic() - t0 < 2
        status, body = _answer(slow[0])  # the oldest was cut
        assert (status, body["error"]["code"]) == (408, "header_timeout")
        for s in slow:
            s.close()
    finally:
        srv.stop()
