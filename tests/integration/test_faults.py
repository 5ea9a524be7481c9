"""Fault tolerance with real processes: killed runners, killed and stopped supervisors, and a stalled load
(``stalled_load/sitecustomize.py`` on the runners' PYTHONPATH). Broken model files, unreadable
directories and a full disk are in ``test_faults_storage.py``, clients that walk away mid-stream in
``test_faults_clients.py``; shared helpers in ``faults_harness.py``.

Each test starts its own ``mullama serve`` (``supervisor_harness.Server``) in its own
process group; runners join that group, so "no orphans" means: nothing of the group is left
once the supervisor is gone, and no zombie sits under a live supervisor. Bounds that the
issue names (1 s for the streams of a killed runner, 2 s for runners after a killed
supervisor) are asserted as given; the others are generous waits, never sleeps.

The slow ones (over ~15 s) are marked ``slow``:
``.venv/bin/python -m pytest -m slow tests/integration/test_faults*.py``.
"""

# ruff: noqa: F811  (test parameters named after the fixtures imported from faults_harness)
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import openai
import psutil
import pytest
from faults_harness import (  # noqa: F401  (_second_model and clients are fixtures)
    ONE_THREAD,
    Q4,
    Q8,
    _chat,
    _gone,
    _group,
    _long,
    _ps,
    _second_model,
    _start_streams,
    _until,
    _zombie_children,
    clients,
)
from supervisor_harness import REPO_ROOT, Server, assert_openai_error, base_settings, write_config

# ---------------------------------------------------------------- a killed runner


async def test_kill_9_of_a_runner_fails_its_8_streams_within_1s_restarts_and_leaves_no_orphans(tmp_path, clients):
    server = Server(tmp_path, base_settings(n_parallel=8, **ONE_THREAD))
    try:
        client = clients(server)
        await client.chat.completions.create(**_chat(Q4, n=2))  # loaded
        pid = _ps(server)[0]["pid"]
        streams, tasks = await _start_streams(client, _long(Q4), 8)  # all 8 are producing tokens
        assert _ps(server)[0]["in_flight"] == 8
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        latencies = sorted(round(s.ended - killed_at, 3) for s in streams)
        print(f"kill -9 -> terminal error per stream (s): {latencies}")
        for s in streams:
            assert s.chunks > 0
            assert isinstance(s.error, openai.APIError), "a stream ended without an error"
            assert "runner" in str(s.error).lower()
        assert latencies[-1] < 1.0, f"streams took {latencies[-1]} s to fail (bound: 1 s)"
        assert _gone(pid)
        again = await client.chat.completions.create(**_chat(Q4, n=2))  # at once: it waits for the restart
        assert again.choices[0].message.content
        crashed = await _until(lambda: server.events("runner_crashed"), 10, "the runner_crashed event")
        assert crashed[0]["pid"] == pid
        new_pid = _ps(server)[0]["pid"]
        assert new_pid != pid
        assert [p.pid for p in _group(server)] == [new_pid]  # the killed runner left nothing behind
        assert _zombie_children(server) == []                 # and it was reaped
        status, models = server.call("GET", "/internal/models")
        assert status == 200
        rt = next(m for m in models["models"] if m["name"] == Q4)
        crash = next(r for r in rt["loads"] if r.get("crash"))
        assert crash["code"] == -signal.SIGKILL and crash["in_flight"] == 8
        assert server.stop(60) == 0
        assert _group(server) == []
    finally:
        server.kill()


