"""``mullama pull`` under a pseudo-terminal (a moving progress bar, Ctrl-C keeps a resumable partial,
one-line errors), ``mullama rm`` without a server, and ``mullama serve --model ORG/REPO --quant Q``,
all against a local stand-in hub (``fake_hub.py``).

No test reaches a real hub: every store and server here is pointed at the stand-in.
"""

# ruff: noqa: F811  (test parameters named after the fixtures imported from pull_harness)
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from fake_hub import FakeHub
from pull_harness import (  # noqa: F401  (hub, clean_hub and models are fixtures)
    FILE,
    NAME,
    REPO,
    SERVED,
    clean_hub,
    cli_env,
    final_path,
    hub,
    models,
)
from supervisor_harness import Server, base_settings

from mullama.models import manifest
from mullama.store import download


def _pty_run(
    argv: list[str], env: dict[str, str], *, interrupt_after: float | None = None, limit_s: float = 120
) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr are the terminal
        os.execve(sys.executable, [sys.executable, *argv], env)
    out = bytearray()
    t0 = time.monotonic()
    sent = False
    try:
        while time.monotonic() - t0 < limit_s:
            if (
                interrupt_after is not None
                and not sent
                and time.monotonic() - t0 > interrupt_after
                and b"B/s" in out
            ):
                os.write(fd, b"\x03")  # Ctrl-C, as a user types it
                sent = True
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")



def test_cli_pull_shows_a_moving_progress_bar(hub: FakeHub, models: Path, smollm_path: Path) -> None:
    hub.faults.rate = 40 << 20  # ~2.5 s: several refreshes of the bar
    code, out = _pty_run(
        ["-m", "mullama.cli", "pull", f"{REPO}:Q4_1", "--models-dir", str(models)], cli_env(hub)
    )
    assert code == 0, out
    done = [float(x) for x in re.findall(r"(\d+\.\d)/93\.8 MiB", out)]
    assert len(set(done)) >= 3 and done == sorted(done) and done[-1] == 93.8, out[-2000:]
    assert "\r" in out or "\x1b[" in out  # redrawn in place, not line after line
    assert re.search(r"\d MB/s", out) and "pulling manifest" in out
    assert f"pulled {NAME}" in out and SERVED in out
    assert final_path(models).read_bytes() == smollm_path.read_bytes()


def test_cli_pull_ctrl_c_keeps_a_resumable_partial(hub: FakeHub, models: Path) -> None:
    hub.faults.rate = 10 << 20
    code, out = _pty_run(
        ["-m", "mullama.cli", "pull", f"{REPO}:Q4_1", "--models-dir", str(models)],
        cli_env(hub),
        interrupt_after=0.5,
    )
    assert code == 130, out
    assert "resume" in out and "Traceback" not in out
    part = download.partial_path(final_path(models))
    assert part.exists() and part.stat().st_size > 0 and not final_path(models).exists()
    hub.faults.rate = None
    proc = subprocess.run(
        [sys.executable, "-m", "mullama.cli", "pull", f"{REPO}:Q4_1", "--models-dir", str(models)],
        env=cli_env(hub),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert hub.gets(FILE)[-1][2].startswith("bytes=") and final_path(models).exists()
    assert "pulling" in proc.stderr and "%" in proc.stderr  # plain progress lines without a terminal


def test_cli_pull_errors_are_one_line(hub: FakeHub, models: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mullama.cli", "pull", f"{REPO}:Q2_K", "--models-dir", str(models)],
        env=cli_env(hub),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "available quantisations: Q4_1, Q8_0" in proc.stderr


def test_rm_without_a_server_deletes_the_files(hub: FakeHub, models: Path) -> None:
    env = {**cli_env(hub), "MULLAMA_HOST": "http://127.0.0.1:9"}
    subprocess.run(
        [sys.executable, "-m", "mullama.cli", "pull", f"{REPO}:Q4_1", "--models-dir", str(models)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mullama.cli", "rm", SERVED, "--models-dir", str(models)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and "deleting the files directly" in proc.stderr, proc.stderr
    assert not final_path(models).exists() and manifest.read_all(models) == []
    assert not final_path(models).parent.exists()  # the family directory (and its lock files) went too


def test_serve_model_quant_pulls_then_serves_it_as_default(hub: FakeHub, tmp_path: Path) -> None:
    settings = base_settings(
        models_dirs=[str(tmp_path / "models")],
        bundled_model=False,
        threads=1,
        threads_batch=1,
        n_parallel=1,
        prefetch="none",
    )
    from supervisor_harness import write_config

    config = write_config(tmp_path / "serve.toml", **settings)
    argv = [
        sys.executable,
        "-m",
        "mullama.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        "--model",
        REPO,
        "--quant",
        "Q4_1",
    ]
    srv = Server(tmp_path, settings, env={"HF_ENDPOINT": hub.url}, argv=argv)
    try:
        status, body = srv.call("GET", "/api/models")
        assert status == 200 and body["default"] == SERVED
        assert [m["origin"]["name"] for m in body["models"]] == [NAME]
        status, answer = srv.call(
            "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        )
        assert status == 200 and answer["model"] == SERVED, answer
        status, answer = srv.call(
            "POST", "/v1/completions", {"model": f"hf.co/{REPO}:Q4_1", "prompt": "Hi", "max_tokens": 2}
        )
        assert status == 200 and answer["model"] == SERVED, answer
        assert "pulling" in srv.log_text() and len(hub.gets(FILE)) == 1
    finally:
        srv.stop()
