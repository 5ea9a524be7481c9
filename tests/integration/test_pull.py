"""Pulling models from a hub, the store in process, against a local stand-in (``fake_hub.py``) that serves
the real SmolLM2 bytes: success, resume after a cut, a wrong hash, 401/404/500, a slow server (progress
moves, cancel works), concurrent pulls sharing one download, already-present models, split sets, the
disk check. The CLI is in ``test_pull_cli.py``, a real server's pull API in ``test_pull_server.py``.

No test reaches a real hub: every store here is pointed at the stand-in.
"""

# ruff: noqa: F811  (test parameters named after the fixtures imported from pull_harness)
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub
from pull_harness import (  # noqa: F401  (hub, clean_hub and models are fixtures)
    FILE,
    NAME,
    REPO,
    SERVED,
    SPLIT_REPO,
    clean_hub,
    final_path,
    hub,
    models,
    store,
)

from mullama.core.errors import (
    DigestMismatch,
    HubUnavailable,
    InsufficientStorage,
    PullForbidden,
    PullNotFound,
    PullUnauthorized,
)
from mullama.models import manifest
from mullama.models.catalog import Catalog
from mullama.store import download
from mullama.store.hub import Hub
from mullama.store.store import Store


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