@pytest.mark.slow
async def test_a_runner_killed_again_and_again_restarts_with_a_growing_backoff(tmp_path, clients):
    server = Server(tmp_path, base_settings(n_parallel=4, **ONE_THREAD))
    try:
        client = clients(server)
        await client.chat.completions.create(**_chat(Q4, n=2))
        pids, waits = [], []
        for _ in range(4):
            pid = _ps(server)[0]["pid"]
            streams, tasks = await _start_streams(client, _long(Q4), 4)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            assert all(isinstance(s.error, openai.APIError) and s.ended - killed_at < 1.0 for s in streams)
            t0 = time.monotonic()
            again = await client.chat.completions.create(**_chat(Q4, n=2))  # waits out the backoff
            assert again.choices[0].message.content
            waits.append(round(time.monotonic() - t0, 2))
            pids.append(pid)
        print(f"restart waits after 1..4 crashes (s): {waits}")
        assert waits[3] >= 4.0 and waits[2] >= 2.0 and waits[1] >= 1.0  # backoff 0, 1, 2, 4 s
        assert len(set(pids)) == 4 and all(_gone(p) for p in pids)
        assert [c["pid"] for c in server.events("runner_crashed")] == pids
        assert [p.pid for p in _group(server)] == [_ps(server)[0]["pid"]] and _zombie_children(server) == []
        assert server.stop(60) == 0
        assert _group(server) == []
    finally:
        server.kill()


# ---------------------------------------------------------------- a killed or stopped supervisor


async def test_sigkill_of_the_supervisor_takes_every_runner_down_within_2s(tmp_path, clients):
    server = Server(tmp_path, base_settings(n_parallel=2, **ONE_THREAD))
    try:
        client = clients(server)
        for model in (Q4, Q8):
            await client.chat.completions.create(**_chat(model, n=2))
        runners = [m["pid"] for m in _ps(server)]
        assert len(runners) == 2 and {p.pid for p in _group(server)} == set(runners)
        _, tasks = await _start_streams(client, _long(Q4), 1)  # one of them busy
        killed_at = time.monotonic()
        os.kill(server.proc.pid, signal.SIGKILL)  # the supervisor only, not its group
        await _until(lambda: all(_gone(p) for p in runners), 5, "the runners to exit", step=0.02)
        took = time.monotonic() - killed_at
        print(f"supervisor SIGKILL -> all runners gone in {took * 1000:.1f} ms")
        assert took < 2.0
        assert _group(server) == []
        await asyncio.wait_for(asyncio.gather(*tasks), 10)  # the client sees the connection drop, no hang
    finally:
        server.kill()


async def test_sigterm_lets_running_streams_finish_then_stops_the_runners(tmp_path, clients):
    server = Server(tmp_path, base_settings(n_parallel=4, drain_timeout="60s", **ONE_THREAD))
    try:
        client = clients(server)
        await client.chat.completions.create(**_chat(Q4, n=2))
        runners = [m["pid"] for m in _ps(server)]
        streams, tasks = await _start_streams(client, _long(Q4, n=64), 4)
        server.proc.send_signal(signal.SIGTERM)
        status, body = await asyncio.to_thread(server.call, "POST", "/v1/chat/completions", _chat(Q4, n=2))
        assert status == 503, body  # draining: no new work
        assert "shutting down" in assert_openai_error(body)["message"]
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for s in streams:
            assert s.error is None, s.error
            assert s.finish == "length"  # every stream ran to its max_tokens
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        assert [p for p in runners if not _gone(p)] == []
        assert _group(server) == []
    finally:
        server.kill()


async def test_sigterm_past_the_drain_timeout_ends_streams_with_an_error_and_exits(tmp_path, clients):
    server = Server(tmp_path, base_settings(n_parallel=2, drain_timeout="1s", **ONE_THREAD))
    try:
        client = clients(server)
        await client.chat.completions.create(**_chat(Q4, n=2))
        streams, tasks = await _start_streams(client, _long(Q4), 2)  # far longer than the drain timeout
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for s in streams:
            assert isinstance(s.error, openai.APIError), "a stream ended without an error"
            assert "unloaded before this request finished" in str(s.error)
            assert s.ended - t0 < 10
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        assert _group(server) == []
    finally:
        server.kill()



# ---------------------------------------------------------------- a stalled load


