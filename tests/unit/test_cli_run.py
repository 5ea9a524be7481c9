"""The CLI's run (one shot, SSE streaming) and the interactive chat loop against the fake server."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import cli_fakes
import pytest
from cli_fakes import NOT_FOUND, Fake, main, one_line, parse

from mullama.cli import client as cli_client

fake = cli_fakes.fake  # the fixture: a running fake server and its URL


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
