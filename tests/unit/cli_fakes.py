"""Shared by the CLI client tests: a tiny in-process aiohttp server with canned answers (real port, own
thread) as the ``fake`` fixture (a test module takes it with ``fake = cli_fakes.fake``), and helpers."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from mullama.cli import client as cli_client

PS_ROW = {"name": "smollm2:q8_0", "model": "smollm2:q8_0", "id": "0123456789ab", "digest": "0123456789ab",
          "size": 200 * 2**20, "size_vram": 0, "processor": "100% CPU", "context_length": 4096,
          "expires_at": "2026-01-01T00:00:00+00:00", "until": "4 minutes from now", "state": "ready",
          "progress": 1.0, "pid": 4242, "port": 40001, "in_flight": 0, "n_parallel": 4, "pinned": False,
          "details": {"format": "gguf", "family": "smollm2", "parameter_size": "135M",
                      "quantization_level": "Q8_0"}}
GOOD = {"name": "smollm2:q8_0", "family": "smollm2", "variant": "q8_0", "id": "0123456789ab",
        "path": "/models/smollm2.Q8_0.gguf", "parts": ["/models/smollm2.Q8_0.gguf"], "size": 145 * 2**20,
        "modified": 1.7e9, "source": "models_dir", "error": None, "architecture": "llama",
        "parameters": 134515008, "parameters_label": "135M", "quantization": "Q8_0", "context_length": 8192,
        "n_layer": 30, "n_embd": 576, "n_head": 9, "n_head_kv": 3, "has_chat_template": True,
        "state": "ready"}
BROKEN = {"name": "junk:latest", "family": "junk", "variant": "latest", "id": "ba5eba11ba5e",
          "path": "/models/junk.gguf", "parts": [], "size": 12, "modified": 1.7e9, "source": "models_dir",
          "error": "not a GGUF file (bad magic)", "state": "discovered"}


class Fake:
    """Canned answers; ``requests`` records (method, path, headers, json body) of each call."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.ps_rows: list[dict[str, Any]] = [PS_ROW]
        self.ps_status = 200
        self.ps_raw: bytes | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append((request.method, request.path, dict(request.headers), body))
        route = (request.method, request.path)
        if route == ("GET", "/api/ps"):
            if self.ps_status != 200:
                return web.Response(status=self.ps_status, text="upstream exploded\nsecond line")
            if self.ps_raw is not None:
                return web.Response(body=self.ps_raw, content_type="application/json")
            return web.json_response({"models": self.ps_rows})
        if route == ("POST", "/api/unload"):
            if body["model"] == "missing":
                return _error(404, "model 'missing' not found", "model_not_found")
            return web.json_response({"model": body["model"], "was": "ready" if body["model"] == "loaded"
                                      else "discovered", "state": "unloaded"})
        if route == ("GET", "/api/models"):
            return web.json_response({"models": [GOOD, BROKEN], "default": "smollm2:q8_0",
                                      "dir_errors": ["models directory /nope does not exist"]})
        if request.method == "GET" and request.path.startswith("/api/models/"):
            name = request.path.removeprefix("/api/models/")
            if name != GOOD["name"]:
                return _error(404, f"model {name!r} not found", "model_not_found")
            return web.json_response({**GOOD, "metadata": {"general.architecture": "llama",
                                                           "llama.block_count": 30},
                                      "config": {"n_ctx": 4096, "keep_alive": 300.0, "pinned": False,
                                                 "tensor_split": []}})
        if route == ("POST", "/api/load"):
            if body["model"] == "missing":
                return _error(404, "model 'missing' not found", "model_not_found")
            return web.json_response({**PS_ROW, "model": body["model"] or "smollm2:q8_0", "load_ms": 1.0})
        if route == ("POST", "/v1/chat/completions"):
            return await self.chat(request, body)
        return _error(404, "no such route", "not_found_error")

    async def chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = body.get("model")
        if model == "missing":
            return _error(404, "model 'missing' not found", "model_not_found")
        last = body["messages"][-1]["content"]
        if not body.get("stream"):
            message = {"role": "assistant", "content": f"re: {last}"}
            return web.json_response({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                                      "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                                                                 "message": message}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(obj: Any) -> None:
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
            delta = {} if content is None else {"content": content}
            return {"id": "c", "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]}

        await resp.write(b": a comment line\n\n")
        await event({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for piece in ("Hel", "lo", f" <{last}>"):
            await event(chunk(piece))
        if model == "boom":
            await event({"error": {"message": "generation failed: runner crashed", "type": "server_error",
                                   "param": None, "code": None}})
            await resp.write_eof()
            return resp
        if model == "truncated":
            await resp.write_eof()
            return resp
        # a multi-line data field is one event (joined with "\n"): still valid JSON
        await resp.write(b'data: {"choices": [{"index": 0,\n'
                         b'data: "delta": {}, "finish_reason": "stop"}]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _error(status: int, message: str, type_: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": None, "code": None}},
                             status=status)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Fake, str]]:
    """A running fake server and its URL; MULLAMA_HOST points at it."""
    fake = Fake()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MULLAMA_HOST", url)
    monkeypatch.delenv("MULLAMA_API_KEY", raising=False)
    yield fake, url
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    loop.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mullama")
    parser.add_argument("--host", default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (cli_client.add_ps, cli_client.add_stop, cli_client.add_list, cli_client.add_show,
                cli_client.add_run):
        add(sub)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    return args.func(args)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


NOT_FOUND = "mullama: model 'missing' not found (HTTP 404 model_not_found)"
