"""A streamed answer in as few sends as the runner allows (each send wakes a process on cores that decode).

The runner client splits what has arrived into lines itself (up to 64 MiB a line) and says when more
follows without waiting; the supervisor's writer holds bytes while it does, so lines that arrived together
leave in one send and the headers go with the first bytes.
"""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mullama import wire
from mullama.http.streams import DeadlineWriter
from mullama.runners.client import RunnerClient


def _final(content: str = "") -> bytes:
    values = {f.name: ("" if f.type is str else 0) for f in msgspec.structs.fields(wire.CompletionStats) if f.required}
    return wire.encoder.encode(wire.CompletionFinal(id="r", content=content, tokens=[], finish_reason="length",
                                                    stats=wire.CompletionStats(**values)))


def _chunk(text: str) -> bytes:
    return wire.encoder.encode(wire.CompletionChunk(id="r", content=text, tokens=[1]))


def runner(sends: list[bytes]) -> web.Application:
    """A runner that writes ``sends`` as they are (line breaks wherever they fall), a pause between each."""
    async def completion(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for data in sends[:-1]:
            await resp.write(data)
            await asyncio.sleep(0.02)
        await resp.write_eof(sends[-1])
        return resp

    app = web.Application()
    app.router.add_post("/completion", completion)
    return app


async def _read(sends: list[bytes]) -> list[tuple[str, bool]]:
    """(content, ready() after it) of each event of the stream."""
    async with TestServer(runner(sends)) as server, aiohttp.ClientSession() as session:
        client = RunnerClient(session, str(server.make_url("")).rstrip("/"), "t")
        stream = await client.completion(wire.CompletionRequest(prompt="x"))
        return [(ev.content, stream.ready()) async for _, ev in stream]


async def test_lines_split_across_sends_and_several_in_one():
    a, b, c = _chunk("a"), _chunk("b"), _chunk("c")
    sends = [a[:5], a[5:] + b"\n" + b + b"\n" + c[:3], c[3:] + b"\n", _final("!") + b"\n"]
    assert await _read(sends) == [("a", True), ("b", False), ("c", False), ("!", True)]


async def test_a_final_line_without_its_newline_and_a_long_line():
    long = "x" * 300_000  # above aiohttp's readline limit (128 KiB): lines are split here
    assert await _read([_chunk(long) + b"\n", _final()]) == [(long, False), ("", True)]


async def test_a_line_over_the_limit_is_a_runner_error_and_cancels(monkeypatch):
    """A runner that never ends a line must not grow the supervisor's memory: past the limit the stream is a
    typed 502, and closing it drops the connection (the runner's signal to cancel)."""
    from mullama.core import errors
    from mullama.runners import client as client_mod

    monkeypatch.setattr(client_mod, "MAX_LINE_BYTES", 1000)
    try:
        await _read([_chunk("ok") + b"\n", b"x" * 600, b"x" * 600, _final() + b"\n"])
    except errors.RunnerError as exc:
        assert exc.status == 502 and exc.type == "runner_protocol" and "1000 bytes" in str(exc)
    else:
        raise AssertionError("no RunnerError")


async def test_a_stream_that_ends_without_a_final_is_a_crash():
    from mullama.core import errors

    try:
        await _read([_chunk("a") + b"\n"])
    except errors.RunnerCrashed as exc:
        assert "without a final event" in str(exc)
    else:
        raise AssertionError("no RunnerCrashed")


class _Resp:
    def __init__(self) -> None:
        self.sends: list[tuple[str, bytes]] = []

    async def write(self, data: bytes) -> None:
        self.sends.append(("write", data))

    async def write_eof(self, data: bytes = b"") -> None:
        self.sends.append(("eof", data))


class _Request:
    transport = None


async def test_the_writer_holds_while_more_is_ready_and_sends_the_rest_with_the_end():
    ready = [False]
    resp = _Resp()
    out = DeadlineWriter(_Request(), resp, None, 5.0, lambda: ready[0])  # type: ignore[arg-type]
    out.hold(b"open;")
    ready[0] = True
    await out.write(b"a;")
    await out.write(b"b;")
    assert resp.sends == []
    ready[0] = False
    await out.write(b"c;")
    await out.write(b"")  # nothing to send: no empty write
    ready[0] = True
    await out.write(b"d;")
    await out.write_eof(b"[DONE]")
    assert resp.sends == [("write", b"open;a;b;c;"), ("eof", b"d;[DONE]")]


class _Zeros:
    def __getattr__(self, name: str) -> int:
        return 0


def _event(text: str, done: bool = False):
    from types import SimpleNamespace

    return SimpleNamespace(id="r", text=text, done=done, tokens=[1], probs=[], finish_reason="length" if done else "",
                           stop_string="", error="", stats=_Zeros())


async def test_the_runner_sends_waiting_events_together_and_the_last_with_the_end():
    from mullama.runner import completion
    from mullama.runner.stream import Stream

    stream = Stream(["r"], None, cancel=lambda rid: None, on_closed=lambda ids: None)
    writes: list[bytes] = []

    async def write(data: bytes) -> None:
        writes.append(data)

    stream.queue.put_nowait(_event("a"))
    relay = asyncio.ensure_future(completion.relay(stream, write))
    await asyncio.sleep(0.01)
    assert len(writes) == 1 and writes[0].count(b"\n") == 1  # nothing else waited: sent alone
    for ev in (_event("b"), _event("c"), _event("!", done=True)):
        stream.queue.put_nowait(ev)
    finals, last = await relay
    assert len(writes) == 1 and len(finals) == 1
    lines = last.splitlines()  # b, c and the final: held for the body's end, one send
    assert len(lines) == 3 and b'"done":true' in lines[-1] and b'"content":"b"' in lines[0]


def test_aiohttp_still_has_the_switch_the_writer_turns():
    """``http/streams._HeadersWithBody`` sends a stream's headers with its first bytes by turning aiohttp's
    ``StreamResponse._send_headers_immediately`` off (aiohttp >= 3.11). An aiohttp without it would send them
    at ``prepare`` again, one send more and no error: this test says so on the upgrade."""
    from mullama.http.streams import _HeadersWithBody

    if tuple(int(x) for x in aiohttp.__version__.split(".")[:2]) < (3, 11):
        pytest.skip("aiohttp < 3.11 sends the headers at prepare (pyproject allows >= 3.9)")
    assert web.StreamResponse._send_headers_immediately is True
    assert _HeadersWithBody._send_headers_immediately is False
