"""The CLI's ps / list / show / stop against the fake server: tables and their text."""

from __future__ import annotations

import io
import json

import cli_fakes
import pytest
from cli_fakes import BROKEN, PS_ROW, Fake, main

from mullama.cli import client as cli_client

fake = cli_fakes.fake  # the fixture: a running fake server and its URL


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
