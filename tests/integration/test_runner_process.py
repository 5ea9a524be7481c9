"""The runner as a process: it dies with its parent, drains on SIGTERM, binds
loopback only, and refuses to start without a token."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap

import aiohttp
import psutil
import pytest

from runner_harness import (
    Client, REPO_ROOT, Runner, START_TIMEOUT, TOKEN, assert_error, greedy, load_model, read_line, runner_cmd, runner_env,
    running, sigkill, split_stream, wait_gone, wait_until,
)

# An intermediate parent: starts the runner, prints {"pid", "port"} of it, sleeps.
PARENT = textwrap.dedent("""
    import json, subprocess, sys, time
    cmd = json.loads(sys.argv[1])
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    print(child.stdout.readline().decode().strip(), flush=True)
    time.sleep(600)
""")


def spawn_via_parent() -> tuple[subprocess.Popen, dict]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(runner_cmd())], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=runner_env(), cwd=str(REPO_ROOT))
    try:
        info = json.loads(read_line(parent.stdout, START_TIMEOUT))
    except BaseException:
        parent.kill()
        parent.wait(10)
        raise
    assert psutil.Process(info["pid"]).ppid() == parent.pid
    return parent, info


def test_runner_dies_within_2s_when_its_parent_is_sigkilled():
    parent, info = spawn_via_parent()
    try:
        assert psutil.pid_exists(info["pid"])
        parent.kill()
        parent.wait(10)
        assert wait_gone(info["pid"], 2.0), "the runner outlived its parent by more than 2 s"
    finally:
        sigkill(info["pid"])
        sigkill(parent.pid)
        parent.stdout.close()


def test_runner_serving_a_stream_dies_with_its_parent():
    parent, info = spawn_via_parent()
    try:
        # drive the runner directly (it belongs to the intermediate parent)
        runner = Runner(proc=None, port=info["port"], pid=info["pid"], token=TOKEN, stderr_path=None)  # type: ignore[arg-type]
        load_model(runner, n_parallel=1, n_ctx=2048)

        async def stream_then_kill() -> list[dict]:
            seen: list[dict] = []
            async with Client(runner, timeout=60) as c:
                try:
                    async with c.open_stream(greedy("Count:", 1900, ignore_eos=True)) as records:
                        async for rec in records:
                            seen.append(rec)
                            if parent.poll() is None:
                                parent.kill()
                except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError):
                    pass  # the connection dies with the runner
            return seen

        seen = asyncio.run(asyncio.wait_for(stream_then_kill(), 120))
        assert seen and not seen[-1].get("done"), "the stream finished instead of dying with the runner"
        assert wait_gone(info["pid"], 2.0), "the runner outlived its parent by more than 2 s"
    finally:
        sigkill(info["pid"])
        sigkill(parent.pid)
        parent.wait(10)
        parent.stdout.close()


# ---------------------------------------------------------------- SIGTERM


@pytest.fixture
def fresh_runner(tmp_path):
    with running(tmp_path) as r:
        load_model(r, n_parallel=2, n_ctx=2048)
        yield r


async def test_sigterm_drains_the_running_stream_then_exits(fresh_runner):
    r = fresh_runner
    async with Client(r) as c:
        seen = []
        async with c.open_stream(greedy("Once upon a time", 64, ignore_eos=True)) as records:
            async for rec in records:
                seen.append(rec)
                if len(seen) == 1:
                    r.proc.send_signal(signal.SIGTERM)
                    await wait_until(lambda: _status_is(c, "draining"), timeout=10, what="status draining")
                    # no new work while draining
                    status, out = await c.post("/completion", greedy("Hi", 2))
                    assert_error(status, out, 503, "unavailable")
        _, final = split_stream(seen)
        assert final["finish_reason"] == "length", final
        assert final["stats"]["completion_tokens"] == 64
        assert sum(len(x["tokens"]) for x in seen) == 64
    assert r.wait_exit(30) == 0
    events = [json.loads(ln)["event"] for ln in r.stderr_text().splitlines() if ln.strip()]
    assert "draining" in events and events[-1] == "stopped", events[-5:]


async def _status_is(c: Client, status: str) -> bool:
    return (await c.health())["status"] == status


def test_sigterm_with_a_stream_past_the_drain_timeout_ends_it_with_error(tmp_path):
    with running(tmp_path, "--drain-timeout", "1") as r:
        load_model(r, n_parallel=1, n_ctx=2048)

        async def go():
            async with Client(r) as c:
                seen = []
                async with c.open_stream(greedy("Count:", 1900, ignore_eos=True)) as records:
                    async for rec in records:
                        seen.append(rec)
                        if len(seen) == 1:
                            r.proc.send_signal(signal.SIGTERM)
                return seen

        seen = asyncio.run(asyncio.wait_for(go(), 120))
        _, final = split_stream(seen)
        assert final["finish_reason"] == "error" and final["error"], final
        assert final["stats"]["completion_tokens"] < 1900
        assert r.wait_exit(30) == 0


def test_sigterm_idle_runner_exits_promptly(tmp_path):
    with running(tmp_path) as r:
        assert r.health()["status"] == "starting"
        r.proc.send_signal(signal.SIGTERM)
        assert r.wait_exit(15) == 0


def test_sigterm_right_after_the_port_line_is_graceful(tmp_path):
    """A supervisor may stop a runner as soon as it has announced its port."""
    codes = []
    for _ in range(6):
        with running(tmp_path) as r:
            r.proc.send_signal(signal.SIGTERM)
            codes.append(r.wait_exit(15))
    assert codes == [0] * 6, f"exit codes {codes}: -15 is death by SIGTERM's default action, no drain"


# ---------------------------------------------------------------- refusals, binding


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_non_loopback_host_is_refused(host):
    proc = subprocess.run(runner_cmd(host=host), capture_output=True, text=True, timeout=60, env=runner_env(),
                          cwd=str(REPO_ROOT))
    assert proc.returncode != 0
    assert "loopback" in proc.stderr, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_missing_token_refuses_to_start(token):
    env = runner_env(token=None)
    if token is not None:
        env["MULLAMA_RUNNER_TOKEN"] = token
    proc = subprocess.run(runner_cmd(), capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO_ROOT))
    assert proc.returncode != 0
    assert "MULLAMA_RUNNER_TOKEN" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_listens_on_loopback_only(tmp_path):
    with running(tmp_path) as r:
        conns = [c for c in psutil.Process(r.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert conns, "no listening socket"
        assert {c.laddr.ip for c in conns} == {"127.0.0.1"}, conns
        assert {c.laddr.port for c in conns} == {r.port}
