"""Harness for the runner integration tests: real ``python -m mullama.runner``
subprocesses over the bundled SmolLM2, and small HTTP clients for them.

Imported by ``tests/integration/test_runner_*.py`` as ``runner_harness``.

* ``start_runner(workdir, *args)`` spawns a runner, reads the ``{"port","pid"}``
  line (bounded wait) and returns a ``Runner``; ``Runner.kill()`` (idempotent)
  ends it, and an ``atexit`` hook kills any runner a crashed fixture left behind.
* ``Runner.call()`` is a synchronous request (http.client, bounded timeout), for
  fixtures and process tests; ``Client`` is the aiohttp client for async tests.
* ``load_model(runner, ...)`` runs alloc + commit with the suite's settings
  (2 threads: the CI machine has 2 cores).

Every wait has a timeout: nothing here can hang the suite.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

TOKEN = "runner-test-token-3f9a"
N_THREADS = int(os.environ.get("MULLAMA_TEST_THREADS", "2"))  # the CI machine has 2 cores
REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0      # spawn -> first stdout line
LOAD_TIMEOUT = 180.0      # one /load op (the CI box is small and often busy)
HTTP_TIMEOUT = 300.0      # any other request, streams included (2 threads on a busy 2-core box are slow)

_live: list[subprocess.Popen] = []


def _kill_leftovers() -> None:
    for proc in _live:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


atexit.register(_kill_leftovers)


def model_path() -> str:
    from mullama.models.assets import default_model_path
    from mullama.core.errors import AssetError

    try:
        return str(default_model_path())
    except AssetError as exc:
        pytest.skip(f"SmolLM2 model not available: {exc}")


def runner_env(token: str | None = TOKEN, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MULLAMA_RUNNER_TOKEN", None)
    if token is not None:
        env["MULLAMA_RUNNER_TOKEN"] = token
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["GGML_NO_BACKTRACE"] = "1"
    env.update(extra)
    return env


def runner_cmd(*args: str, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "mullama.runner", "--host", host, "--port", "0", *args]


def read_line(stream, timeout: float) -> str:
    """One line from a pipe (binary, unbuffered reads), or TimeoutError."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line within {timeout} s (got {buf!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise EOFError(f"pipe closed before a full line (got {buf!r})")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode()


class Runner:
    """A runner subprocess: its port, pid, token and stderr (JSON log lines)."""

    def __init__(self, proc: subprocess.Popen, port: int, pid: int, token: str, stderr_path: Path) -> None:
        self.proc, self.port, self.pid, self.token, self.stderr_path = proc, port, pid, token, stderr_path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, token: str | None = "default") -> dict[str, str]:
        token = self.token if token == "default" else token
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             token: str | None = "default", timeout: float = HTTP_TIMEOUT) -> tuple[int, Any]:
        """Synchronous request; returns (status, parsed JSON or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = self.headers(token)
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(text)
        except json.JSONDecodeError:
            return resp.status, text

    def health(self) -> dict:
        status, body = self.call("GET", "/health", timeout=10)
        assert status == 200, body
        return body

    def load(self, op: str, expect: int | None = 200, **params: Any) -> tuple[int, dict]:
        status, body = self.call("POST", "/load", {"op": op, **params}, timeout=LOAD_TIMEOUT)
        if expect is not None:
            assert status == expect, f"/load {op}: {status} {body}"
        return status, body

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int:
        """Exit code, or raise subprocess.TimeoutExpired."""
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_runner(workdir: Path, *args: str, token: str = TOKEN, name: str = "runner") -> Runner:
    """Spawn ``python -m mullama.runner --host 127.0.0.1 --port 0 *args``; bounded wait for its port."""
    workdir.mkdir(parents=True, exist_ok=True)
    stderr_path = workdir / f"{name}-{time.monotonic_ns()}.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(runner_cmd(*args), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                env=runner_env(token), cwd=str(REPO_ROOT))
    _live.append(proc)
    try:
        first = json.loads(read_line(proc.stdout, START_TIMEOUT))
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"runner did not start; stderr:\n{stderr_path.read_text(errors='replace')[-3000:]}")
    assert set(first) == {"port", "pid"}, first
    assert first["pid"] == proc.pid
    return Runner(proc, int(first["port"]), int(first["pid"]), token, stderr_path)


@contextlib.contextmanager
def running(workdir: Path, *args: str, **kw: Any) -> Iterator[Runner]:
    runner = start_runner(workdir, *args, **kw)
    try:
        yield runner
    finally:
        runner.kill()


def load_params(**kw: Any) -> dict:
    """alloc parameters with the suite's defaults: SmolLM2, 2 threads, CPU only, n_ctx 4096."""
    params = {"model": model_path(), "n_ctx": 4096, "n_parallel": 8, "n_threads": N_THREADS,
              "n_threads_batch": N_THREADS, "n_gpu_layers": 0, "warmup": False}
    params.update(kw)
    return params