def test_a_stalled_load_is_detected_and_reported(tmp_path):
    stall = Path(__file__).parent / "stalled_load"  # its sitecustomize stops every runner's load
    server = Server(tmp_path, base_settings(load_timeout="3s"), env={"PYTHONPATH": f"{stall}:{REPO_ROOT}"})
    try:
        t0 = time.monotonic()
        status, body = server.call("POST", "/v1/chat/completions", _chat(Q4), timeout=120)
        elapsed = time.monotonic() - t0
        assert status == 503, body
        err = assert_openai_error(body)
        assert err["code"] == "load_stalled"
        assert "no progress for 3 s" in err["message"]
        assert elapsed < 60
        assert server.events("load_stalled")
        deadline = time.monotonic() + 10
        while _group(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group(server) == [] and _zombie_children(server) == []  # the stalled runner was killed
        status, models = server.call("GET", "/internal/models")
        rt = next(m for m in models["models"] if m["name"] == Q4)
        assert rt["state"] == "failed" and "no progress" in rt["error"]
        status, body = server.call("GET", "/api/models")
        assert status == 200  # the server itself keeps serving
    finally:
        server.stop()


def test_a_runner_frozen_while_loading_fails_the_load_within_load_timeout(tmp_path):
    """A runner that stops (SIGSTOP) mid-load answers nothing, not even /health: the health probe's
    timeout is no crash of the monitor (issue 16); no progress for load_timeout kills the runner and the
    request gets load_stalled in about load_timeout plus one probe, not after a fixed 60 s."""
    freeze = Path(__file__).parent / "frozen_load"  # its sitecustomize SIGSTOPs every runner mid-load
    server = Server(tmp_path, base_settings(load_timeout="3s"), env={"PYTHONPATH": f"{freeze}:{REPO_ROOT}"})
    try:
        t0 = time.monotonic()
        status, body = server.call("POST", "/v1/chat/completions", _chat(Q4), timeout=120)
        elapsed = time.monotonic() - t0
        assert status == 503, body
        assert assert_openai_error(body)["code"] == "load_stalled"
        assert elapsed < 30, elapsed
        deadline = time.monotonic() + 10
        while _group(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group(server) == [] and _zombie_children(server) == []  # the frozen runner was killed
        status, body = server.call("GET", "/ready")
        assert status == 200  # the server itself keeps serving
    finally:
        server.stop()


def test_a_second_serve_on_a_busy_port_exits_at_once_even_with_a_preload(tmp_path):
    """The port is bound before anything starts (issue 16: with a preloaded model a second serve on a busy
    port used to start the preload first, then hang and ignore SIGTERM)."""
    (tmp_path / "a").mkdir()
    server = Server(tmp_path / "a", base_settings())
    try:
        config = write_config(tmp_path / "second.toml", **base_settings(models={Q4: {"preload": True}}))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "mullama.cli", "serve", "--config", str(config),
                               "--port", str(server.port)], capture_output=True, text=True, timeout=60,
                              cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert f"cannot listen on 127.0.0.1:{server.port}" in proc.stderr
        assert "model_loading" not in proc.stderr  # nothing was started
        assert time.monotonic() - t0 < 30
        assert server.call("GET", "/health")[0] == 200  # the first one is untouched
    finally:
        server.stop()



async def test_a_runner_frozen_mid_stream_is_detected_killed_and_replaced(tmp_path):
    """SIGSTOP of a serving runner (issue 16: streams stalled with no bytes and no error, and /ready and
    /api/ps said ready): the liveness probe misses twice, the runner is killed, both streams end with a
    clear runner_unresponsive error, /ready names the model as failed, and the next request starts a
    new runner."""
    server = Server(tmp_path, base_settings(n_parallel=2, runner_probe_interval="0.5s",
                                            runner_probe_timeout="1s"))
    try:
        assert server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))[0] == 200
        frozen = _ps(server)[0]["pid"]
        body = {"model": Q4, "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": 2000, "stream": True, "ignore_eos": True}

        async def stream(session: aiohttp.ClientSession) -> str:
            async with session.post(server.url + "/v1/chat/completions", json=body) as resp:
                if resp.status != 200:  # it reached the runner only after the freeze: a plain error answer
                    return (await resp.json())["error"]["code"]
                async for line in resp.content:
                    if line.startswith(b"data: ") and b'"error"' in line:
                        return json.loads(line[6:])["error"]["code"]
                    if line.startswith(b"data: ") and b'"content"' in line:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(frozen, signal.SIGSTOP)
            return "finished"

        t0 = time.monotonic()
        async with aiohttp.ClientSession() as session:
            codes = await asyncio.wait_for(asyncio.gather(stream(session), stream(session)), 60)
        assert codes == ["runner_unresponsive", "runner_unresponsive"], codes
        assert time.monotonic() - t0 < 30
        assert server.events("runner_unresponsive")
        # the streams end when the kill breaks their connections; the exit is recorded a moment later
        ready = await _until(lambda: (r := server.call("GET", "/ready"))[0] == 200 and Q4 in r[1]["failed"]
                             and r[1], 10, "/ready to name the frozen model as failed")
        assert "stopped responding" in ready["failed"][Q4]
        assert not psutil.pid_exists(frozen) or psutil.Process(frozen).status() == psutil.STATUS_ZOMBIE
        status, out = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2), timeout=120)
        assert status == 200 and out["choices"][0]["message"]["content"]
        assert _ps(server)[0]["pid"] != frozen
    finally:
        server.stop()


