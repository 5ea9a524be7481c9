"""Pulling models from a hub: every scenario against a local stand-in (``fake_hub.py``) that serves the
real SmolLM2 bytes -- success, resume after a cut, a wrong hash, 401/404/500, a slow server (progress
moves, cancel works), concurrent pulls sharing one download, already-present models, split sets, the
disk check; ``mullama pull`` under a pseudo-terminal; and, against a real ``mullama serve``,
``/api/pull`` (NDJSON and not) / ``/api/copy`` / ``/api/delete`` through the official ``ollama``
client (sync and async), the pull events on ``/internal/events``, ``mullama rm`` of a loaded model,
and ``mullama serve --model ORG/REPO --quant Q``.

No test reaches a real hub: every store and server here is pointed at the stand-in.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import gguf
import numpy as np
import ollama
import pytest
from fake_hub import FakeHub
from supervisor_harness import REPO_ROOT, Server, base_settings

from mullama.catalog import Catalog
from mullama.errors import (
    DigestMismatch,
    HubUnavailable,
    InsufficientStorage,
    PullForbidden,
    PullNotFound,
    PullUnauthorized,
)
from mullama.store import download, manifest
from mullama.store.hub import Hub
from mullama.store.store import Store

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
NAME = "test-org/smollm2-135m-instruct-gguf:q4_1"
SERVED = "smollm2-135m-instruct:q4_1"
SPLIT_REPO = "test-org/Split-GGUF"


def _write_split(folder: Path) -> dict[str, Path]:
    """A tiny llama GGUF split in 2 parts, named as the hub names split files."""
    folder.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(folder / "split-Q8_0.gguf"), "llama", split_max_tensors=2)
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tensor("token_embd.weight", np.ones((8, 4), dtype=np.float32))
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(4, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    parts = sorted(folder.glob("split-Q8_0-*.gguf"))
    assert len(parts) == 2, parts
    return {p.name: p for p in parts}


@pytest.fixture(scope="module")
def hub(smollm_path: Path, tmp_path_factory) -> Iterator[FakeHub]:
    split = _write_split(tmp_path_factory.mktemp("split"))
    with FakeHub(
        {REPO: {FILE: smollm_path, "SmolLM2-135M-Instruct-Q8_0-renamed.gguf": smollm_path}, SPLIT_REPO: split}
    ) as h:
        yield h


@pytest.fixture(autouse=True)
def _clean_hub(request) -> Iterator[None]:
    if "hub" in request.fixturenames:
        h = request.getfixturevalue("hub")
        h.faults = type(h.faults)()
        h.log.clear()
    yield


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


def store(hub: FakeHub, models: Path, *, token: str | None = None, retries: int = 3, emit=None) -> Store:
    return Store([models], Hub(hub.url, token), retries=retries, emit=emit)


def final_path(models: Path) -> Path:
    return models / "smollm2-135m-instruct" / FILE


# ---------------------------------------------------------------------- the store, in process


async def test_pull_success(hub: FakeHub, models: Path, smollm_path: Path) -> None:
    seen: list[dict] = []
    events: list[tuple[str, dict]] = []
    s = store(hub, models, emit=lambda kind, **f: events.append((kind, f)))
    try:
        m = await s.pull(f"hf.co/{REPO}:Q4_1", seen.append)
    finally:
        await s.close()
    assert m.name == NAME and m.repo == REPO and m.quant == "q4_1" and m.revision == "main"
    sha = hub.sha256(REPO, FILE)
    assert [(f.name, f.path, f.size, f.sha256) for f in m.files] == [
        (FILE, f"smollm2-135m-instruct/{FILE}", smollm_path.stat().st_size, sha)
    ]
    assert final_path(models).read_bytes() == smollm_path.read_bytes()
    assert not download.partial_path(final_path(models)).exists()
    statuses = [o["status"] for o in seen]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    moving = [o for o in seen if "completed" in o]
    assert moving and all(
        o["status"] == f"pulling {sha[:12]}" and o["digest"] == f"sha256:{sha}" for o in moving
    )
    assert moving[-1]["completed"] == moving[-1]["total"] == smollm_path.stat().st_size
    assert [o["completed"] for o in moving] == sorted(o["completed"] for o in moving)
    assert manifest.read_all(models) == [m]
    cat = Catalog.scan([models])
    assert cat.resolve(NAME).name == cat.resolve(SERVED).name == SERVED
    assert cat.resolve(f"{REPO}").origin == m
    kinds = [k for k, _ in events]
    assert kinds[0] == "pull_started" and kinds[-1] == "pull_done" and "pull_progress" in kinds
    assert events[-1][1]["downloaded"] == smollm_path.stat().st_size


async def test_already_present_is_not_downloaded_again(hub: FakeHub, models: Path) -> None:
    s = store(hub, models)
    try:
        first = await s.pull(f"{REPO}:q4_1")
        hub.log.clear()
        seen: list[dict] = []
        again = await s.pull(f"{REPO.upper()}:Q4_1", seen.append)
        bare = await s.pull(REPO)  # no quant: the pulled one is there
    finally:
        await s.close()
    assert again == first == bare and hub.log == []  # not even the listing
    assert seen[-1] == {"status": "success"} and "already present" in seen[-2]["status"]


async def test_resume_after_a_cut(hub: FakeHub, models: Path, smollm_path: Path) -> None:
    cut = 30 << 20
    hub.faults.cut_after = cut
    s = store(hub, models, retries=0)
    try:
        with pytest.raises(HubUnavailable, match="pull again to resume"):
            await s.pull(f"{REPO}:q4_1")
        part = download.partial_path(final_path(models))
        kept = part.stat().st_size
        assert 0 < kept <= cut and not final_path(models).exists()
        assert Catalog.scan([models]).entries() == []  # a partial file never looks like a model
        m = await s.pull(f"{REPO}:q4_1")
    finally:
        await s.close()
    gets = hub.gets(FILE)
    assert [g[2] for g in gets] == [None, f"bytes={kept}-"]
    assert final_path(models).read_bytes() == smollm_path.read_bytes()
    assert m.files[0].sha256 == hub.sha256(REPO, FILE) and not part.exists()


async def test_a_cut_is_resumed_within_one_pull(hub: FakeHub, models: Path) -> None:
    hub.faults.cut_after, hub.faults.cuts = 20 << 20, 2
    s = store(hub, models)
    try:
        await s.pull(f"{REPO}:q4_1")
    finally:
        await s.close()
    ranges = [g[2] for g in hub.gets(FILE)]
    assert len(ranges) == 3 and ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])


async def test_server_ignoring_range_restarts_cleanly(hub: FakeHub, models: Path, smollm_path: Path) -> None:
    part = download.partial_path(final_path(models))
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that is not the start of the file")
    hub.faults.ignore_range = True
    s = store(hub, models)
    try:
        await s.pull(f"{REPO}:q4_1")
    finally:
        await s.close()
    assert final_path(models).read_bytes() == smollm_path.read_bytes()


async def test_wrong_hash_is_rejected_and_removed(hub: FakeHub, models: Path) -> None:
    hub.faults.wrong_hash = True
    s = store(hub, models)
    try:
        with pytest.raises(DigestMismatch) as info:
            await s.pull(f"{REPO}:q4_1")
    finally:
        await s.close()
    assert info.value.status == 502 and "does not match" in str(info.value)
    folder = models / "smollm2-135m-instruct"
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == []
    assert manifest.read_all(models) == [] and Catalog.scan([models]).entries() == []


@pytest.mark.parametrize(
    "fault,name,error,status,fragment",
    [
        ({"token": "s3cret"}, f"{REPO}:q4_1", PullUnauthorized, 401, "HF_TOKEN"),
        ({}, "test-org/nothing-here", PullNotFound, 404, "not found"),
        ({}, f"{REPO}:q2_k", PullNotFound, 404, "available quantisations: Q4_1, Q8_0"),
        ({"status": 500}, f"{REPO}:q4_1", HubUnavailable, 502, "HTTP 500"),
        ({"status": 403}, f"{REPO}:q4_1", PullForbidden, 403, "HF_TOKEN"),
        ({"file_status": 500}, f"{REPO}:q4_1", HubUnavailable, 502, "HTTP 500"),
        ({"file_status": 401}, f"{REPO}:q4_1", PullUnauthorized, 401, "HF_TOKEN"),
        ({"file_status": 404}, f"{REPO}:q4_1", PullNotFound, 404, "not found"),
    ],
)
async def test_hub_errors_are_clear(
    hub: FakeHub, models: Path, fault: dict, name: str, error: type, status: int, fragment: str
) -> None:
    for key, value in fault.items():
        setattr(hub.faults, key, value)
    s = store(hub, models, retries=1)
    try:
        with pytest.raises(error) as info:
            await s.pull(name)
    finally:
        await s.close()
    assert info.value.status == status and fragment in str(info.value), str(info.value)
    assert not final_path(models).exists() and manifest.read_all(models) == []


async def test_token_is_sent(hub: FakeHub, models: Path) -> None:
    hub.faults.token = "s3cret"
    s = store(hub, models, token="s3cret")
    try:
        assert (await s.pull(f"{REPO}:q4_1")).name == NAME
    finally:
        await s.close()


async def test_no_hub_at_all_is_a_clear_error(models: Path) -> None:
    s = Store([models], Hub("http://127.0.0.1:9", None))
    try:
        with pytest.raises(HubUnavailable, match="cannot reach the hub at http://127.0.0.1:9"):
            await s.pull(f"{REPO}:q4_1")
    finally:
        await s.close()


async def test_slow_server_progress_moves_and_cancel_keeps_a_resumable_partial(
    hub: FakeHub, models: Path, smollm_path: Path
) -> None:
    hub.faults.rate = 8 << 20  # 8 MiB/s: ~12 s for the whole file
    seen: list[int] = []
    s = store(hub, models)
    try:
        task = asyncio.ensure_future(s.pull(f"{REPO}:q4_1", lambda o: seen.append(o.get("completed", -1))))
        deadline = time.monotonic() + 30
        while len({c for c in seen if c > 0}) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 5  # cancel is prompt (generous bound for a loaded 2-core box)
        moving = [c for c in seen if c > 0]
        assert len(set(moving)) >= 4 and moving == sorted(moving)
        part = download.partial_path(final_path(models))
        kept = part.stat().st_size
        assert 0 < kept < smollm_path.stat().st_size and not final_path(models).exists()
        hub.faults.rate = None
        await s.pull(f"{REPO}:q4_1")
    finally:
        await s.close()
    assert hub.gets(FILE)[-1][2] == f"bytes={kept}-"
    assert final_path(models).read_bytes() == smollm_path.read_bytes()


async def test_concurrent_pulls_share_one_download(hub: FakeHub, models: Path) -> None:
    hub.faults.rate = 64 << 20
    s = store(hub, models)
    other = store(hub, models)  # a second store: like a second process, only the file lock is shared
    try:
        a, b, c = await asyncio.gather(
            s.pull(f"{REPO}:q4_1"), s.pull(f"hf.co/{REPO}:Q4_1"), other.pull(f"{REPO}:q4_1")
        )
    finally:
        await s.close()
        await other.close()
    assert a.files == b.files == c.files
    assert len(hub.gets(FILE)) == 1


async def test_one_caller_leaving_does_not_stop_the_shared_download(hub: FakeHub, models: Path) -> None:
    hub.faults.rate = 80 << 20
    s = store(hub, models)
    try:
        first = asyncio.ensure_future(s.pull(f"{REPO}:q4_1"))
        second = asyncio.ensure_future(s.pull(f"{REPO}:q4_1"))
        await asyncio.sleep(0.3)
        first.cancel()
        m = await second
    finally:
        await s.close()
    assert m.name == NAME and len(hub.gets(FILE)) == 1


async def test_split_set_downloads_as_a_set(hub: FakeHub, models: Path) -> None:
    s = store(hub, models)
    try:
        m = await s.pull(f"{SPLIT_REPO}:Q8_0")
    finally:
        await s.close()
    assert [f.name for f in m.files] == ["split-Q8_0-00001-of-00002.gguf", "split-Q8_0-00002-of-00002.gguf"]
    entry = Catalog.scan([models]).resolve(f"{SPLIT_REPO}:q8_0")
    assert len(entry.parts) == 2 and entry.error is None and entry.name == "split:q8_0"


async def test_disk_space_is_checked_first(
    hub: FakeHub, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "disk_free", lambda _folder: 10 << 20)
    s = store(hub, models)
    try:
        with pytest.raises(InsufficientStorage) as info:
            await s.pull(f"{REPO}:q4_1")
    finally:
        await s.close()
    assert info.value.status == 507 and "10.0 MiB is free" in str(info.value)
    assert hub.gets() == []


# ---------------------------------------------------------------------- mullama pull under a terminal


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


def _cli_env(hub: FakeHub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MULLAMA_", "HF_"))}
    env.update(HF_ENDPOINT=hub.url, PYTHONPATH=str(REPO_ROOT), TERM="xterm-256color", COLUMNS="120")
    return env


def test_cli_pull_shows_a_moving_progress_bar(hub: FakeHub, models: Path, smollm_path: Path) -> None:
    hub.faults.rate = 40 << 20  # ~2.5 s: several refreshes of the bar
    code, out = _pty_run(
        ["-m", "mullama.cli", "pull", f"{REPO}:Q4_1", "--models-dir", str(models)], _cli_env(hub)
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
        _cli_env(hub),
        interrupt_after=0.5,
    )
    assert code == 130, out
    assert "resume" in out and "Traceback" not in out
    part = download.partial_path(final_path(models))
    assert part.exists() and part.stat().st_size > 0 and not final_path(models).exists()
    hub.faults.rate = None
    proc = subprocess.run(
        [sys.executable, "-m", "mullama.cli", "pull", f"{REPO}:Q4_1", "--models-dir", str(models)],
        env=_cli_env(hub),
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
        env=_cli_env(hub),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "available quantisations: Q4_1, Q8_0" in proc.stderr


# ---------------------------------------------------------------------- through a server (ollama client)


@pytest.fixture(scope="module")
def server(hub: FakeHub, tmp_path_factory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("pull-server")
    srv = Server(
        work,
        base_settings(
            models_dirs=[str(work / "models")],
            bundled_model=False,
            threads=1,
            threads_batch=1,
            n_parallel=1,
            prefetch="none",
            keep_alive="-1",
        ),
        env={"HF_ENDPOINT": hub.url},
    )
    srv.models = work / "models"  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()


def _delete(server: Server, name: str) -> None:
    server.call("DELETE", "/api/delete", {"model": name, "force": True})


def test_api_pull_streams_ndjson_with_the_ollama_client(server: Server, hub: FakeHub) -> None:
    _delete(server, NAME)
    client = ollama.Client(host=server.url)
    parts = list(client.pull(f"hf.co/{REPO}:Q4_1", stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    sha = hub.sha256(REPO, FILE)
    moving = [p for p in parts if p.completed is not None]
    assert moving and all(p.digest == f"sha256:{sha}" and p.total == 98362432 for p in moving)
    assert moving[-1].completed == 98362432
    status, body = server.call("GET", "/api/models")
    row = next(m for m in body["models"] if m["name"] == SERVED)
    assert (
        row["origin"]["repo"] == REPO and row["origin"]["pulled_at"] and row["origin"]["revision"] == "main"
    )
    status, shown = server.call("GET", f"/api/models/{NAME}")
    assert status == 200 and shown["name"] == SERVED and shown["origin"]["name"] == NAME


async def test_api_pull_async_client_stream_and_not(server: Server, hub: FakeHub) -> None:
    _delete(server, NAME)
    client = ollama.AsyncClient(host=server.url)
    answer = await client.pull(f"{REPO}:q4_1", stream=False)
    assert answer.status == "success"
    hub.log.clear()
    parts = [p async for p in await client.pull(f"{REPO}:q4_1", stream=True)]
    assert parts[-1].status == "success" and any("already present" in (p.status or "") for p in parts)
    assert hub.gets() == []


@pytest.mark.parametrize(
    "name,status,fragment",
    [
        ("test-org/nothing-here", 404, "not found"),
        (f"{REPO}:q2_k", 404, "available quantisations: Q4_1, Q8_0"),
        ("../etc/passwd", 400, "ORG/REPO"),
    ],
)
def test_api_pull_errors_reach_the_ollama_client(
    server: Server, name: str, status: int, fragment: str
) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=server.url).pull(name, stream=True).__next__()
    assert info.value.status_code == status and fragment in info.value.error, info.value.error


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({}, "model is required"),
        ({"model": 5}, "invalid request body"),
        ({"name": "a/b", "stream": "x"}, "invalid"),
    ],
)
def test_api_pull_bad_bodies(server: Server, body: dict, fragment: str) -> None:
    status, answer = server.call("POST", "/api/pull", body)
    assert status == 400 and set(answer) == {"error"} and fragment in answer["error"], answer


def test_api_pull_error_mid_stream_is_an_error_line(server: Server, hub: FakeHub) -> None:
    _delete(server, NAME)
    hub.faults.wrong_hash = True
    with pytest.raises(ollama.ResponseError) as info:
        list(ollama.Client(host=server.url).pull(f"{REPO}:q4_1", stream=True))
    assert "does not match" in info.value.error


def test_pull_events_on_internal_events(server: Server) -> None:
    _delete(server, NAME)

    async def go() -> list[dict]:
        records: list[dict] = []
        async with aiohttp.ClientSession() as session, session.get(server.url + "/internal/events") as events:
            assert (await events.content.readline()).startswith(b":")
            pull = asyncio.ensure_future(ollama.AsyncClient(host=server.url).pull(f"{REPO}:q4_1"))
            async for raw in events.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    records.append(json.loads(line[6:]))
                    if records[-1]["event"] in ("pull_done", "pull_failed"):
                        break
            await pull
        return records

    records = asyncio.run(asyncio.wait_for(go(), 120))
    kinds = [r["event"] for r in records if r["event"].startswith("pull_")]
    assert kinds[0] == "pull_started" and kinds[-1] == "pull_done" and "pull_progress" in kinds
    progress = [r for r in records if r["event"] == "pull_progress"]
    assert progress[-1]["completed"] == progress[-1]["total"] == 98362432
    assert all(r["model"] == NAME for r in records if r["event"].startswith("pull_"))


def test_api_copy_and_delete_with_the_ollama_client(server: Server) -> None:
    client = ollama.Client(host=server.url)
    client.pull(f"{REPO}:q4_1")
    assert client.copy(NAME, "my-smol").status == "success"
    listed = [m.model for m in client.list().models]  # clients check list() after a pull or a copy
    assert NAME in listed and "my-smol" in listed and SERVED in listed and len(listed) == len(set(listed))
    status, shown = server.call("GET", "/api/models/my-smol")
    assert status == 200 and shown["name"] == SERVED
    with pytest.raises(ollama.ResponseError) as info:
        client.copy(NAME, "bad name!")
    assert info.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as info:
        client.copy("nothing-like-this", "x")
    assert info.value.status_code == 404
    assert client.delete("my-smol").status == "success"
    assert server.call("GET", "/api/models/my-smol")[0] == 404
    assert server.call("GET", f"/api/models/{NAME}")[0] == 200  # the pulled name still has the files
    assert client.delete(NAME).status == "success"
    assert server.call("GET", f"/api/models/{SERVED}")[0] == 404
    with pytest.raises(ollama.ResponseError) as info:
        client.delete(NAME)
    assert info.value.status_code == 404 and "not been pulled" in info.value.error


async def test_api_delete_async_client(server: Server) -> None:
    client = ollama.AsyncClient(host=server.url)
    await client.pull(f"{REPO}:q4_1")
    assert (await client.copy(NAME, "smol-copy")).status == "success"
    assert (await client.delete("smol-copy")).status == "success"


def test_list_and_show_say_where_a_model_came_from(server: Server) -> None:
    ollama.Client(host=server.url).pull(f"{REPO}:q4_1")
    env = {**os.environ, "MULLAMA_HOST": server.url, "PYTHONPATH": str(REPO_ROOT)}
    cli = [sys.executable, "-m", "mullama.cli"]
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0 and f"hf.co/{REPO}" in listed.stdout, listed.stderr
    shown = subprocess.run(
        [*cli, "show", f"hf.co/{REPO}:Q4_1"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert f"repository     {REPO}" in shown.stdout and "pulled at" in shown.stdout and SERVED in shown.stdout


def test_a_pull_made_elsewhere_is_servable_at_once(server: Server, hub: FakeHub) -> None:
    _delete(server, NAME)
    assert server.call("GET", f"/api/models/{NAME}")[0] == 404  # not pulled (the catalog has just looked)
    models = server.models  # type: ignore[attr-defined]
    subprocess.run(
        [sys.executable, "-m", "mullama.cli", "pull", f"{REPO}:Q4_1", "--models-dir", str(models)],
        env=_cli_env(hub),
        check=True,
        capture_output=True,
        timeout=120,
    )
    status, shown = server.call("GET", f"/api/models/{NAME}")  # a miss rescans: no wait for the catalog TTL
    assert status == 200 and shown["name"] == SERVED


def test_a_client_that_leaves_stops_the_download(server: Server, hub: FakeHub) -> None:
    _delete(server, NAME)
    hub.faults.rate = 4 << 20

    async def go() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.url + "/api/pull", json={"model": f"{REPO}:q4_1"}) as resp,
        ):
            async for raw in resp.content:
                if b'"completed":' in raw and json.loads(raw)["completed"] > 0:
                    break  # leave mid-download

    asyncio.run(asyncio.wait_for(go(), 60))
    deadline = time.monotonic() + 20
    records: list[dict] = []
    while time.monotonic() < deadline:
        _, sse = server.call("GET", "/internal/events?backlog=300&follow=0")
        records = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")]
        if any(r["event"] == "pull_failed" and r["type"] == "cancelled" for r in records):
            break
        time.sleep(0.2)
    assert records[-1]["event"] == "pull_failed" and records[-1]["type"] == "cancelled", records[-3:]
    gets = len(hub.gets(FILE))
    time.sleep(0.5)
    assert len(hub.gets(FILE)) == gets  # nothing goes on in the background
    hub.faults.rate = None
    parts = list(ollama.Client(host=server.url).pull(f"{REPO}:q4_1", stream=True))
    assert parts[-1].status == "success" and hub.gets(FILE)[-1][2].startswith("bytes=")  # resumed


def test_rm_refused_while_loaded_and_force_unloads(server: Server) -> None:
    ollama.Client(host=server.url).pull(f"{REPO}:q4_1")
    status, body = server.call("POST", "/api/load", {"model": NAME})
    assert status == 200 and body["state"] == "ready", body
    env = {**os.environ, "MULLAMA_HOST": server.url, "PYTHONPATH": str(REPO_ROOT)}
    rm = [sys.executable, "-m", "mullama.cli", "rm", NAME]
    proc = subprocess.run(rm, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "is ready" in proc.stderr and "--force" in proc.stderr, proc.stderr
    assert server.call("GET", "/api/ps")[1]["models"]
    proc = subprocess.run([*rm, "--force"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and f"deleted '{NAME}'" in proc.stdout, proc.stderr
    assert server.call("GET", "/api/ps")[1]["models"] == []
    assert server.call("GET", f"/api/models/{SERVED}")[0] == 404
    _, sse = server.call("GET", "/internal/events?backlog=500&follow=0")
    records = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")]
    assert any(
        r["event"] == "model_unloaded" and r["model"] == SERVED and r["reason"] == "deleted" for r in records
    )
    assert any(r["event"] == "model_deleted" and r["model"] == SERVED for r in records)


def test_rm_without_a_server_deletes_the_files(hub: FakeHub, models: Path) -> None:
    env = {**_cli_env(hub), "MULLAMA_HOST": "http://127.0.0.1:9"}
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
