"""The CLI's HTTP verbs: MULLAMA_HOST parsing, and failures (unreachable, HTTP errors) as one line."""

from __future__ import annotations

from typing import Any

import cli_fakes
import pytest
from cli_fakes import NOT_FOUND, Fake, closed_port, main, one_line

from mullama.cli import client as cli_client
from mullama.cli.client import ClientError, Server, parse_host

fake = cli_fakes.fake  # the fixture: a running fake server and its URL


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
