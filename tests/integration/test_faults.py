"""Fault tolerance with real processes: killed runners and supervisors, broken model files,
unreadable directories, a full disk, a stalled load, and clients that walk away mid-stream.

Each test starts its own ``mullama serve`` (``supervisor_harness.Server``) in its own
process group; runners join that group, so "no orphans" means: nothing of the group is left
once the supervisor is gone, and no zombie sits under a live supervisor. Bounds that the
issue names (1 s for the streams of a killed runner, 2 s for runners after a killed
supervisor) are asserted as given; the others are generous waits, never sleeps.

The slow ones (over ~15 s) are marked ``slow``:
``.venv/bin/python -m pytest -m slow tests/integration/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import gguf_factory
import openai
import psutil
import pytest
from supervisor_harness import Server, assert_openai_error, base_settings, q8_variant, write_config

Q4, Q8 = "smollm2:q4_1", "smollm2:q8_0"
ONE_THREAD = {"threads": 1, "threads_batch": 1}


@pytest.fixture(scope="module", autouse=True)
def _second_model():
    q8_variant()


# ---------------------------------------------------------------- helpers


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: it no longer runs); reaping between two checks is not a failure."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _group(server: Server) -> list[psutil.Process]:
    """Live processes of the server's process group other than the supervisor (its runners)."""
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if proc.pid != server.proc.pid and os.getpgid(proc.pid) == server.proc.pid \
                    and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc)
    return out


def _zombie_children(server: Server) -> list[int]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [c.pid for c in psutil.Process(server.proc.pid).children(recursive=True)
                if c.status() == psutil.STATUS_ZOMBIE]
    return []


