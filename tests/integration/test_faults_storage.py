"""Fault tolerance with real processes: broken model files, unreadable models directories and a full
disk under the event log; the good model keeps serving. Shared helpers in ``faults_harness.py``.

Each test starts its own ``mullama serve`` (``supervisor_harness.Server``) in its own
process group; runners join that group, so "no orphans" means: nothing of the group is left
once the supervisor is gone, and no zombie sits under a live supervisor. Waits are generous
polls, never sleeps.
"""

# ruff: noqa: F811  (test parameters named after the fixtures imported from faults_harness)
from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
from pathlib import Path

import aiohttp
import gguf_factory
import pytest
from faults_harness import (  # noqa: F401  (_second_model and clients are fixtures)
    ONE_THREAD,
    Q4,
    _chat,
    _group,
    _long,
    _ps,
    _second_model,
    _Stream,
    _until,
    clients,
)
from supervisor_harness import Server, assert_openai_error, base_settings, write_config

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

