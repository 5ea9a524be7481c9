"""The CLI's HTTP verbs against a tiny in-process aiohttp server with canned answers (real port, own
thread): tables, errors as one line, SSE streaming, the interactive loop, MULLAMA_HOST parsing."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from mullama import cli_client
from mullama.cli_client import ClientError, Server, parse_host

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


# ---------------------------------------------------------------------- address parsing


@pytest.mark.parametrize("value, url", [
    (None, "http://127.0.0.1:8080"),
    ("", "http://127.0.0.1:8080"),
    ("   ", "http://127.0.0.1:8080"),
    ("example.com", "http://example.com:8080"),
    ("example.com:9000", "http://example.com:9000"),
    ("10.1.2.3", "http://10.1.2.3:8080"),
    ("0.0.0.0", "http://127.0.0.1:8080"),
    ("0.0.0.0:9000", "http://127.0.0.1:9000"),
    (":9000", "http://127.0.0.1:9000"),
    ("http://example.com", "http://example.com:80"),
    ("https://example.com", "https://example.com:443"),
    ("https://example.com:8443/", "https://example.com:8443"),
    ("HTTP://Example.com:81", "http://Example.com:81"),
    ("http://0.0.0.0:81", "http://127.0.0.1:81"),
    ("http://example.com:81/proxy/mullama/", "http://example.com:81/proxy/mullama"),
    ("[::1]:8081", "http://[::1]:8081"),
    ("[::1]", "http://[::1]:8080"),
    ("::1", "http://[::1]:8080"),
    ("::", "http://[::1]:8080"),
    ("[::]:9000", "http://[::1]:9000"),
    ("https://[fe80::1]:9443", "https://[fe80::1]:9443"),
])
def test_parse_host(value: str | None, url: str) -> None:
    assert parse_host(value).url == url


@pytest.mark.parametrize("value, words", [
    ("ftp://example.com", "scheme"),
    ("example.com:0", "port"),
    ("example.com:65536", "port"),
    ("example.com:http", "port"),
    ("example.com:", "port"),
    ("example.com:８０", "port"),     # full-width digits are not a port
    ("[::1", "IPv6"),
    ("[::1]8080", "IPv6"),
])
def test_parse_host_refuses(value: str, words: str) -> None:
    with pytest.raises(ClientError, match=words):
        parse_host(value)


def test_parse_host_parts() -> None:
    assert parse_host("https://[::1]:9/x") == Server("https", "::1", 9, "/x")


def test_host_flag_beats_env(fake: tuple[Fake, str], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _, url = fake
    monkeypatch.setenv("MULLAMA_HOST", f"127.0.0.1:{closed_port()}")
    assert main(["--host", url, "ps"]) == 0
    assert "smollm2:q8_0" in capsys.readouterr().out


def test_bad_host_is_one_line(capsys) -> None:
    assert main(["--host", "ftp://x", "ps"]) == 1
    assert one_line(capsys.readouterr().err).startswith("mullama: invalid server address 'ftp://x'")


# ---------------------------------------------------------------------- failures


@pytest.mark.parametrize("argv", [["ps"], ["list"], ["show", "m"], ["stop", "m"], ["run", "m", "hi"]])
def test_unreachable_server_is_one_line(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    port = closed_port()
    monkeypatch.setenv("MULLAMA_HOST", f"127.0.0.1:{port}")
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert one_line(err) == (f"mullama: cannot reach the server at http://127.0.0.1:{port} "
                             "(connection refused) — start it with 'mullama serve'")


NOT_FOUND = "mullama: model 'missing' not found (HTTP 404 model_not_found)"


@pytest.mark.parametrize("argv", [["show", "missing"], ["stop", "missing"], ["run", "missing", "hi"],
                                  ["run", "missing", "hi", "--no-stream"],
                                  ["run", "missing", "hi", "--json"]])
def test_error_answer_is_one_line(argv: list[str], fake: tuple[Fake, str], capsys) -> None:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert one_line(err) == NOT_FOUND


def test_non_json_error_answer(fake: tuple[Fake, str], capsys) -> None:
    fake[0].ps_status = 502
    assert main(["ps"]) == 1
    assert one_line(capsys.readouterr().err) == "mullama: HTTP 502 Bad Gateway: upstream exploded"


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b""])
def test_answer_that_is_not_an_object(raw: bytes, fake: tuple[Fake, str], capsys) -> None:
    fake[0].ps_raw = raw
    assert main(["ps"]) == 1
    assert one_line(capsys.readouterr().err) == (f"mullama: the server at {fake[1]} answered /api/ps with "
                                                 "something unexpected (not a JSON object)")


def test_ctrl_c_exits_130(fake: tuple[Fake, str], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def interrupted(*_: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_client, "_answer", interrupted)
    assert main(["run", "m", "hi"]) == 130
    assert capsys.readouterr() == ("", "\n")


@pytest.mark.parametrize("raw, line", [
    (b'{"error": {"message": "boom", "type": "server_error", "code": "x1"}}', "boom (HTTP 500 x1)"),
    (b'{"error": {"message": "boom", "type": "server_error"}}', "boom (HTTP 500 server_error)"),
    (b'{"error": {"message": "", "type": null}}', "Internal Server Error (HTTP 500)"),
    (b'{"error": "plain words"}', "plain words (HTTP 500)"),
    (b'{"detail": "no"}', 'HTTP 500 Internal Server Error: {"detail": "no"}'),
    (b"", "HTTP 500 Internal Server Error"),
    (b"[1, 2]", "HTTP 500 Internal Server Error: [1, 2]"),
])
def test_error_line(raw: bytes, line: str) -> None:
    assert cli_client._error_line(500, "Internal Server Error", raw) == line


def test_api_key_is_sent_as_bearer(fake: tuple[Fake, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULLAMA_API_KEY", "sekrit")
    assert main(["ps"]) == 0
    assert fake[0].requests[-1][2]["Authorization"] == "Bearer sekrit"


def test_no_api_key_no_header(fake: tuple[Fake, str]) -> None:
    assert main(["ps"]) == 0
    assert "Authorization" not in fake[0].requests[-1][2]


# ---------------------------------------------------------------------- ps / list / show / stop


def test_ps_plain_table(fake: tuple[Fake, str], capsys) -> None:
    second = {**PS_ROW, "name": "qwen:q4_k_m", "pid": None, "port": None, "until": "", "state": "loading",
              "size": 3 * 2**30}
    fake[0].ps_rows = [PS_ROW, second]
    assert main(["ps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "STATE", "PID", "PORT"]
    assert lines[1].split("   ")[0].strip() == "smollm2:q8_0"
    assert "200.0 MiB" in lines[1] and "100% CPU" in lines[1] and "4 minutes from now" in lines[1]
    assert lines[1].split()[-3:] == ["ready", "4242", "40001"]
    assert lines[2].split()[-3:] == ["loading", "-", "-"] and "3.0 GiB" in lines[2]
    # columns line up: every header starts where its cells start
    start = lines[0].index("STATE")
    assert lines[1][start:].startswith("ready") and lines[2][start:].startswith("loading")


def test_ps_empty_is_header_only(fake: tuple[Fake, str], capsys) -> None:
    fake[0].ps_rows = []
    assert main(["ps"]) == 0
    assert capsys.readouterr().out == "NAME   ID   SIZE   PROCESSOR   CONTEXT   UNTIL   STATE   PID   PORT\n"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_table_on_a_terminal_uses_rich() -> None:
    out = Tty()
    row = ("smollm2:q8_0", "abc", "1 KiB", None, 1, "", "ready", 1, 2)
    cli_client.print_table(cli_client.PS_COLUMNS, [row], out)
    text = out.getvalue()
    assert "\x1b[" in text                                 # styled
    for word in (*cli_client.PS_COLUMNS, "smollm2:q8_0", "ready"):
        assert word in text


@pytest.mark.parametrize("verb", ["list", "ls"])
def test_list(verb: str, fake: tuple[Fake, str], capsys) -> None:
    assert main([verb]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "QUANT", "PARAMS", "CONTEXT", "SOURCE", "ERROR"]
    assert lines[1].split() == ["smollm2:q8_0", "0123456789ab", "145.0", "MiB", "Q8_0", "135M", "8192",
                                "models_dir", "-"]
    assert lines[2].split(maxsplit=3)[:2] == ["junk:latest", "ba5eba11ba5e"]
    assert lines[2].endswith("not a GGUF file (bad magic)")
    assert err == "mullama: warning: models directory /nope does not exist\n"


def test_show_text(fake: tuple[Fake, str], capsys) -> None:
    assert main(["show", "smollm2:q8_0"]) == 0
    out = capsys.readouterr().out
    for expected in ("architecture       llama", "parameters         135M (134,515,008)",
                     "quantization       Q8_0", "context length     8192", "layers             30",
                     "embedding length   576", "heads              9", "kv heads           3",
                     "chat template      yes", "path     /models/smollm2.Q8_0.gguf", "size     145.0 MiB",
                     "source   models_dir", "keep_alive     5 minutes", "n_ctx          4096",
                     "tensor_split   -", "pinned         no"):
        assert expected in out, expected
    assert "Metadata" not in out and "llama.block_count" not in out


def test_show_metadata(fake: tuple[Fake, str], capsys) -> None:
    assert main(["show", "smollm2:q8_0", "--metadata"]) == 0
    out = capsys.readouterr().out
    assert "  Metadata" in out
    assert "general.architecture   llama" in out and "llama.block_count      30" in out


def test_show_json(fake: tuple[Fake, str], capsys) -> None:
    assert main(["show", "smollm2:q8_0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "smollm2:q8_0" and info["metadata"]["llama.block_count"] == 30


def test_show_broken_model_text() -> None:
    text = cli_client.show_text(BROKEN)
    assert "error   not a GGUF file (bad magic)" in text
    assert "architecture" not in text and "Config" not in text


@pytest.mark.parametrize("model, line", [("loaded", "stopped loaded"), ("idle", "idle was not loaded")])
def test_stop(model: str, line: str, fake: tuple[Fake, str], capsys) -> None:
    assert main(["stop", model]) == 0
    assert capsys.readouterr().out == line + "\n"
    assert fake[0].requests[-1][:2] == ("POST", "/api/unload")
    assert fake[0].requests[-1][3] == {"model": model}


# ---------------------------------------------------------------------- run


def chat_requests(fake: Fake) -> list[dict[str, Any]]:
    return [body for method, path, _, body in fake.requests if path == "/v1/chat/completions"]


def test_run_one_shot_streams(fake: tuple[Fake, str], capsys) -> None:
    argv = ["run", "smollm2", "say", "hi", "--system", "be brief", "--max-tokens", "7",
            "--temperature", "0.5", "--seed", "3", "--keep-alive", "10m"]
    assert main(argv) == 0
    assert capsys.readouterr() == ("Hello <say hi>\n", "")
    assert chat_requests(fake[0]) == [{
        "model": "smollm2", "stream": True, "max_tokens": 7, "temperature": 0.5, "seed": 3,
        "keep_alive": "10m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi"}]}]
    assert fake[0].requests[-1][2]["Accept"] == "text/event-stream"


@pytest.mark.parametrize("argv", [
    ["run", "--seed", "3", "smollm2", "say", "hi", "--json"],
    ["run", "smollm2", "--seed", "3", "--json", "say", "hi"],
    ["run", "smollm2", "say", "--seed=3", "hi", "--json"],
    ["run", "--json", "smollm2", "say", "hi", "--seed", "3"],
])
def test_run_options_anywhere(argv: list[str], fake: tuple[Fake, str], capsys) -> None:
    assert main(argv) == 0
    assert chat_requests(fake[0]) == [{"model": "smollm2", "stream": False, "seed": 3,
                                       "messages": [{"role": "user", "content": "say hi"}]}]
    assert json.loads(capsys.readouterr().out)["choices"][0]["message"]["content"] == "re: say hi"


def test_run_unknown_option_is_a_usage_error(fake: tuple[Fake, str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "smollm2", "hi", "--bogus"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert chat_requests(fake[0]) == []


@pytest.mark.parametrize("argv, stdin, model, prompt", [
    (["run", "smollm2"], "piped words\n", "smollm2", "piped words\n"),
    (["run", "smollm2", "-"], "from dash", "smollm2", "from dash"),
    (["run", "-"], "default model", "", "default model"),
    (["run"], "no model", "", "no model"),
])
def test_run_prompt_from_stdin(argv: list[str], stdin: str, model: str, prompt: str, fake: tuple[Fake, str],
                               monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(argv) == 0
    body = chat_requests(fake[0])[0]
    assert body["model"] == model and body["messages"] == [{"role": "user", "content": prompt}]
    assert capsys.readouterr().out.startswith("Hello")


def test_run_empty_stdin_is_refused(fake: tuple[Fake, str], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    assert main(["run", "m"]) == 1
    assert one_line(capsys.readouterr().err) == "mullama: the prompt on standard input is empty"
    assert chat_requests(fake[0]) == []


def test_run_no_stream(fake: tuple[Fake, str], capsys) -> None:
    assert main(["run", "m", "hello", "--no-stream"]) == 0
    assert capsys.readouterr().out == "re: hello\n"
    assert chat_requests(fake[0])[0]["stream"] is False


def test_run_json(fake: tuple[Fake, str], capsys) -> None:
    assert main(["run", "m", "hello", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["choices"][0]["message"]["content"] == "re: hello"
    assert chat_requests(fake[0])[0]["stream"] is False


def test_run_error_mid_stream(fake: tuple[Fake, str], capsys) -> None:
    assert main(["run", "boom", "hi"]) == 1
    out, err = capsys.readouterr()
    assert out == "Hello <hi>"                                   # what came before the error stays
    assert one_line(err) == "mullama: generation failed: runner crashed (server_error)"


def test_run_stream_cut_short(fake: tuple[Fake, str], capsys) -> None:
    assert main(["run", "truncated", "hi"]) == 1
    assert "ended the answer early" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------------- interactive chat


class Lines:
    """Stands in for input(): returns the lines, then raises what ``end`` says."""

    def __init__(self, *lines: str | type[BaseException], end: type[BaseException] = EOFError) -> None:
        self.lines, self.end, self.prompts = list(lines), end, []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise self.end
        line = self.lines.pop(0)
        if isinstance(line, type):
            raise line
        return line


def chat_args(model: str = "smollm2", **extra: Any) -> argparse.Namespace:
    args = parse(["run", model])
    vars(args).update(extra)
    return args


def test_chat_keeps_history_and_clears(fake: tuple[Fake, str]) -> None:
    client = cli_client.client_for(chat_args())
    read = Lines("first", "", "second", "/clear", "third", "/bye", "never read")
    out = io.StringIO()
    system = [{"role": "system", "content": "sys"}]
    assert cli_client.chat(client, chat_args(), system, read=read, out=out) == 0
    bodies = chat_requests(fake[0])
    assert [[m["content"] for m in b["messages"]] for b in bodies] == [
        ["sys", "first"], ["sys", "first", "Hello <first>", "second"], ["sys", "third"]]
    assert read.prompts == [">>> "] * 6 and read.lines == ["never read"]
    assert "Hello <first>\n" in out.getvalue() and "cleared the conversation" in out.getvalue()
    assert fake[0].requests[0][1] == "/api/load"   # loaded before the first prompt


def test_chat_eof_exits(fake: tuple[Fake, str]) -> None:
    out = io.StringIO()
    args = chat_args()
    assert cli_client.chat(cli_client.client_for(args), args, [], read=Lines("hi"), out=out) == 0
    assert out.getvalue().endswith("Hello <hi>\n\n")


def test_chat_ctrl_c_at_prompt_continues(fake: tuple[Fake, str]) -> None:
    out = io.StringIO()
    read = Lines(KeyboardInterrupt, "hi", "/bye")
    assert cli_client.chat(cli_client.client_for(chat_args()), chat_args(), [], read=read, out=out) == 0
    assert "Use Ctrl-D or /bye to exit." in out.getvalue()
    assert len(chat_requests(fake[0])) == 1


class InterruptOnce(io.StringIO):
    """Raises KeyboardInterrupt on the first streamed token, as Ctrl-C while an answer prints."""

    def __init__(self) -> None:
        super().__init__()
        self.fired = False

    def write(self, text: str) -> int:
        if text == "Hel" and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return super().write(text)


def test_chat_ctrl_c_stops_the_answer_and_drops_the_turn(fake: tuple[Fake, str]) -> None:
    out = InterruptOnce()
    read = Lines("stopped", "again", "/bye")
    assert cli_client.chat(cli_client.client_for(chat_args()), chat_args(), [], read=read, out=out) == 0
    bodies = chat_requests(fake[0])
    assert [[m["content"] for m in b["messages"]] for b in bodies] == [["stopped"], ["again"]]
    assert "Hello <again>" in out.getvalue()


def test_chat_error_reports_and_goes_on(fake: tuple[Fake, str], capsys) -> None:
    out = io.StringIO()
    args = chat_args("boom")
    assert cli_client.chat(cli_client.client_for(args), args, [], read=Lines("a", "b"), out=out) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["mullama: generation failed: runner crashed (server_error)"] * 2
    assert [len(b["messages"]) for b in chat_requests(fake[0])] == [1, 1]    # failed turns are not kept


def test_chat_unknown_model_fails_before_the_prompt(fake: tuple[Fake, str], monkeypatch: pytest.MonkeyPatch,
                                                    capsys) -> None:
    class TtyIn(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", TtyIn())
    assert main(["run", "missing"]) == 1
    assert one_line(capsys.readouterr().err) == NOT_FOUND
