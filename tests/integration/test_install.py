"""``pip install`` as a new user meets it, outside the source tree (slow: it compiles llama.cpp).

The source distribution is built from this checkout, a wheel is built from that sdist alone (so the
sdist carries everything the build needs: the extension's sources and the pinned, hash-checked
llama.cpp fetch), and the wheel goes into a fresh virtualenv. Its ``mullama serve``, started in
another directory with an empty home, fetches the bundled model by itself, creates the models
directory it names, and answers a chat request; the dashboard and the bench workloads are in it.

Run with ``.venv/bin/python -m pytest -m slow tests/integration/test_install.py`` (about 7 minutes
with a cold ccache on two cores; ccache's own directory is kept, so a second run compiles little).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from supervisor_harness import REPO_ROOT

pytestmark = pytest.mark.slow

PORT_LINE = re.compile(r"mullama serving on http://[^:]+:(\d+)")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd[:4]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MULLAMA_", "PYTHON", "VIRTUAL_ENV"))}
    ccache = os.environ.get("CCACHE_DIR") or str(Path.home() / ".cache" / "ccache")
    return {**env, "HOME": str(home), "CCACHE_DIR": ccache, "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip")}


def test_the_sdist_builds_outside_the_tree_and_its_wheel_serves(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(dist), str(REPO_ROOT)],
         tmp_path, os.environ.copy(), 300)
    (sdist,) = dist.glob("mullama-*.tar.gz")
    env = _env(home)
    _run([sys.executable, "-m", "venv", str(tmp_path / "venv")], tmp_path, env, 120)
    pip = [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "-w", str(dist), str(sdist)], tmp_path, env, 1800)
    (wheel,) = dist.glob("mullama-*.whl")
    _run([*pip, "install", str(wheel)], tmp_path, env, 900)

    _serve_and_chat(tmp_path / "venv", home, env, tmp_path)


def test_the_distributable_wheel_runs_the_cpu_variant_this_machine_runs(tmp_path) -> None:
    """scripts/build_wheel.sh: ggml's CPU backend per x86 level, chosen at run time; manylinux-tagged by
    auditwheel; every shared object within its level (the script runs scripts/check_wheel_isa.py)."""
    home = tmp_path / "home"
    home.mkdir()
    dist = tmp_path / "dist"
    _run(["bash", str(REPO_ROOT / "scripts" / "build_wheel.sh"), str(dist)], REPO_ROOT,
         {**os.environ, "PYTHON": sys.executable}, 2400)
    (wheel,) = dist.glob("mullama-*.whl")
    assert re.search(r"-manylinux_2_\d+_x86_64\.whl$", wheel.name), wheel.name
    env = _env(home)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    _run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install", str(wheel)],
         tmp_path, env, 900)
    _serve_and_chat(venv, home, env, tmp_path)

    mullama = str(venv / "bin" / "mullama")
    best = _run([mullama, "--version"], tmp_path, env, 60)
    assert re.search(r"CPU backend (\w+)", best).group(1) not in ("built-in", "x64", "sapphirerapids")
    lowest = _run([mullama, "--version"], tmp_path, {**env, "MULLAMA_CPU_VARIANT": "x64"}, 60)
    assert "CPU backend x64 (" in lowest and "AVX" not in lowest  # forced down to the x86-64 baseline
    text = _run([mullama, "generate", "-p", "The capital of France is", "-n", "4", "--temp", "0", "--json"],
                tmp_path, {**env, "MULLAMA_CPU_VARIANT": "x64"}, 300)
    assert json.loads(text)["completion_tokens"] == 4
    bad = subprocess.run([mullama, "generate", "-p", "x", "-n", "1"], cwd=tmp_path, capture_output=True, text=True,
                         env={**env, "MULLAMA_CPU_VARIANT": "pentium"}, timeout=120, check=False)
    assert bad.returncode == 1 and "no such CPU variant" in bad.stderr and "haswell" in bad.stderr
    docs = _run([mullama, "docs", "configuration", "--path"], tmp_path, env, 60).strip()
    assert docs == str(venv / "share" / "doc" / "mullama" / "configuration.md")  # the docs are in the wheel


def _serve_and_chat(venv: Path, home: Path, env: dict[str, str], tmp_path: Path) -> None:
    """From another directory with an empty home: serve fetches the bundled model, creates the models
    directory it names, answers a chat request, serves the dashboard; the workloads are in the package."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    mullama = str(venv / "bin" / "mullama")
    assert "priority_mix" in _run([mullama, "bench", "--help"], workdir, env, 60)  # workloads are in the wheel
    proc = subprocess.Popen([mullama, "serve", "--port", "0", "--threads", "2"],
                            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        port = None
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if m := PORT_LINE.search(line):
                port = int(m.group(1))
        assert port, "".join(lines)
        text = "".join(lines)
        assert "bundled model ready" in text and str(home / ".mullama" / "models") in text
        assert (home / ".mullama" / "models").is_dir()
        body = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}],
                           "max_tokens": 8}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as resp:
            answer = json.load(resp)
        assert answer["choices"][0]["message"]["content"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/", timeout=30) as resp:
            assert resp.status == 200 and b"js/app.js" in resp.read()  # the dashboard is in the wheel
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