async def test_a_runner_whose_decode_loop_is_stuck_is_detected_killed_and_replaced(tmp_path):
    """The runner's HTTP side answers but its C++ loop is stuck (issue 16: /health passed, so its streams
    waited until the client gave up). ``stalled_loop/stall_write.c``, LD_PRELOADed into the runners, blocks
    the loop's eventfd write once a flag file exists; /health then reports the loop in one pass for ever,
    and past ``runner_stall_timeout`` the runner is killed and its stream ends with runner_unresponsive."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler builds the extension; the drill needs it too"
    lib, flag = tmp_path / "stall_write.so", tmp_path / "stall-now"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(lib),
                    str(Path(__file__).parent / "stalled_loop" / "stall_write.c"), "-ldl"], check=True, timeout=60)
    server = Server(tmp_path, base_settings(n_parallel=1, runner_probe_interval="0.5s", runner_stall_timeout="8s"),
                    env={"LD_PRELOAD": str(lib), "MULLAMA_TEST_STALL_LOOP_FILE": str(flag)})
    try:
        assert server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))[0] == 200
        stuck = _ps(server)[0]["pid"]
        body = {"model": Q4, "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": 2000, "stream": True, "ignore_eos": True}
        t0 = time.monotonic()
        code = "finished"
        async with aiohttp.ClientSession() as session, session.post(server.url + "/v1/chat/completions",
                                                                    json=body) as resp:
            assert resp.status == 200
            async for line in resp.content:
                if line.startswith(b"data: ") and b'"error"' in line:
                    code = json.loads(line[6:])["error"]["code"]
                    break
                if line.startswith(b"data: ") and b'"content"' in line:
                    flag.touch()
        assert code == "runner_unresponsive"
        assert time.monotonic() - t0 < 30
        (event,) = server.events("runner_unresponsive")
        assert "decode loop made no progress" in event["reason"]
        ready = await _until(lambda: (r := server.call("GET", "/ready"))[0] == 200 and Q4 in r[1]["failed"]
                             and r[1], 10, "/ready to name the stuck model as failed")
        assert "decode loop" in ready["failed"][Q4]
        flag.unlink()
        status, out = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2), timeout=120)
        assert status == 200 and out["choices"][0]["message"]["content"]
        assert _ps(server)[0]["pid"] != stuck
    finally:
        server.stop()
