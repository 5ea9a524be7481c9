"""Async client for one runner's localhost API (``docs/runner-protocol.md``).

Errors the runner answers with come back as the same typed errors
(``mullama.core.errors``) by their ``type``; a lost connection is ``RunnerCrashed``.
Completion streams hand out each NDJSON line raw *and* decoded, so the
supervisor can forward without re-encoding what it does not change.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import TypeVar

import aiohttp
import msgspec

from mullama import wire
from mullama.core import errors

T = TypeVar("T", bound=msgspec.Struct)

_HTTP_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)
END_TIMEOUT_S = 5.0  # after the final line, how long the body's end may take before the connection is dropped
MAX_LINE_BYTES = 64 << 20  # one event line of a completion stream (a final with a long answer is ~100s of KB)
#: runner error ``type`` -> class, for the errors the supervisor treats specially
_BY_TYPE: dict[str, type[errors.MullamaError]] = {
    "context_length_exceeded": errors.ContextOverflow,
    "queue_full": errors.QueueFull,
    "insufficient_memory": errors.OutOfMemory,
    "invalid_state": errors.InvalidState,
    "unavailable": errors.NotReady,
    "not_found_error": errors.RequestNotFound,
    "invalid_model_error": errors.InvalidModelFile,
    "cancelled": errors.OperationAborted,
}
_FINAL_MARK = b'"done":true'


def _error_from(status: int, body: bytes) -> errors.MullamaError:
    try:
        detail = wire.decode(body, wire.ErrorBody).error
    except (msgspec.ValidationError, msgspec.DecodeError):
        return errors.RunnerError(f"runner answered {status}: {body[:300].decode(errors='replace')}", 502)
    cls = _BY_TYPE.get(detail.type)
    if cls is not None:
        return cls(detail.message)
    if status == 400:
        return errors.InvalidArgument(detail.message)
    return errors.RunnerError(detail.message, status, detail.type)


class CompletionStream:
    """``async for raw, event in stream``: each NDJSON line and its decoded chunk/final.

    ``close()`` before the final event drops the connection, which makes the runner cancel the request;
    after it, the connection goes back to the session's pool. A stream that
    breaks off marks its client ``broken`` (the lifecycle counts the requests a crash took down).
    ``ready()`` says whether what follows needs no wait for the runner: the next line has arrived already,
    or the answer is whole (a writer may then hold what it has for one send).
    """

    def __init__(self, resp: aiohttp.ClientResponse, client: RunnerClient | None = None) -> None:
        self._resp = resp
        self._client = client
        self._ready: collections.deque[bytes] = collections.deque()
        self.final: wire.CompletionFinal | None = None

    def __aiter__(self) -> AsyncIterator[tuple[bytes, wire.CompletionChunk | wire.CompletionFinal]]:
        return self._lines()

    def ready(self) -> bool:
        return bool(self._ready) or self.final is not None

    async def _lines(self) -> AsyncIterator[tuple[bytes, wire.CompletionChunk | wire.CompletionFinal]]:
        rest, chunks, more = b"", aiter(self._resp.content.iter_any()), True
        try:
            while more:  # what has arrived, split here (MAX_LINE_BYTES); at the end, a line without its newline
                data = await anext(chunks, b"")
                more = bool(data)
                *lines, rest = (rest + data).split(b"\n") if more else (rest, b"")
                if len(rest) > MAX_LINE_BYTES:  # a runner gone wrong must not grow this without bound
                    raise errors.RunnerError(f"the runner sent an event line over {MAX_LINE_BYTES} bytes; "
                                             "the request was cancelled", 502, "runner_protocol")
                self._ready.extend(line for line in lines if line.strip())
                while self._ready:
                    line = self._ready.popleft()
                    if _FINAL_MARK in line:
                        self.final = wire.decode(line, wire.CompletionFinal)
                        self._ready.clear()
                        if not self._resp.content.at_eof():  # the runner sends the end with the final line
                            await self._read_to_end()
                        yield line, self.final
                        return
                    yield line, wire.decode(line, wire.CompletionChunk)
        except _HTTP_ERRORS as exc:
            self._broke()
            raise errors.RunnerCrashed(f"the runner's stream broke off: {type(exc).__name__}: {exc}") from None
        finally:
            self.close()
        if self.final is None:
            self._broke()
            raise errors.RunnerCrashed("the runner's stream ended without a final event")

    async def _read_to_end(self) -> None:
        """The body's end, when it did not come with the final line: read, the connection goes back to the
        pool instead of a new TCP connection for the next request. The answer is whole already, so a runner
        that does not end the body in time, or a connection that breaks now, only costs the reuse."""
        try:
            async with asyncio.timeout(END_TIMEOUT_S):
                await self._resp.content.read()
        except (*_HTTP_ERRORS, TimeoutError):
            pass

    def _broke(self) -> None:
        if self._client is not None:
            self._client.broken = True

    def close(self) -> None:
        """A whole answer lets the connection go back to the pool; anything else closes it (a runner sees a
        request given up as the connection closing)."""
        if self.final is not None and self._resp.content.at_eof():
            self._resp.release()
        elif not self._resp.closed:
            self._resp.close()


class RunnerClient:
    """Requests to one runner; shares the caller's aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._session = session
        self.base_url = base_url
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.broken = False  # a completion stream broke off: the runner is most likely gone

    async def _call(self, method: str, path: str, body: msgspec.Struct | None, kind: type[T],
                    timeout: float | None = 30.0) -> T:
        data = wire.encoder.encode(body) if body is not None else None
        try:
            async with self._session.request(method, self.base_url + path, data=data, headers=self._headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise _error_from(resp.status, raw)
                return wire.decode(raw, kind)
        except _HTTP_ERRORS as exc:
            raise errors.RunnerCrashed(f"runner at {self.base_url} unreachable: {type(exc).__name__}: {exc}") from None
        except TimeoutError:  # a frozen runner (SIGSTOP, a hung syscall): a typed error, never a bare timeout
            raise errors.RunnerError(f"the model's runner did not answer {method} {path} within {timeout:g} s",
                                     504, "runner_timeout") from None

    async def health(self, timeout: float = 5.0) -> wire.Health:
        return await self._call("GET", "/health", None, wire.Health, timeout)

    async def load(self, params: wire.LoadParams, timeout: float | None = None) -> wire.LoadResult:
        return await self._call("POST", "/load", params, wire.LoadResult, timeout)

    async def completion(self, req: wire.CompletionRequest) -> CompletionStream:
        """Start a streaming completion; errors before the first byte raise here."""
        try:
            resp = await self._session.post(self.base_url + "/completion", data=wire.encoder.encode(req),
                                            headers=self._headers, timeout=aiohttp.ClientTimeout(total=None))
        except _HTTP_ERRORS as exc:
            raise errors.RunnerCrashed(f"runner at {self.base_url} unreachable: {type(exc).__name__}: {exc}") from None
        if resp.status != 200:
            try:
                raw = await resp.read()
            except _HTTP_ERRORS:
                raw = b""
            finally:
                resp.release()
            raise _error_from(resp.status, raw)
        return CompletionStream(resp, self)

    async def embedding(self, inputs: str | list[str]) -> wire.EmbeddingResult:
        return await self._call("POST", "/embedding", wire.EmbeddingRequest(input=inputs), wire.EmbeddingResult,
                                None)

    async def count(self, req: wire.CompletionRequest) -> int:
        """The size of ``req``'s prompt as a completion would evaluate it; nothing is generated."""
        return (await self._call("POST", "/count", req, wire.CountResult)).prompt_tokens

    async def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        req = wire.TokenizeRequest(content=text, add_special=add_special)
        return (await self._call("POST", "/tokenize", req, wire.TokenizeResult)).tokens

    async def detokenize(self, tokens: list[int]) -> str:
        req = wire.DetokenizeRequest(tokens=tokens)
        return (await self._call("POST", "/detokenize", req, wire.DetokenizeResult)).content

    async def control(self, op: str, rid: str) -> bool:
        """``cancel`` / ``pause`` / ``resume`` one request."""
        return (await self._call("POST", f"/{op}", wire.ControlRequest(id=rid), wire.ControlResult)).ok

    async def kv(self, timeout: float = 30.0) -> wire.KvView:
        return await self._call("GET", "/kv", None, wire.KvView, timeout)

    async def stats(self) -> wire.StatsView:
        return await self._call("GET", "/stats", None, wire.StatsView)

    async def set_cpu(self, allotment: wire.CpuAllotment) -> wire.CpuAllotment:
        return await self._call("POST", "/cpu", allotment, wire.CpuAllotment, timeout=60.0)

    async def cache_ram(self, limit: int | None = None) -> wire.CacheRam:
        """The runner's cache limit and the bytes held; with ``limit``, set it first (waits for it to apply)."""
        if limit is None:
            return await self._call("GET", "/cache-ram", None, wire.CacheRam, timeout=5.0)
        return await self._call("POST", "/cache-ram", wire.CacheRam(limit=limit), wire.CacheRam, timeout=60.0)

    async def adapters(self) -> list[wire.AdapterInfo]:
        return await self._call("GET", "/adapters", None, list[wire.AdapterInfo])

    async def add_adapter(self, spec: wire.AdapterSpec) -> wire.AdapterInfo:
        return await self._call("POST", "/adapters", spec, wire.AdapterInfo, None)  # waits for a decode step

    async def remove_adapter(self, adapter_id: int) -> list[wire.AdapterInfo]:
        """Unload one; the adapters left."""
        return await self._call("DELETE", f"/adapters/{adapter_id}", None, list[wire.AdapterInfo])
