"""The CLI verbs that talk to a running ``mullama serve``: ps, stop, list, show, run, create.

Each verb is ``add_<verb>(subparsers)`` (its arguments; ``func=run_<verb>``) and ``run_<verb>(args)``
(the exit code). The HTTP side -- ``Server``, ``parse_host``, ``Client``, ``ClientError`` -- is in
``http_client.py`` and re-exported here. Every failure a user can meet -- no server, an error
answer, an error mid-stream -- is one ``mullama: ...`` line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from mullama.cli.http_client import (
    CONNECT_TIMEOUT_S,
    DEFAULT_PORT,
    Client,
    ClientError,
    Server,
    _error_line,
    parse_host,
)
from mullama.core.units import format_duration, format_size

__all__ = [
    # the verbs (this module)
    "HELP", "LIST_COLUMNS", "PS_COLUMNS", "add_create", "add_list", "add_ps", "add_run", "add_show", "add_stop",
    "chat", "chat_body", "client_for", "print_table", "run_create", "run_list", "run_ps", "run_run", "run_show",
    "run_stop", "show_text",
    # HTTP (http_client.py)
    "CONNECT_TIMEOUT_S", "DEFAULT_PORT", "Client", "ClientError", "Server", "_error_line", "parse_host",
]

_NOT_LOADED = frozenset({"discovered", "unloaded", "failed"})

Args = argparse.Namespace
Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def client_for(args: Args) -> Client:
    """``--host`` beats ``MULLAMA_HOST``; ``--api-key`` (else ``MULLAMA_API_KEY``) is sent as a bearer token."""
    server = parse_host(getattr(args, "host", None) or os.environ.get("MULLAMA_HOST"))
    return Client(server, getattr(args, "client_api_key", None) or os.environ.get("MULLAMA_API_KEY") or None)


def _verb(fn: Callable[[Args], int]) -> Callable[[Args], int]:
    """A ClientError becomes one stderr line and exit 1; Ctrl-C exits 130 quietly."""

    @functools.wraps(fn)
    def run(args: Args) -> int:
        try:
            return fn(args)
        except ClientError as exc:
            sys.stdout.flush()
            print(f"mullama: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 130
        except BrokenPipeError:         # `mullama ps | head -1`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1

    return run


# ---------------------------------------------------------------------- output


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _size(value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return format_size(value) if number else _cell(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """A ``rich`` table on a terminal; otherwise plain aligned columns (same headers, "-" when empty)."""
    out = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for h in headers:
            table.add_column(h, overflow="fold")
        for row in cells:
            table.add_row(*row)
        Console(file=out, highlight=False).print(table)
        return
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        out.write("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


# ---------------------------------------------------------------------- ps / stop / list / show

PS_COLUMNS = ("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "STATE", "PID", "PORT")
LIST_COLUMNS = ("NAME", "ID", "SIZE", "QUANT", "PARAMS", "CONTEXT", "SOURCE", "ERROR")


def add_ps(sub: Subparsers) -> None:
    p = sub.add_parser("ps", help="list the models loaded now",
                       description="List the models the server has loaded (or is loading), like 'ollama ps'.")
    p.set_defaults(func=run_ps)


@_verb
def run_ps(args: Args) -> int:
    rows = [(m.get("name"), m.get("id"), _size(m.get("size")), m.get("processor"), m.get("context_length"),
             m.get("until"), m.get("state"), m.get("pid"), m.get("port"))
            for m in client_for(args).call("GET", "/api/ps").get("models") or []]
    print_table(PS_COLUMNS, rows)
    return 0


def add_stop(sub: Subparsers) -> None:
    p = sub.add_parser("stop", help="unload a model",
                       description="Unload MODEL now (its requests finish first).")
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(func=run_stop)


@_verb
def run_stop(args: Args) -> int:
    answer = client_for(args).call("POST", "/api/unload", {"model": args.model})
    name = answer.get("model") or args.model
    print(f"{name} was not loaded" if answer.get("was") in _NOT_LOADED else f"stopped {name}")
    return 0


def add_list(sub: Subparsers) -> None:
    p = sub.add_parser("list", aliases=["ls"], help="list the models the server can serve",
                       description="List every model file the server found; broken files with their error.")
    p.set_defaults(func=run_list)


@_verb
def run_list(args: Args) -> int:
    answer = client_for(args).call("GET", "/api/models")
    rows = [(m.get("name"), m.get("id"), _size(m.get("size")), m.get("quantization"),
             m.get("parameters_label"), m.get("context_length"), _source(m), m.get("error"))
            for m in answer.get("models") or []]
    print_table(LIST_COLUMNS, rows)
    sys.stdout.flush()
    for problem in answer.get("dir_errors") or []:
        print(f"mullama: warning: {problem}", file=sys.stderr)
    return 0


def _source(m: dict[str, Any]) -> Any:
    """``hf.co/org/repo`` for a pulled model (its manifest), ``preset of BASE`` for a preset, else the
    catalog's source."""
    if m.get("source") == "preset":
        return f"preset of {m.get('base') or (m.get('preset') or {}).get('from')}"
    origin = m.get("origin")
    if isinstance(origin, dict) and origin.get("repo"):
        return f"hf.co/{origin['repo']}"
    return m.get("source")


