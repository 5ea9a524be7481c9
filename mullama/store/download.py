"""One file from the hub onto the disk: resumable, verified, atomic, one writer at a time.

- The bytes go to ``.<name>.partial`` next to the target (hidden: the catalog never lists it). A
  pull that was cut, cancelled or killed leaves it; the next one asks for the rest with an HTTP
  ``Range`` request (a server that answers 200 instead of 206 restarts it from zero).
- sha256 is computed while writing (the kept prefix is hashed first on resume) and compared with
  the hub's LFS sha256; a mismatch removes the partial file and raises ``DigestMismatch``. Only a
  complete, verified file is renamed (``os.replace``) to its real name.
- A ``filelock`` lock (``.<name>.lock``) keeps two processes off the same file; the second one
  waits (cancellably) and then finds the file done.

Why not ``huggingface_hub.hf_hub_download(local_dir=...)``: in huggingface_hub 2.x it downloads
into a per-call unique temp file and deletes it on any failure, so an interrupted or cancelled
pull always starts again from byte 0; it checks only the size, not the sha256; it writes its own
``.cache/huggingface`` tree into the models directory; and its progress is a tqdm hook running in
a worker thread that cannot be cancelled. huggingface_hub still does everything else: endpoint,
token and headers, the repository listing with sizes and hashes, file URLs and its errors
(``hub.py``); the transfer is aiohttp, which the server already uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import filelock

from mullama.core.errors import (
    DigestMismatch,
    HubUnavailable,
    InsufficientStorage,
    PullError,
    PullForbidden,
    PullNotFound,
    PullUnauthorized,
)
from mullama.core.units import format_size

__all__ = ["FileJob", "check_space", "disk_free", "fetch", "lock_path", "partial_path", "sha256_file"]

CHUNK = 1 << 20
RETRIES = 3
RETRY_WAIT_S = 0.5
LOCK_POLL_S = 0.2
SPACE_MARGIN = 64 << 20  # keep this much free beyond the download itself
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class FileJob:
    url: str
    headers: dict[str, str]
    dest: Path
    size: int
    sha256: str | None          # None: the hub published none (not an LFS file): the size is checked


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.partial")


def lock_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.lock")


def disk_free(folder: Path) -> int:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    here = Path(folder)
    while not here.exists() and here != here.parent:
        here = here.parent
    return shutil.disk_usage(here).free


def check_space(folder: Path, needed: int) -> None:
    """InsufficientStorage (507) unless ``needed`` bytes (plus a margin) are free under ``folder``."""
    free = disk_free(folder)
    if needed + SPACE_MARGIN > free:
        raise InsufficientStorage(f"not enough disk space in {folder}: the download needs "
                                  f"{format_size(needed)} (+{format_size(SPACE_MARGIN)} margin), "
                                  f"{format_size(free)} is free")


def sha256_file(path: Path, upto: int | None = None) -> hashlib._Hash:
    h = hashlib.sha256()
    left = upto
    with path.open("rb") as fh:
        while left is None or left > 0:
            block = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h


async def _locked(path: Path) -> filelock.BaseFileLock:
    lock = filelock.FileLock(str(path), thread_local=False)
    while True:
        try:
            lock.acquire(timeout=0)
            return lock
        except filelock.Timeout:
            await asyncio.sleep(LOCK_POLL_S)


async def fetch(session: aiohttp.ClientSession, job: FileJob, on_bytes: Callable[[int], None], *,
                retries: int = RETRIES) -> str:
    """Download ``job`` to ``job.dest`` (resuming its partial file); the verified sha256 (hex)."""
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    lock = await _locked(lock_path(job.dest))
    try:
        if job.dest.exists() and job.dest.stat().st_size == job.size:  # another process finished it
            digest = (await asyncio.to_thread(sha256_file, job.dest)).hexdigest()
            if job.sha256 is None or digest == job.sha256:
                on_bytes(job.size)
                return digest
        failures = 0
        while True:
            try:
                h = await _transfer(session, job, on_bytes)
                break
            except (aiohttp.ClientError, TimeoutError, HubUnavailable) as exc:  # transport trouble: retry
                failures += 1
                if failures > retries:
                    if isinstance(exc, HubUnavailable):
                        raise
                    raise HubUnavailable(f"the transfer of {job.dest.name} was interrupted {failures} times "
                                         f"({type(exc).__name__}: {exc}); pull again to resume it") from None
                await asyncio.sleep(RETRY_WAIT_S * failures)
        digest = h.hexdigest()
        part = partial_path(job.dest)
        if job.sha256 is not None and digest != job.sha256:
            part.unlink(missing_ok=True)
            raise DigestMismatch(f"{job.dest.name}: sha256 {digest} does not match the {job.sha256} the hub "
                                 "published; the download was removed")
        await asyncio.to_thread(_fsync_and_replace, part, job.dest)
        return digest
    finally:
        lock.release()


def _fsync_and_replace(part: Path, dest: Path) -> None:
    with part.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, dest)
    with contextlib.suppress(OSError):  # the rename itself survives a crash once the directory is synced
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _http_error(status: int, job: FileJob) -> PullError:
    name = job.dest.name
    if status == 401:
        return PullUnauthorized(f"{name}: the hub needs authentication (HTTP 401): set HF_TOKEN")
    if status == 403:
        return PullForbidden(f"{name}: the hub refused access (HTTP 403): accept the repository's terms and "
                             "set HF_TOKEN")
    if status == 404:
        return PullNotFound(f"{name}: not found on the hub (HTTP 404)")
    if status >= 500:
        return HubUnavailable(f"{name}: the hub failed (HTTP {status}); try again later")
    return PullError(f"{name}: the hub answered HTTP {status}")


async def _transfer(session: aiohttp.ClientSession, job: FileJob, on_bytes: Callable[[int], None]):
    """One GET (ranged when a partial file exists) appended to the partial file; its sha256 object."""
    part = partial_path(job.dest)
    have = part.stat().st_size if part.exists() else 0
    if have > job.size:
        have = 0
    loop = asyncio.get_running_loop()
    h = await asyncio.to_thread(sha256_file, part, have) if have else hashlib.sha256()
    on_bytes(have)
    if have == job.size:
        return h
    headers = dict(job.headers)
    if have:
        headers["Range"] = f"bytes={have}-"
    async with session.get(job.url, headers=headers, timeout=TIMEOUT) as resp:
        if resp.status >= 400 and not (resp.status == 416 and have):
            raise _http_error(resp.status, job)
        start = 0
        if resp.status == 206:
            m = _RANGE.match(resp.headers.get("Content-Range", ""))
            start = int(m.group(1)) if m else -1
        if start != have:  # 200 (Range ignored), 416, or a range we did not ask for: start from zero
            if resp.status == 416:
                part.unlink(missing_ok=True)
                raise HubUnavailable(f"{job.dest.name}: the hub refused to resume (HTTP 416); starting over")
            have, h = 0, hashlib.sha256()
        fh = part.open("r+b" if part.exists() else "wb")
        try:
            fh.seek(have)
            fh.truncate()

            def sink(chunk: bytes) -> None:
                fh.write(chunk)
                h.update(chunk)

            async for chunk in resp.content.iter_chunked(CHUNK):
                if have + len(chunk) > job.size:
                    raise PullError(f"{job.dest.name}: the hub sent more than the {job.size} bytes it "
                                    "published")
                await loop.run_in_executor(None, sink, chunk)
                have += len(chunk)
                on_bytes(have)
        finally:
            await loop.run_in_executor(None, fh.close)
    if have != job.size:
        raise aiohttp.ClientPayloadError(f"the connection closed after {have} of {job.size} bytes")
    return h
