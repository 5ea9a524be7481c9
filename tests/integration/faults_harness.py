"""Shared by the fault-tolerance tests (``test_faults*.py``): the two SmolLM2 variants, the process
checks ("no orphans": nothing of the server's process group left, no zombie under a live supervisor),
polling, OpenAI clients and recorded streams.

``_second_model`` (module scope, autouse: the q8_0 variant exists) and ``clients`` are fixtures: a test
module imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

import openai
import psutil
import pytest
from supervisor_harness import Server, q8_variant

Q4, Q8 = "smollm2:q4_1", "smollm2:q8_0"
ONE_THREAD = {"threads": 1, "threads_batch": 1}


@pytest.fixture(scope="module", autouse=True)
def _second_model():
    q8_variant()


# ---------------------------------------------------------------- helpers


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: it no longer runs); reaping between two checks is not a failure."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _group(server: Server) -> list[psutil.Process]:
    """Live processes of the server's process group other than the supervisor (its runners)."""
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if proc.pid != server.proc.pid and os.getpgid(proc.pid) == server.proc.pid \
                    and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc)
    return out


def _zombie_children(server: Server) -> list[int]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [c.pid for c in psutil.Process(server.proc.pid).children(recursive=True)
                if c.status() == psutil.STATUS_ZOMBIE]
    return []


async def _until(check: Callable[[], object], timeout: float, what: str, step: float = 0.05) -> object:
    """Poll ``check`` (sync) until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


@pytest.fixture
async def clients():
    """``clients(server)``: an OpenAI async client of the server, closed after the test."""
    made: list[openai.AsyncOpenAI] = []

    def make(server: Server) -> openai.AsyncOpenAI:
        made.append(openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300))
        return made[-1]

    yield make
    for client in made:
        await client.close()


def _chat(model: str, text: str = "Name a colour.", n: int = 8) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": n, "temperature": 0}


def _long(model: str, n: int = 2000) -> dict:
    return {**_chat(model, "Count from one to one thousand.", n), "stream": True, "extra_body": {"ignore_eos": True}}


def _ps(server: Server) -> list[dict]:
    status, body = server.call("GET", "/api/ps")
    assert status == 200, body
    return body["models"]


class _Stream:
    """One streamed chat completion, recorded: chunks seen, how it ended and when."""

    def __init__(self) -> None:
        self.chunks = 0
        self.first = asyncio.Event()
        self.error: BaseException | None = None
        self.finish: str | None = None
        self.ended = 0.0

    async def run(self, client: openai.AsyncOpenAI, body: dict) -> _Stream:
        try:
            stream = await client.chat.completions.create(**body)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    self.chunks += 1
                    self.first.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    self.finish = chunk.choices[0].finish_reason
        except openai.APIError as exc:
            self.error = exc
        self.ended = time.monotonic()
        return self


async def _start_streams(client: openai.AsyncOpenAI, body: dict, n: int, timeout: float = 120.0
                         ) -> tuple[list[_Stream], list[asyncio.Future]]:
    streams = [_Stream() for _ in range(n)]
    tasks = [asyncio.ensure_future(s.run(client, body)) for s in streams]
    await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), timeout)
    return streams, tasks
