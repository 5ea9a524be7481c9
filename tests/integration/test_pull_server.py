"""Pulling through a real ``mullama serve`` pointed at a local stand-in hub (``fake_hub.py``):
``/api/pull`` (NDJSON and not) / ``/api/copy`` / ``/api/delete`` through the official ``ollama`` client
(sync and async), the pull events on ``/internal/events``, a client that leaves mid-download, and
``mullama list``/``show``/``rm`` of pulled and loaded models.

No test reaches a real hub: every server here is pointed at the stand-in.
"""

# ruff: noqa: F811  (test parameters named after the fixtures imported from pull_harness)
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import aiohttp
import ollama
import pytest
from fake_hub import FakeHub
from pull_harness import (  # noqa: F401  (hub and clean_hub are fixtures)
    FILE,
    NAME,
    REPO,
    SERVED,
    clean_hub,
    cli_env,
    hub,
)
from supervisor_harness import REPO_ROOT, Server, base_settings


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
        env=cli_env(hub),
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



def test_deleting_a_name_without_files_never_touches_the_runner(server: Server) -> None:
    """A copy name owns no files: deleting it (no force) succeeds while the model is loaded and leaves
    the runner alone (issue 16: it was a 409, and with force it unloaded the original)."""
    client = ollama.Client(host=server.url)
    client.pull(f"{REPO}:q4_1")
    assert server.call("POST", "/api/load", {"model": NAME})[0] == 200
    pid = server.call("GET", "/api/ps")[1]["models"][0]["pid"]
    assert client.copy(NAME, "smol-name-only").status == "success"
    assert client.delete("smol-name-only").status == "success"
    [row] = server.call("GET", "/api/ps")[1]["models"]
    assert row["state"] == "ready" and row["pid"] == pid  # the same runner, never unloaded
    assert server.call("GET", f"/api/models/{NAME}")[0] == 200
    _delete(server, NAME)


def test_a_refused_delete_has_no_side_effects(tmp_path) -> None:
    """Deleting the bundled model is refused (400) -- and it stays loaded (issue 16: it was unloaded first)."""
    srv = Server(tmp_path, base_settings(threads=1, threads_batch=1, n_parallel=1, prefetch="none"))
    try:
        assert srv.call("POST", "/api/load", {"model": "smollm2"})[0] == 200
        pid = srv.call("GET", "/api/ps")[1]["models"][0]["pid"]
        for force in (False, True):
            status, body = srv.call("DELETE", "/api/delete", {"model": "smollm2", "force": force})
            assert status == 400 and "bundled" in body["error"], body
        [row] = srv.call("GET", "/api/ps")[1]["models"]
        assert row["state"] == "ready" and row["pid"] == pid
        assert not srv.events("model_unloaded")
    finally:
        srv.stop()