def add_show(sub: Subparsers) -> None:
    p = sub.add_parser("show", help="show a model's details",
                       description="Show MODEL's architecture, file and effective settings.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print the server's JSON as it is")
    p.add_argument("--metadata", action="store_true", help="add the GGUF metadata")
    p.set_defaults(func=run_show)


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "keep_alive" and isinstance(value, (int, float)):
        return format_duration(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return _cell(value)


def _section(title: str, items: Sequence[tuple[str, Any]]) -> list[str]:
    items = [(k, v) for k, v in items if v is not None]
    if not items:
        return []
    width = max(len(k) for k, _ in items)
    return ["", f"  {title}"] + [f"    {k.ljust(width)}   {_value(k, v)}" for k, v in items]


def show_text(info: dict[str, Any], metadata: bool = False) -> str:
    """The human block of ``mullama show``: model, file, effective config (and GGUF metadata)."""
    params, label = info.get("parameters"), info.get("parameters_label")
    model = [("name", info.get("name")), ("architecture", info.get("architecture")),
             ("parameters", f"{label} ({params:,})" if label and isinstance(params, int) else params),
             ("quantization", info.get("quantization")), ("context length", info.get("context_length")),
             ("layers", info.get("n_layer")), ("embedding length", info.get("n_embd")),
             ("heads", info.get("n_head")), ("kv heads", info.get("n_head_kv")),
             ("chat template", info.get("has_chat_template")), ("error", info.get("error"))]
    file = [("path", info.get("path")), ("size", _size(info["size"]) if "size" in info else None),
            ("source", info.get("source")), ("id", info.get("id"))]
    origin = info.get("origin") if isinstance(info.get("origin"), dict) else {}
    pulled = [("repository", origin.get("repo")), ("revision", origin.get("revision")),
              ("commit", origin.get("commit")), ("quantization", origin.get("quant")),
              ("pulled at", origin.get("pulled_at")), ("pulled as", origin.get("name")),
              ("hub", origin.get("endpoint"))] if origin else []
    preset = info.get("preset") if isinstance(info.get("preset"), dict) else {}
    made = [("from", preset.get("from")), ("served by", info.get("base")), ("system", preset.get("system")),
            ("template", preset.get("template")), ("adapters", [a.get("name") for a in preset.get("adapters", [])]),
            *sorted((preset.get("parameters") or {}).items())] if preset else []
    lines = _section("Preset", made) + _section("Model", model) + _section("File", file) + _section("Source", pulled)
    lines += _section("Config", sorted((info.get("config") or {}).items()))
    if metadata:
        lines += _section("Metadata", sorted((info.get("metadata") or {}).items()))
    return "\n".join(lines[1:])


@_verb
def run_show(args: Args) -> int:
    info = client_for(args).call("GET", "/api/models/" + quote(args.model, safe=":"))
    print(json.dumps(info, indent=2) if args.json else show_text(info, metadata=args.metadata))
    return 0


# ---------------------------------------------------------------------- run

HELP = "commands: /clear (forget the conversation), /bye (exit); Ctrl-C stops an answer, Ctrl-D exits"


def _run_options(p: argparse.ArgumentParser, default: Any = None) -> None:
    d = {} if default is None else {"default": default}
    p.add_argument("--system", help="system message", **d)
    p.add_argument("--max-tokens", type=int, help="most tokens in an answer", **d)
    p.add_argument("--temperature", type=float, **d)
    p.add_argument("--seed", type=int, **d)
    p.add_argument("--keep-alive", help="how long the model stays loaded afterwards: 5m, 1h, -1 (forever)",
                   **d)
    p.add_argument("--no-stream", action="store_true", help="print the answer once it is complete", **d)
    p.add_argument("--json", action="store_true", help="print the whole JSON response (implies --no-stream)",
                   **d)


def add_run(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="chat with a model", description="Answer PROMPT (or standard input, or "
                       "'-') and exit; with no prompt on a terminal, chat interactively.")
    p.add_argument("model", nargs="?", default="", metavar="MODEL", help="default: the server's default")
    # REMAINDER, re-read by _split_prompt: argparse alone refuses options that follow the prompt's words
    p.add_argument("prompt", nargs=argparse.REMAINDER, metavar="PROMPT",
                   help="the prompt's words; '-' reads standard input")
    _run_options(p)
    p.set_defaults(func=run_run)


def _split_prompt(args: Args) -> None:
    """``run MODEL say hi --seed 1``: options among the prompt's words go to ``args``, the words stay."""
    tail = argparse.ArgumentParser(prog="mullama run", add_help=False)
    _run_options(tail, default=argparse.SUPPRESS)
    tail.add_argument("prompt", nargs="*", metavar="PROMPT")
    vars(args).update(vars(tail.parse_intermixed_args(args.prompt)))


def chat_body(args: Args, messages: list[dict[str, str]], stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": args.model or "", "messages": messages, "stream": stream}
    for key in ("max_tokens", "temperature", "seed", "keep_alive"):
        if getattr(args, key, None) is not None:
            body[key] = getattr(args, key)
    return body


def _answer(client: Client, args: Args, messages: list[dict[str, str]], out: TextIO) -> str:
    """Stream (or fetch) one answer to ``messages`` and print it; returns its text."""
    if args.json or args.no_stream:
        reply = client.call("POST", "/v1/chat/completions", chat_body(args, messages, False))
        text = ((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        out.write(json.dumps(reply, indent=2) + "\n" if args.json else text.rstrip("\n") + "\n")
        out.flush()
        return text
    parts: list[str] = []
    # closing(): a Ctrl-C while printing closes the connection at once, so the server stops generating
    with contextlib.closing(client.events("/v1/chat/completions", chat_body(args, messages, True))) as events:
        for event in events:
            for choice in event.get("choices") or []:
                if piece := (choice.get("delta") or {}).get("content"):
                    parts.append(piece)
                    out.write(piece)
                    out.flush()
    text = "".join(parts)
    out.write("" if text.endswith("\n") else "\n")
    out.flush()
    return text


def _read_prompt(words: Sequence[str]) -> str | None:
    """The one-shot prompt, or None for an interactive chat (no words, and stdin is a terminal)."""
    if words and list(words) != ["-"]:
        return " ".join(words)
    if not words and sys.stdin.isatty():
        return None
    text = sys.stdin.read()
    if not text.strip():
        raise ClientError("the prompt on standard input is empty")
    return text


@_verb
def run_run(args: Args) -> int:
    _split_prompt(args)
    client = client_for(args)
    if args.model == "-" and not args.prompt:       # `mullama run -`: the default model, prompt on stdin
        args.model, args.prompt = "", ["-"]
    system = [{"role": "system", "content": args.system}] if args.system else []
    prompt = _read_prompt(args.prompt)
    if prompt is None:
        return chat(client, args, system)
    _answer(client, args, [*system, {"role": "user", "content": prompt}], sys.stdout)
    return 0


def chat(client: Client, args: Args, system: list[dict[str, str]],
         read: Callable[[str], str] = input, out: TextIO | None = None) -> int:
    """The interactive loop: ``>>> `` prompts, history kept, Ctrl-C stops an answer, /bye or EOF ends."""
    out = out or sys.stdout
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    keep = {"keep_alive": args.keep_alive} if args.keep_alive else {}
    loaded = client.call("POST", "/api/load", {"model": args.model or "", **keep})  # fail before the prompt
    out.write(f"chatting with {loaded.get('model') or args.model}; {HELP}\n")
    history: list[dict[str, str]] = []
    while True:
        try:
            line = read(">>> ")
        except EOFError:
            out.write("\n")
            return 0
        except KeyboardInterrupt:
            out.write("\nUse Ctrl-D or /bye to exit.\n")
            continue
        command = line.strip()
        if command in ("/bye", "/exit", "/quit"):
            return 0
        if command in ("/clear", "/?", "/help", ""):
            if command == "/clear":
                history.clear()
            out.write({"/clear": "cleared the conversation\n", "": ""}.get(command, HELP + "\n"))
            continue
        turn = {"role": "user", "content": line}
        try:
            text = _answer(client, args, [*system, *history, turn], out)
        except KeyboardInterrupt:       # the stream was closed: the server stops; the turn is dropped
            out.write("\n")
            continue
        except ClientError as exc:      # say so and keep chatting; the turn is dropped
            out.flush()
            print(f"mullama: {exc}", file=sys.stderr)
            continue
        history += [turn, {"role": "assistant", "content": text}]


# ---------------------------------------------------------------------- create


def add_create(sub: Subparsers) -> None:
    p = sub.add_parser("create", help="create a preset from a Modelfile",
                       description="Create (or replace) the preset NAME on the server from a Modelfile: FROM a base "
                                   "model, with SYSTEM, TEMPLATE (Jinja or a built-in name), PARAMETER, ADAPTER, "
                                   "MESSAGE, LICENSE (docs/presets.md). No weights are copied: the preset is "
                                   "served by its base's runner.")
    p.add_argument("model", metavar="NAME")
    p.add_argument("-f", "--file", default="Modelfile", metavar="FILE",
                   help="the Modelfile ('-': standard input; default: ./Modelfile)")
    p.set_defaults(func=run_create)


@_verb
def run_create(args: Args) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read the Modelfile {args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    body = {"model": args.model, "modelfile": text, "stream": True}
    with contextlib.closing(client_for(args).lines("/api/create", body)) as lines:
        for line in lines:
            print(line.get("status", ""), flush=True)
    return 0
