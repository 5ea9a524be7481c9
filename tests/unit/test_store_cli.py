"""Model store in the CLI: the source of pulled models in list/show, the progress display, serve's flags."""

from __future__ import annotations

import io

import pytest

from mullama.cli import main as cli, client as cli_client
from mullama.cli.store import _Display
from mullama.core.errors import InvalidArgument

ORIGIN = {
    "name": "org/repo:q4_k_m",
    "kind": "pull",
    "repo": "Org/Repo",
    "revision": "main",
    "commit": "c" * 40,
    "quant": "q4_k_m",
    "endpoint": "https://huggingface.co",
    "size": 10,
    "pulled_at": "2026-01-01T00:00:00+00:00",
    "copied_from": None,
    "files": ["repo-Q4_K_M.gguf"],
}


def test_show_text_has_a_source_block_for_pulled_models() -> None:
    text = cli_client.show_text(
        {
            "name": "repo:q4_k_m",
            "path": "/m/repo/x.gguf",
            "size": 10,
            "source": "models_dir",
            "origin": ORIGIN,
        }
    )
    assert "  Source" in text
    for line in (
        "repository     Org/Repo",
        "revision       main",
        "pulled at      2026-01-01T00:00:00+00:00",
        "pulled as      org/repo:q4_k_m",
    ):
        assert line in text, text
    assert "Source" not in cli_client.show_text({"name": "x:q4_0", "source": "models_dir"})


def test_list_source_column(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        def call(self, method, path, body=None):
            return {
                "models": [
                    {"name": "repo:q4_k_m", "source": "models_dir", "origin": ORIGIN},
                    {"name": "smollm2:q4_1", "source": "bundled"},
                ],
                "dir_errors": [],
            }

    monkeypatch.setattr(cli_client, "client_for", lambda args: Fake())
    assert cli_client.run_list(cli.build_parser().parse_args(["list"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert "hf.co/Org/Repo" in out[1] and "bundled" in out[2]


def test_plain_progress_lines_without_a_terminal() -> None:
    out = io.StringIO()
    show = _Display(out)
    with show:
        show({"status": "pulling manifest"})
        for done in range(0, 101, 5):
            show(
                {
                    "status": "pulling abc",
                    "digest": "sha256:abc",
                    "total": 100 << 20,
                    "completed": done << 20,
                    "file": "x.gguf",
                }
            )
        show({"status": "success"})
    lines = out.getvalue().splitlines()
    assert lines[0] == "pulling manifest"
    assert lines[1] == "pulling abc (x.gguf): 0% (0 B / 100.0 MiB)"
    assert lines[-1] == "pulling abc (x.gguf): 100% (100.0 MiB / 100.0 MiB)"
    assert 10 <= len(lines) <= 13  # about one line per 10 %, not one per update


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["serve", "--quant", "Q4_K_M"], "--quant needs --model"),
        (["serve", "--model", "smollm2", "--quant", "Q4_K_M"], "applies to a Hugging Face repository"),
        (["serve", "--model", "org/repo:q8_0", "--quant", "Q4_K_M"], "give the quantisation once"),
    ],
)
def test_serve_model_flags_are_checked(
    argv: list[str], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULLAMA_CONFIG", "")
    args = cli.build_parser().parse_args(argv)
    with pytest.raises(InvalidArgument, match=fragment):
        args.func(args)


def test_serve_model_without_slash_is_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from mullama.http import app

    seen = {}
    monkeypatch.setattr(app, "main_serve", lambda settings: seen.setdefault("s", settings) and 0)
    args = cli.build_parser().parse_args(["serve", "--model", "smollm2:q8_0"])
    args.func(args)
    assert seen["s"].default_model == "smollm2:q8_0"
