"""A stand-in for the Hugging Face hub on 127.0.0.1, for the model-store tests.

It answers exactly what mullama's store asks through huggingface_hub and aiohttp:

* ``GET /api/models/{org}/{repo}[/revision/{rev}]?blobs=True``: ``{"id", "sha", "siblings": [{"rfilename",
  "size", "blobId", "lfs": {"sha256", "size", "pointerSize"}}]}``; unknown repos 404 with
  ``X-Error-Code: RepoNotFound`` as the hub does.
* ``HEAD`` / ``GET /{org}/{repo}/resolve/{rev}/{path}``: the bytes, with ``ETag``, ``X-Repo-Commit``,
  ``X-Linked-Size``, ``X-Linked-Etag``, ``Accept-Ranges`` and ``Range`` -> 206 + ``Content-Range``.
  No ``X-Xet-*`` header is ever sent, so huggingface_hub never switches to xet.

Faults, switchable while it runs (``hub.faults``): ``cut_after`` (body bytes; the next ``cuts`` GETs are cut
there: the connection closes mid-body), ``wrong_hash`` (the listing publishes a wrong sha256),
``token`` (401 without ``Authorization: Bearer <token>``), ``status`` (every request answers it, e.g.
500), ``file_status`` (only the byte GETs answer it), ``rate`` (bytes per second: a slow server),
``ignore_range`` (answer 200 with the whole file to a Range request). ``hub.log`` records every request
as ``(method, path, range header)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

from aiohttp import web

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_CHUNK = 256 << 10


@dataclass
class Faults:
    cut_after: int | None = None
    cuts: int = 1
    wrong_hash: bool = False
    token: str | None = None
    status: int | None = None
    file_status: int | None = None
    rate: int | None = None
    ignore_range: bool = False


@dataclass
class _File:
    path: Path
    size: int
    sha256: str


@dataclass
class FakeHub:
    repos: dict[str, dict[str, Path]]  # "org/repo" -> {repo path -> local file}
    faults: Faults = field(default_factory=Faults)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._files: dict[str, dict[str, _File]] = {}
        for repo, files in self.repos.items():
            self._files[repo.lower()] = {
                name: _File(p, p.stat().st_size, _sha256(p)) for name, p in files.items()
            }
        self._canon = {repo.lower(): repo for repo in self.repos}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeHub:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/api/models/{org}/{repo}", self._info)
            app.router.add_get("/api/models/{org}/{repo}/revision/{rev}", self._info)
            app.router.add_route("*", "/{org}/{repo}/resolve/{rev}/{path:.+}", self._resolve)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-hub")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def gets(self, name: str | None = None) -> list[tuple[str, str, str | None]]:
        """The byte GETs (of ``name`` if given)."""
        return [
            r
            for r in self.log
            if r[0] == "GET" and "/resolve/" in r[1] and (name is None or r[1].endswith(name))
        ]

    def sha256(self, repo: str, name: str) -> str:
        return self._files[repo.lower()][name].sha256

    # ------------------------------------------------------------------ handlers

    def _fault(self, request: web.Request) -> web.Response | None:
        f = self.faults
        if f.status is not None:
            return web.Response(status=f.status, text=f"fake hub: HTTP {f.status}")
        if f.token is not None and request.headers.get("Authorization") != f"Bearer {f.token}":
            return web.Response(
                status=401,
                text="Invalid username or password.",
                headers={"X-Error-Message": "Invalid username or password."},
            )
        return None

    async def _info(self, request: web.Request) -> web.Response:
        self.log.append((request.method, request.path_qs, None))
        if (bad := self._fault(request)) is not None:
            return bad
        repo = f"{request.match_info['org']}/{request.match_info['repo']}".lower()
        if repo not in self._files:
            return web.json_response(
                {"error": "Repository not found"}, status=404, headers={"X-Error-Code": "RepoNotFound"}
            )
        siblings = []
        for name, f in self._files[repo].items():
            sha = f.sha256 if not self.faults.wrong_hash else hashlib.sha256(b"not these bytes").hexdigest()
            siblings.append(
                {
                    "rfilename": name,
                    "size": f.size,
                    "blobId": sha[:40],
                    "lfs": {"sha256": sha, "size": f.size, "pointerSize": 134},
                }
            )
        siblings.append({"rfilename": "README.md", "size": 12, "blobId": "f" * 40})
        return web.json_response(
            {
                "_id": "x",
                "id": self._canon[repo],
                "modelId": self._canon[repo],
                "sha": COMMIT,
                "private": False,
                "tags": ["gguf"],
                "siblings": siblings,
            }
        )

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("Range")
        self.log.append((request.method, request.path, rng))
        if (bad := self._fault(request)) is not None:
            return bad
        if request.method == "GET" and self.faults.file_status is not None:
            return web.Response(status=self.faults.file_status, text="fake hub: file error")
        repo = f"{request.match_info['org']}/{request.match_info['repo']}".lower()
        f = self._files.get(repo, {}).get(request.match_info["path"])
        if f is None:
            return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"}, text="Entry not found")
        headers = {
            "ETag": f'"{f.sha256}"',
            "X-Linked-Etag": f'"{f.sha256}"',
            "X-Linked-Size": str(f.size),
            "X-Repo-Commit": COMMIT,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start, status = 0, 200
        if rng and not self.faults.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= f.size:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{f.size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{f.size - 1}/{f.size}"
        headers["Content-Length"] = str(f.size - start)
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        cut = None
        if self.faults.cut_after is not None and self.faults.cuts > 0:
            self.faults.cuts -= 1
            cut = self.faults.cut_after
        sent = 0
        with f.path.open("rb") as fh:
            fh.seek(start)
            while start + sent < f.size:
                block = fh.read(_CHUNK if cut is None else max(0, min(_CHUNK, cut - sent)))
                if not block:
                    break
                await resp.write(block)
                sent += len(block)
                if cut is not None and sent >= cut:
                    await asyncio.sleep(0.05)
                    request.transport.close()  # the connection drops mid-body
                    return resp
                if self.faults.rate:
                    await asyncio.sleep(len(block) / self.faults.rate)
        await resp.write_eof()
        return resp


_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = _hash(path)
    return _HASHES[key]


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
