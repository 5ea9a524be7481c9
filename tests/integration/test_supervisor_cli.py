"""`mullama ps / stop / list / show / run` as subprocesses against a live `mullama serve`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from supervisor_harness import REPO_ROOT, Server, base_settings, q8_variant


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    q8_variant()
    srv = Server(tmp_path_factory.mktemp("cli"), base_settings())
    yield srv
    srv.stop()


def mullama(server_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MULLAMA_HOST": server_url, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("MULLAMA_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "mullama.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=300, cwd=str(REPO_ROOT))


def test_list_shows_both_variants_with_metadata(server):
    out = mullama(server.url, "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ID", "SIZE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "Q4_1" in rows["smollm2:q4_1"] and "Q8_0" in rows["smollm2:q8_0"]
    assert "135M" in rows["smollm2:q4_1"]


def test_show_prints_gguf_metadata_without_loading(server):
    out = mullama(server.url, "show", "smollm2:q8_0")
    assert out.returncode == 0, out.stderr
    assert "llama" in out.stdout and "Q8_0" in out.stdout and "30" in out.stdout
    status, ps = server.call("GET", "/api/ps")
    assert "smollm2:q8_0" not in [m["name"] for m in ps["models"]]


def test_run_one_shot_then_ps_then_stop(server):
    out = mullama(server.url, "run", "smollm2", "Say hello in one word.", "--max-tokens", "8", "--temperature", "0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    ps = mullama(server.url, "ps")
    assert ps.returncode == 0, ps.stderr
    header, *rows = ps.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "STATE", "PID", "PORT"]
    row = next(r for r in rows if r.startswith("smollm2:q4_1"))
    assert "100% CPU" in row and "ready" in row
    stop = mullama(server.url, "stop", "smollm2")
    assert stop.returncode == 0, stop.stderr
    assert "smollm2:q4_1" in stop.stdout
    after = mullama(server.url, "ps")
    assert not any(r.startswith("smollm2:q4_1") for r in after.stdout.splitlines()[1:])


def test_run_reads_the_prompt_from_a_pipe(server):
    out = mullama(server.url, "run", "smollm2:q8_0", "--max-tokens", "4", stdin="Name a fruit.")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_unknown_model_is_one_line_and_exit_1(server):
    out = mullama(server.url, "show", "no-such-model")
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1 and "no-such-model" in out.stderr


def test_unreachable_server_is_one_clear_line():
    out = mullama("http://127.0.0.1:1", "ps")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and "mullama serve" in lines[0]
