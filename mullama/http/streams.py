"""Writing a streamed answer with a deadline, so that a client that stops reading cannot hold a slot.

Each write of a streamed answer (SSE or NDJSON) may wait for the client for at most
``stream_write_timeout``. The socket's send buffer and the loop's write buffer are bounded
(``SEND_BUFFER``, ``WRITE_BUFFER``) so that "waiting for the client" means something: on loopback the
kernel would otherwise autotune the send buffer to 4 MiB, minutes of tokens that a client that never
reads would seem to take; now a client may fall about 48 KiB behind before its deadline starts. Past it the connection is aborted and ``ConnectionResetError`` ends the
handler the way a client that hung up does: the runner stream is closed (the runner cancels the
request), the lease and the scheduler slot go back, and the event ``client_stalled`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable

from aiohttp import web

from mullama.serving.generation import Generation

SEND_BUFFER = 16 << 10   # bytes (the kernel doubles it); a token stream needs a few KB/s: 32 KiB in flight
WRITE_BUFFER = 16 << 10  # bytes the event loop keeps for the socket before a write waits


class DeadlineWriter:
    """``write`` / ``write_eof`` of one streamed response, each bounded by ``timeout`` seconds."""

    def __init__(self, request: web.Request, resp: web.StreamResponse, run: Generation, timeout: float) -> None:
        self._request, self._resp, self._run, self._timeout = request, resp, run, timeout
        sock = request.transport.get_extra_info("socket") if request.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        if request.transport is not None:
            request.transport.set_write_buffer_limits(high=WRITE_BUFFER)

    async def write(self, data: bytes) -> None:
        await self._bounded(self._resp.write(data))

    async def write_eof(self, data: bytes = b"") -> None:
        await self._bounded(self._resp.write_eof(data))

    async def _bounded(self, write: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(write, self._timeout)
        except TimeoutError:
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            self._run.client_stalled(self._timeout)
            raise ConnectionResetError(f"the client read nothing for {self._timeout:g} s") from None