async def _until(check: Callable[[], object], timeout: float, what: str, step: float = 0.05) -> object:
    """Poll ``check`` (sync) until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


@pytest.fixture
async def clients():
    """``clients(server)``: an OpenAI async client of the server, closed after the test."""
    made: list[openai.AsyncOpenAI] = []

    def make(server: Server) -> openai.AsyncOpenAI:
        made.append(openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300))
        return made[-1]

    yield make
    for client in made:
        await client.close()


def _chat(model: str, text: str = "Name a colour.", n: int = 8) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": n, "temperature": 0}


def _long(model: str, n: int = 2000) -> dict:
    return {**_chat(model, "Count from one to one thousand.", n), "stream": True, "extra_body": {"ignore_eos": True}}


def _ps(server: Server) -> list[dict]:
    status, body = server.call("GET", "/api/ps")
    assert status == 200, body
    return body["models"]


class _Stream:
    """One streamed chat completion, recorded: chunks seen, how it ended and when."""

    def __init__(self) -> None:
        self.chunks = 0
        self.first = asyncio.Event()
        self.error: BaseException | None = None
        self.finish: str | None = None
        self.ended = 0.0

    async def run(self, client: openai.AsyncOpenAI, body: dict) -> _Stream:
        try:
            stream = await client.chat.completions.create(**body)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    self.chunks += 1
                    self.first.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    self.finish = chunk.choices[0].finish_reason
        except openai.APIError as exc:
            self.error = exc
        self.ended = time.monotonic()
        return self


async def _start_streams(client: openai.AsyncOpenAI, body: dict, n: int, timeout: float = 120.0
                         ) -> tuple[list[_Stream], list[asyncio.Future]]:
    streams = [_Stream() for _ in range(n)]
    tasks = [asyncio.ensure_future(s.run(client, body)) for s in streams]
    await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), timeout)
    return streams, tasks


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


# ---------------------------------------------------------------- broken model files


def _broken_models(root: Path, smollm_path: Path) -> dict[str, Path]:
    """A models dir of bad files, one family each (the sub-directory names the family)."""
    header_end = gguf_factory.data_offset(smollm_path)
    with smollm_path.open("rb") as fh:
        header = fh.read(header_end)
    files = {}
    cut = root / "cut" / "SmolLM2-135M-Instruct.Q4_1.gguf"  # a download that stopped half-way
    cut.parent.mkdir(parents=True)
    cut.write_bytes(header)
    os.truncate(cut, smollm_path.stat().st_size // 2)  # sparse: only the header is real
    files["cut"] = cut
    flipped = bytearray(header)
    flipped[24:32] = struct.pack("<Q", 2**40)  # the first key's length: 1 TiB
    corrupt = root / "corrupt" / "model.Q4_1.gguf"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(bytes(flipped))
    files["corrupt"] = corrupt
    junk = root / "junk" / "model.gguf"  # not a GGUF at all
    junk.parent.mkdir()
    gguf_factory.write_not_gguf(junk, "text")
    files["junk"] = junk
    alien = root / "alien" / "model.gguf"  # a sound header, an architecture llama.cpp does not know
    alien.parent.mkdir()
    gguf_factory.write_unknown_arch(alien)
    files["alien"] = alien
    return files


async def _post(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_broken_gguf_files_are_listed_with_their_error_and_the_good_model_keeps_serving(
        tmp_path, smollm_path, clients):
    root = tmp_path / "models"
    _broken_models(root, smollm_path)
    server = Server(tmp_path, base_settings(models_dirs=[str(root)], **ONE_THREAD))
    try:
        status, cat = server.call("GET", "/api/models")
        assert status == 200
        rows = {m["family"]: m for m in cat["models"]}
        assert rows["smollm2"]["error"] is None
        assert "truncated" in rows["cut"]["error"] and "cut" in rows["cut"]["path"]
        assert "bytes long" in rows["corrupt"]["error"] and "corrupt GGUF" in rows["corrupt"]["error"]
        assert "not a GGUF file" in rows["junk"]["error"]
        assert rows["alien"]["error"] is None  # its header is fine: only loading can tell
        status, listing = server.call("GET", "/v1/models")
        ids = {m["id"] for m in listing["data"]}
        assert status == 200 and Q4 in ids and ids.isdisjoint({rows[f]["name"] for f in ("cut", "corrupt", "junk")})
        status, body = server.call("GET", f"/v1/models/{rows['cut']['name']}")
        assert status == 422 and "truncated" in assert_openai_error(body)["message"]
        status, body = server.call("POST", "/api/load", {"model": rows["corrupt"]["name"]})
        assert status == 422 and "corrupt GGUF" in assert_openai_error(body)["message"]

        client = clients(server)
        good = _Stream()
        good_task = asyncio.ensure_future(good.run(client, _long(Q4, n=48)))
        async with aiohttp.ClientSession() as session:
            url = server.url + "/v1/chat/completions"
            bad = await asyncio.gather(*(_post(session, url, _chat(rows[f]["name"]))
                                         for f in ("cut", "corrupt", "junk", "alien")))
        for family, (status, body), fragment in zip(("cut", "corrupt", "junk"), bad,
                                                    ("truncated", "bytes long", "not a GGUF file")):
            err = assert_openai_error(body)
            assert status == 422, (family, body)
            assert fragment in err["message"] and err["param"] == "model" and err["code"] == "invalid_model_error"
        status, body = bad[3]
        err = assert_openai_error(body)
        assert status == 422, body
        print(f"loading an unknown architecture: {status} {err}")
        assert "nosucharch" in err["message"], err  # names what llama.cpp refused
        await asyncio.wait_for(good_task, 120)
        assert good.error is None and good.finish == "length"  # served right through the failures
        again = await client.chat.completions.create(**_chat(Q4, n=2))
        assert again.choices[0].message.content
        assert [m["name"] for m in _ps(server)] == [Q4]
        assert len(_group(server)) == 1  # the alien model's runner did not stay behind
        status, models = server.call("GET", "/internal/models")
        alien = next(m for m in models["models"] if m["family"] == "alien")
        assert alien["state"] == "failed" and "nosucharch" in alien["error"]
    finally:
        server.stop()


# ---------------------------------------------------------------- an unreadable models dir, a full disk


_DROP_DAC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH out of the bounding set: exec loses them
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        sys.exit(f"cannot drop capability {cap}: errno {ctypes.get_errno()}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _without_root_reads(argv: list[str]) -> list[str]:
    """``argv`` (a Python command line) run without the capabilities that let root read anything."""
    return [sys.executable, "-c", _DROP_DAC, *argv]


def _permissions_apply(locked: Path) -> str | None:
    """None if a process started like the server cannot read ``locked``; else why not (for a skip)."""
    if os.geteuid() != 0:
        return None
    probe = subprocess.run(_without_root_reads(["-c", f"import os; os.listdir({str(locked)!r})"]),
                           check=False, capture_output=True, text=True, timeout=30)
    if "PermissionError" in probe.stderr:
        return None
    return ("running as root and cannot drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH here: "
            f"chmod 000 does not stop root ({probe.stderr.strip()[-200:] or 'the directory was readable'})")


async def test_an_unreadable_models_dir_is_reported_and_serving_continues(tmp_path):
    locked = tmp_path / "locked"            # a whole models dir nobody may read
    (locked / "fam").mkdir(parents=True)
    partly = tmp_path / "partly"            # a readable models dir with one unreadable sub-directory ...
    (partly / "secret").mkdir(parents=True)
    sealed = gguf_factory.write_tiny_llama(partly / "sealed.gguf")  # ... and one unreadable model file
    for d in (locked, partly / "secret", sealed):
        d.chmod(0)
    try:
        why = _permissions_apply(locked)
        if why:
            pytest.skip(why)
        settings = base_settings(models_dirs=[str(locked), str(partly)], **ONE_THREAD)
        config = write_config(tmp_path / "unreadable.toml", **dict(settings))
        argv = ["-m", "mullama.cli", "serve", "--config", str(config), "--port", "0"]
        server = Server(tmp_path, settings, argv=_without_root_reads(argv) if os.geteuid() == 0 else None)
        try:
            status, cat = server.call("GET", "/api/models")
            assert status == 200
            errs = cat["dir_errors"]
            assert any(f"cannot read models directory {locked}" in e and "Permission denied" in e for e in errs), errs
            assert any(str(partly / "secret") in e and "Permission denied" in e for e in errs), errs
            [row] = [m for m in cat["models"] if m["path"] == str(sealed)]
            assert "permission denied" in row["error"], row
            [logged] = [e for e in server.events("catalog") if e.get("logger") == "mullama.app"]
            assert len(logged["dir_errors"]) == 2  # said at start too
            status, body = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))
            assert status == 200, body  # the bundled model serves regardless
            status, body = server.call("POST", "/v1/chat/completions", _chat("fam", n=2))
            assert status == 404 and assert_openai_error(body)["code"] == "model_not_found"
        finally:
            server.stop()
    finally:
        for d in (locked, partly / "secret", sealed):
            d.chmod(0o755)


async def test_a_full_disk_under_the_event_log_is_reported_and_serving_continues(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    server = Server(tmp_path, base_settings(event_log="/dev/full", **ONE_THREAD))
    try:
        status, body = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))
        assert status == 200, body
        [disabled] = await _until(lambda: server.events("event_log_disabled"), 10, "the event log to give up")
        assert disabled["path"] == "/dev/full" and "No space left on device" in disabled["error"]
        assert disabled["level"] == "error"
        for _ in range(2):  # and requests go on as before
            status, body = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))
            assert status == 200, body
        status, _ = server.call("GET", "/internal/events?backlog=5&follow=0")
        assert status == 200
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------- a stalled load


def test_a_stalled_load_is_detected_and_reported(tmp_path):
    server = Server(tmp_path, base_settings(load_timeout="3s"), env={"MULLAMA_TEST_STALL_LOAD": "1"})
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


# ---------------------------------------------------------------- clients that walk away


async def _walk_away(session: aiohttp.ClientSession, url: str, model: str, after_first: bool,
                     delay: float) -> str:
    """Start a stream; drop the connection after its first token, or after ``delay`` s (maybe still queued)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 500, "stream": True, "ignore_eos": True}
    try:
        async with asyncio.timeout(None if after_first else delay):
            async with session.post(url, json=body) as resp:
                if resp.status != 200:
                    return f"status {resp.status}"
                async for line in resp.content:
                    if line.startswith(b"data: ") and b'"content"' in line and after_first:
                        resp.close()  # hang up mid-stream
                        return "after_first"
                return "finished"
    except TimeoutError:
        return "after_delay"


