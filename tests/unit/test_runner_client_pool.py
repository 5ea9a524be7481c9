"""A whole streamed answer gives its connection back to the pool; a stream given up early closes it.

Before, every completion closed its connection after the final line (the chunked body's end was never
read), so each request opened a new TCP connection to the runner: +3 ms p50 per request here.
"""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer

from mullama import wire
from mullama.runners.client import RunnerClient


def _stats() -> wire.CompletionStats:
    values = {}
    for f in msgspec.structs.fields(wire.CompletionStats):
        if f.required:
            values[f.name] = "" if f.type is str else 0
    return wire.CompletionStats(**values)


def fake_runner(seen: list[int], lines: int = 3, hold: asyncio.Event | None = None,
                end_after: float = 0.05) -> web.Application:
    async def completion(request: web.Request) -> web.StreamResponse:
        seen.append(request.transport.get_extra_info("peername")[1])
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(lines):
            await resp.write(wire.encoder.encode(wire.CompletionChunk(id="r", content=f"t{i}", tokens=[i])) + b"\n")
        if hold is not None:
            await hold.wait()
        final = wire.CompletionFinal(id="r", content="", tokens=[], finish_reason="length", stats=_stats())
        await resp.write(wire.encoder.encode(final) + b"\n")
        await asyncio.sleep(end_after)  # as a real runner can: the body's end comes in a later write than the final line
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/completion", completion)
    return app


async def test_sequential_answers_share_one_connection():
    seen: list[int] = []
    async with TestServer(fake_runner(seen)) as server, aiohttp.ClientSession() as session:
        client = RunnerClient(session, str(server.make_url("")).rstrip("/"), "t")
        for _ in range(4):
            stream = await client.completion(wire.CompletionRequest(prompt="x"))
            events = [ev async for _, ev in stream]
            assert isinstance(events[-1], wire.CompletionFinal) and len(events) == 4
    assert len(seen) == 4 and len(set(seen)) == 1, seen


async def test_a_stream_given_up_early_closes_its_connection():
    seen: list[int] = []
    hold = asyncio.Event()
    async with TestServer(fake_runner(seen, hold=hold)) as server, aiohttp.ClientSession() as session:
        client = RunnerClient(session, str(server.make_url("")).rstrip("/"), "t")
        stream = await client.completion(wire.CompletionRequest(prompt="x"))
        async for _, ev in stream:
            assert isinstance(ev, wire.CompletionChunk)
            break  # the caller stops reading: the runner must see the connection go
        stream.close()
        hold.set()
        stream = await client.completion(wire.CompletionRequest(prompt="x"))
        assert isinstance([ev async for _, ev in stream][-1], wire.CompletionFinal)
    assert len(seen) == 2 and seen[0] != seen[1], seen


async def test_a_body_that_does_not_end_costs_only_the_connection(monkeypatch):
    from mullama.runners import client as client_mod

    monkeypatch.setattr(client_mod, "END_TIMEOUT_S", 0.05)
    seen: list[int] = []
    async with TestServer(fake_runner(seen, end_after=1.0)) as server, aiohttp.ClientSession() as session:
        client = RunnerClient(session, str(server.make_url("")).rstrip("/"), "t")
        for _ in range(2):
            stream = await client.completion(wire.CompletionRequest(prompt="x"))
            assert isinstance([ev async for _, ev in stream][-1], wire.CompletionFinal)
        assert not client.broken
    assert len(seen) == 2 and seen[0] != seen[1], seen
