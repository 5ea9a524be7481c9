"""Connections before they are requests: a cap on how many are open, a deadline for a request's head,
and accept errors that cannot flood the log.

aiohttp holds any connection that has not sent a whole request head for its keep-alive timeout (75 s),
and has no cap: 1000 clients sending one header line every 10 s were all held, and 21,000 ran the
process out of file descriptors (then asyncio logged a traceback per failed accept). ``Gate`` wraps
each of aiohttp's protocol objects (built by the server's own factory) and adds:

* ``max_connections``: when the cap is reached, a new connection first makes room by closing the
  oldest connection still without a whole head after ``EVICT_AFTER_S`` (``408``): slow clients make
  room for fast ones, so a slowloris cannot lock real clients out for a whole ``header_timeout``.
  With nothing to close, it is answered ``503`` (the API's JSON error shape, ``Retry-After``) as soon
  as it sends its first bytes, then closed; one that sends nothing is closed after
  ``REFUSED_GRACE_S``. Its request never reaches aiohttp.
* ``header_timeout``: from the moment a connection opens to the end of its first request head
  (``\\r\\n\\r\\n``); a connection that has not finished it gets ``408`` and is closed. Later requests
  on a kept-alive connection are bounded by aiohttp's keep-alive timeout.
* ``JsonErrors``: what aiohttp cannot parse (a URL or header line over 8190 bytes, a malformed request
  line) is answered in the API's JSON error shape — 414 for a URL, 431 for a header, else 400 — where
  aiohttp writes plain text and logs a traceback; here one log line.
* ``limit_accept_errors``: the loop's exception handler logs a failed ``accept()`` (out of file
  descriptors) once per ``ACCEPT_LOG_EVERY_S`` with a count, and passes everything else on.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

import msgspec
import structlog
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("mullama.app")

ACCEPT_LOG_EVERY_S = 10.0
EVICT_AFTER_S = 1.0         # at the cap, a connection without a whole head this old makes room for a new one
REFUSED_GRACE_S = 1.0       # a refused connection that sends nothing holds its descriptor this long at most
FD_RESERVE = 256            # descriptors kept for runners, model files, logs: the cap stays below the limit
_HEAD_END = b"\r\n\r\n"


def _response(status: int, reason: str, message: str, type_: str, code: str, retry_after: int | None) -> bytes:
    body = msgspec.json.encode({"error": {"message": message, "type": type_, "param": None, "code": code}})
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Connection: close"]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


BUSY = _response(503, "Service Unavailable", "too many open connections; retry shortly", "server_error",
                 "too_many_connections", 1)
SLOW_HEAD = _response(408, "Request Timeout", "the request head did not arrive in time", "invalid_request_error",
                      "header_timeout", None)


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(wanted: int, fd_limit: int) -> int:
    """``max_connections``, lowered so that the connections leave ``FD_RESERVE`` descriptors free."""
    return max(1, min(wanted, fd_limit - FD_RESERVE))


def _parse_error(status: int, exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, message) for a request aiohttp could not parse."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else ""
        text = bytes(line).decode(errors="replace") if isinstance(line, (bytes, bytearray)) else str(line)
        if text.startswith("/"):  # llhttp hands over the URL it gave up on; a header line starts with its name
            return 414, "uri_too_long", "the URL is too long (at most 8190 bytes)"
        return 431, "header_too_long", "a request header is too long (at most 8190 bytes)"
    if status >= 500:
        return status, "server_error", "the server could not handle this request"
    return status, "bad_request", f"malformed HTTP request: {getattr(exc, 'message', None) or exc or 'bad request'}"


class JsonErrors(RequestHandler):
    """aiohttp's protocol, answering requests it cannot parse in the API's JSON error shape."""

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: the answer has begun, the connection is broken
            raise ConnectionError("response already started; cannot send the error")
        status, code, text = _parse_error(status, exc)
        log.info("bad_http_request", status=status, code=code, error=str(exc or message)[:200])
        body = {"error": {"message": text, "type": "invalid_request_error" if status < 500 else "server_error",
                          "param": None, "code": code}}
        resp = web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")
        resp.force_close()
        return resp


class Guard:
    """The connection counts and limits shared by every listening socket of one server."""

    def __init__(self, *, max_connections: int, header_timeout: float) -> None:
        self.server: web.Server | None = None  # aiohttp's, once the runner is set up
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open = 0
        self.refused = 0
        self.head_timeouts = 0                   # closed with 408: late, or made room for a newer connection
        self.awaiting: dict[Gate, float] = {}    # admitted, first head not complete yet -> when opened (in order)
        self._last_refusal_log = 0.0

    def __call__(self) -> Gate:
        """The protocol factory for ``loop.create_server``."""
        return Gate(self)

    def make_room(self) -> bool:
        """At the cap: close the oldest connection whose head is overdue by ``EVICT_AFTER_S``; False if none."""
        if not self.awaiting:
            return False
        gate, opened = next(iter(self.awaiting.items()))
        if time.monotonic() - opened < min(EVICT_AFTER_S, self.header_timeout):
            return False
        gate.head_late()
        return True

    def refusing(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= ACCEPT_LOG_EVERY_S:
            self._last_refusal_log = now
            log.warning("connections_refused", open=self.open, max_connections=self.max_connections,
                        refused_total=self.refused)


class Gate(asyncio.Protocol):
    """One connection: refused past the cap, closed when its first head is late, else aiohttp's."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.handler: asyncio.Protocol | None = None   # aiohttp's, once admitted
        self.transport: asyncio.Transport | None = None
        self._tail = b""                                 # the last bytes seen while the head is incomplete
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        if self.guard.open >= self.guard.max_connections and not self.guard.make_room():
            self.guard.refusing()
            # answered at its first bytes (read first: closing unread data would reset it), or closed soon
            self._deadline = loop.call_later(min(REFUSED_GRACE_S, self.guard.header_timeout), self.head_late)
            return
        self._deadline = loop.call_later(self.guard.header_timeout, self.head_late)
        self.guard.awaiting[self] = time.monotonic()
        server = self.guard.server
        assert server is not None
        self.guard.open += 1
        # web.Server.__call__ with our class: its own loop and handler arguments (protected, stable since 3.0)
        self.handler = JsonErrors(server, loop=server._loop, **server._kwargs)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            self._close_with(BUSY)
            return
        if self._deadline is not None:
            seen = self._tail + data
            if _HEAD_END in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
                self.guard.awaiting.pop(self, None)
            else:
                self._tail = seen[-3:]
        self.handler.data_received(data)

    def head_late(self) -> None:
        """Its head is overdue (the deadline, or the guard making room): 408, or 503 if never admitted."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.awaiting.pop(self, None)
        if self.handler is not None:
            self.guard.head_timeouts += 1
        self._close_with(SLOW_HEAD if self.handler is not None else BUSY)

    def _close_with(self, response: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(response)
        self.transport.close()

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.awaiting.pop(self, None)
        if self.handler is not None:
            self.guard.open -= 1
            handler, self.handler = self.handler, None
            handler.connection_lost(exc)
        self.transport = None


class GuardedSite(web.SockSite):
    """``web.SockSite`` whose connections go through the ``Guard``."""

    def __init__(self, runner: web.AppRunner, sock: Any, guard: Guard, **kw: Any) -> None:
        super().__init__(runner, sock, **kw)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (SockSite.start minus its server)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._guard, sock=self._sock, backlog=self._backlog)


def limit_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """A failed ``accept()`` (EMFILE/ENFILE/ENOBUFS/ENOMEM: asyncio retries after a second) is logged once
    per ``ACCEPT_LOG_EVERY_S``, with how many there were, instead of a traceback each."""
    state = {"last": 0.0, "count": 0}

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "accept" not in str(context.get("message", "")):
            lp.default_exception_handler(context)
            return
        state["count"] += 1
        now = time.monotonic()
        if now - state["last"] >= ACCEPT_LOG_EVERY_S:
            state["last"] = now
            log.error("accept_failed", error=str(context.get("exception")), failures=state["count"],
                      detail="out of file descriptors or memory; lower max_connections or raise the limit")
            state["count"] = 0

    loop.set_exception_handler(handler)
