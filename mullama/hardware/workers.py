"""What an RPC worker offers, asked over llama.cpp's own RPC protocol (no C++ extension needed).

A worker (``mullama rpc-worker``, or the pinned llama.cpp's ``rpc-server``) serves one client at a time:
while a runner holds it, a new connection waits in its accept queue. So ``probe`` answers "busy" when
the handshake does not come back within the timeout, and the supervisor never probes a worker one of
its own runners holds. The messages are ggml-rpc.cpp's (protocol 7.x, little-endian, packed):

    request:  | command (1 byte) | payload size (u64) | payload |
    response: | payload size (u64) | payload |

HELLO (14) carries 24 bytes of transport capabilities (zeros: plain TCP) and answers major, minor,
patch, padding and 24 bytes of capabilities; DEVICE_COUNT (15) answers a u32; GET_DEVICE_MEMORY (11)
takes a u32 device and answers free and total as u64.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from dataclasses import dataclass

from mullama.hardware.devices import RemoteDevice

PROTO_MAJOR = 7          # RPC_PROTO_MAJOR_VERSION of the pinned ggml-rpc.h (a test reads the header)
_HELLO, _DEVICE_COUNT, _GET_DEVICE_MEMORY = 14, 15, 11
_CAPS = 24               # RPC_CONN_CAPS_SIZE


@dataclass(frozen=True)
class Worker:
    """One probe's answer. ``state``: "ok", "busy" (serving another client), "unreachable", "incompatible"."""

    endpoint: str
    state: str
    error: str = ""
    rtt_ms: float = 0.0      # the handshake's round trip (connect excluded)
    version: str = ""
    devices: tuple[RemoteDevice, ...] = ()
    probed_at: float = 0.0   # time.time()

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def describe(self) -> dict:
        return {"endpoint": self.endpoint, "state": self.state, "error": self.error, "rtt_ms": round(self.rtt_ms, 3),
                "version": self.version, "probed_at": self.probed_at,
                "devices": [{"index": d.index, "free": d.free, "total": d.total} for d in self.devices]}


class _Closed(Exception):
    pass


async def _call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: int, payload: bytes,
                expect: int) -> bytes:
    writer.write(struct.pack("<BQ", cmd, len(payload)) + payload)
    await writer.drain()
    try:
        (size,) = struct.unpack("<Q", await reader.readexactly(8))
        if size != expect:
            raise _Closed(f"answered {size} bytes to command {cmd}, expected {expect}")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise _Closed("closed the connection") from None


async def probe(endpoint: str, timeout: float = 2.0) -> Worker:
    """Reachable? Which protocol, devices, free memory, round-trip time. Never raises."""
    host, _, port = endpoint.rpartition(":")
    now = time.time()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        if isinstance(exc, TimeoutError):
            why = f"no answer within {timeout:g} s"
        elif isinstance(exc, ConnectionRefusedError):
            why = "connection refused: nothing listens there"
        else:
            why = str(exc)
        return Worker(endpoint, "unreachable", why, probed_at=now)
    try:
        start = time.perf_counter()
        try:
            hello = await asyncio.wait_for(_call(reader, writer, _HELLO, bytes(_CAPS), 4 + _CAPS), timeout)
        except TimeoutError:
            return Worker(endpoint, "busy", "it accepted the connection but serves another client", probed_at=now)
        rtt = (time.perf_counter() - start) * 1000
        major, minor, patch = hello[0], hello[1], hello[2]
        version = f"{major}.{minor}.{patch}"
        if major != PROTO_MAJOR:
            return Worker(endpoint, "incompatible", f"RPC protocol {version}, this build speaks {PROTO_MAJOR}.x "
                          "(run the same mullama version on every host)", rtt, version, probed_at=now)
        (count,) = struct.unpack("<I", await asyncio.wait_for(_call(reader, writer, _DEVICE_COUNT, b"", 4), timeout))
        devices = []
        for index in range(count):
            answer = await asyncio.wait_for(
                _call(reader, writer, _GET_DEVICE_MEMORY, struct.pack("<I", index), 16), timeout)
            free, total = struct.unpack("<QQ", answer)
            devices.append(RemoteDevice(endpoint=endpoint, index=index, free=free, total=total))
        return Worker(endpoint, "ok", "", rtt, version, tuple(devices), now)
    except (OSError, _Closed, TimeoutError) as exc:
        return Worker(endpoint, "unreachable", str(exc) or type(exc).__name__, probed_at=now)
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()