async def test_100_clients_hanging_up_mid_stream_free_every_slot(tmp_path):
    server = Server(tmp_path, base_settings(n_parallel=8, **ONE_THREAD))
    try:
        status, _ = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))
        assert status == 200
        rng = random.Random(6)
        url = server.url + "/v1/chat/completions"
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            outcomes = await asyncio.wait_for(asyncio.gather(*(
                _walk_away(session, url, Q4, after_first=i % 3 != 0, delay=rng.uniform(0.05, 1.5))
                for i in range(100))), 180)
        counts = {k: outcomes.count(k) for k in set(outcomes)}
        print(f"100 clients: {counts}")
        assert set(outcomes) <= {"after_first", "after_delay"}, counts

        def settled() -> bool:
            view = server.call("GET", "/internal/scheduler")[1]
            kv = server.call("GET", f"/internal/kv/{Q4}")[1]
            ps = _ps(server)
            return (not view["running"] and not view["queue"] and ps[0]["in_flight"] == 0
                    and all(s["request_id"] is None for s in kv["slots"]))

        await _until(settled, 20, "every slot and in-flight count to be freed", step=0.2)
        status, body = server.call("POST", "/v1/chat/completions", _chat(Q4, n=4))
        assert status == 200 and body["choices"][0]["message"]["content"]
        assert not server.events("unhandled")
        assert len(_group(server)) == 1
    finally:
        server.stop()
