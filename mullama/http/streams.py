"""Writing a streamed answer with a deadline, so that a client that stops reading cannot hold a slot;
and in as few sends as the runner's answer allows.

Each write of a streamed answer (SSE or NDJSON) may wait for the client for at most
``stream_write_timeout``. The socket's send buffer and the loop's write buffer are bounded
(``SEND_BUFFER``, ``WRITE_BUFFER``) so that "waiting for the client" means something: on loopback the
kernel would otherwise autotune the send buffer to 4 MiB, minutes of tokens that a client that never
reads would seem to take; now a client may fall about 48 KiB behind before its deadline starts. Past
it the connection is aborted and ``ConnectionResetError`` ends the handler the way a client that hung
up does: the runner stream is closed (the runner cancels the request), the lease and the scheduler slot
go back, and the event ``client_stalled`` says why.

Each send wakes the client, and on a machine whose cores decode that costs tokens: so the headers and
the opening event go out with the first frame (as llama-server answers a stream once its first result
is there), frames of runner lines that arrived together go out in one send, and the last ones with the
closing events and the body's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from mullama.serving.generation import Generation

SEND_BUFFER = 16 << 10   # bytes (the kernel doubles it); a token stream needs a few KB/s: 32 KiB in flight
WRITE_BUFFER = 16 << 10  # bytes the event loop keeps for the socket before a write waits


class _HeadersWithBody(web.StreamResponse):
    """A streamed response whose headers go out with its first bytes, not at ``prepare`` (aiohttp >= 3.11;
    an older aiohttp sends them at ``prepare``, which is only one send more)."""

    _send_headers_immediately = False


class DeadlineWriter:
    """``write`` / ``write_eof`` of one streamed response, each bounded by ``timeout`` seconds. ``hold``
    keeps bytes for the next send; a ``write`` while ``ready()`` (more of the answer has arrived) holds too."""

    def __init__(self, request: web.Request, resp: web.StreamResponse, run: Generation, timeout: float,
                 ready: Callable[[], bool] = lambda: False) -> None:
        self._request, self._resp, self._run, self._timeout, self._ready = request, resp, run, timeout, ready
        self._held: list[bytes] = []
        sock = request.transport.get_extra_info("socket") if request.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        if request.transport is not None:
            request.transport.set_write_buffer_limits(high=WRITE_BUFFER)

    @classmethod
    async def open(cls, request: web.Request, run: Generation, ready: Callable[[], bool],
                   headers: Mapping[str, str]) -> DeadlineWriter:
        """A streamed response to ``request`` (``.response``), prepared; ``ready``: the runner stream's."""
        resp = _HeadersWithBody(headers=headers)
        await resp.prepare(request)
        return cls(request, resp, run, run.sup.settings.stream_write_timeout, ready)

    @property
    def response(self) -> web.StreamResponse:
        return self._resp

    def hold(self, data: bytes) -> None:
        self._held.append(data)

    async def write(self, data: bytes) -> None:
        if self._ready():
            self._held.append(data)
            return
        if self._held:
            data = b"".join((*self._held, data))
            self._held.clear()
        if data:
            await self._bounded(self._resp.write(data))

    async def write_eof(self, data: bytes = b"") -> None:
        if self._held:
            data = b"".join((*self._held, data))
            self._held.clear()
        await self._bounded(self._resp.write_eof(data))

    async def _bounded(self, write: Awaitable[None]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await write
        except TimeoutError:
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            self._run.client_stalled(self._timeout)
            raise ConnectionResetError(f"the client read nothing for {self._timeout:g} s") from None