def load_model(runner: Runner, **kw: Any) -> None:
    """alloc + commit; the runner is ready afterwards."""
    runner.load("alloc", **load_params(**kw))
    runner.load("commit")
    assert runner.health()["status"] == "ready"


# ---------------------------------------------------------------- async client


def greedy(prompt: str, max_tokens: int = 16, **kw: Any) -> dict:
    """A greedy completion request body."""
    return {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, **kw}


class Client:
    """aiohttp client for one runner; every call has a bounded timeout."""

    def __init__(self, runner: Runner, token: str | None = "default", timeout: float = HTTP_TIMEOUT) -> None:
        self.runner = runner
        self.session = aiohttp.ClientSession(
            base_url=runner.base_url, headers=runner.headers(token),
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10),
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                      headers: dict | None = None) -> tuple[int, Any]:
        kw: dict[str, Any] = {"headers": headers} if headers else {}
        if data is not None:
            kw["data"] = data
        elif body is not None:
            kw["json"] = body
        async with self.session.request(method, path, **kw) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kw)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = await self.request(method, path, body)
        assert status == 200, f"{method} {path}: {status} {out}"
        return out

    async def health(self) -> dict:
        return await self.ok("GET", "/health")

    async def kv(self) -> dict:
        return await self.ok("GET", "/kv")

    async def stats(self) -> dict:
        return await self.ok("GET", "/stats")

    async def control(self, op: str, rid: str) -> tuple[int, Any]:
        return await self.post(f"/{op}", {"id": rid})

    async def complete(self, body: dict) -> dict:
        """Non-streaming completion; asserts 200."""
        return await self.ok("POST", "/completion", {**body, "stream": False})

    async def stream(self, body: dict) -> list[dict]:
        """Streaming completion read to the end; asserts 200; returns every NDJSON record."""
        async with self.open_stream(body) as records:
            return [rec async for rec in records]

    @contextlib.asynccontextmanager
    async def open_stream(self, body: dict) -> AsyncIterator[AsyncIterator[dict]]:
        """``async with client.open_stream(body) as records: async for rec in records``.

        Leaving the block early closes the connection (a client that goes away).
        """
        resp = await self.session.post("/completion", json={**body, "stream": True})
        try:
            if resp.status != 200:
                raise AssertionError(f"/completion: {resp.status} {await resp.text()}")
            assert resp.headers["Content-Type"].startswith("application/x-ndjson"), resp.headers
            yield _records(resp)
        finally:
            resp.close()


async def _records(resp: aiohttp.ClientResponse) -> AsyncIterator[dict]:
    while True:
        line = await resp.content.readline()
        if not line:
            return
        if line.strip():
            yield json.loads(line)


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05,
                     what: str = "condition") -> Any:
    """Poll ``check()`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- checks


def assert_error(status: int, body: Any, expect_status: int | tuple[int, ...], type_: str | None = None) -> dict:
    """The error shape ``{"error": {"type", "message"}}`` with the expected status; returns the detail."""
    wanted = (expect_status,) if isinstance(expect_status, int) else expect_status
    assert status in wanted, f"status {status} not in {wanted}: {body}"
    assert isinstance(body, dict) and set(body) == {"error"}, body
    detail = body["error"]
    assert set(detail) == {"type", "message"}, detail
    assert isinstance(detail["type"], str) and detail["type"]
    assert isinstance(detail["message"], str) and detail["message"]
    if type_ is not None:
        assert detail["type"] == type_, detail
    return detail


def split_stream(records: list[dict]) -> tuple[list[dict], dict]:
    """(chunks, final) of a streamed completion; checks the record shapes."""
    assert records, "empty stream"
    *chunks, final = records
    for c in chunks:
        assert set(c) == {"id", "content", "tokens"}, c
    assert final.get("done") is True, final
    assert {"id", "content", "tokens", "done", "finish_reason", "stats"} <= set(final), final
    ids = {r["id"] for r in records}
    assert len(ids) == 1, ids
    return chunks, final


def stream_text(records: list[dict]) -> str:
    return "".join(r["content"] for r in records)


def stream_tokens(records: list[dict]) -> list[int]:
    return [t for r in records for t in r["tokens"]]


def wait_gone(pid: int, timeout: float) -> bool:
    """True when ``pid`` has exited (or is a zombie) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- fixtures (import into a test module)


@pytest.fixture
async def client(runner: Runner) -> AsyncIterator[Client]:
    """An aiohttp client for the module's ``runner`` fixture."""
    async with Client(runner) as c:
        yield c
