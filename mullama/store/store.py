"""The ``Store``: pull a model (progress, one download shared by every caller), remove it, copy a name.

A pull: resolve the repository's files through the hub (``hub.py``), choose the GGUF file(s) for
the quantisation (``names.py``), check the free space, download each file (``download.py``:
resume, sha256, atomic rename) into ``<models_dir>/<family>/``, then write the manifest
(``manifest.py``). Progress goes to the caller as Ollama-shaped objects (``{"status", "digest",
"total", "completed"}``) and to the observer as throttled ``pull_*`` events.

Two pulls that need the same file in one process share one download task; each caller waits on
it, and a caller that goes away (Ctrl-C, a closed HTTP connection) only stops the download when no
one else waits for it. Across processes a file lock does the same (``download.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from mullama.core.errors import (
    InsufficientStorage,
    InvalidArgument,
    InvalidModelName,
    InvalidState,
    MullamaError,
    PullError,
)
from mullama.models import manifest
from mullama.models.catalog import Catalog
from mullama.models.manifest import Manifest, ManifestFile
from mullama.models.names import (
    DEFAULT_PREFERENCE,
    PullRef,
    RemoteFile,
    choose_files,
    family_for_repo,
    parse_pull_name,
    slugify,
    validate_name,
)
from mullama.store import download
from mullama.store.hub import Hub
from mullama.store.transfer import Emit, Transfer

__all__ = ["Plan", "Progress", "Store", "check_new_name"]

log = structlog.get_logger("mullama.store")

Progress = Callable[[dict[str, Any]], None]
@dataclass(frozen=True)
class Plan:
    """A pull, resolved: what to download and where (or the manifest of what is already there)."""

    ref: PullRef
    t0: float
    present: Manifest | None = None
    commit: str = ""
    family: str = ""
    files: tuple[RemoteFile, ...] = ()
    jobs: tuple[download.FileJob, ...] = ()
    needed: int = 0                 # bytes still to download

    @property
    def folder(self) -> Path:
        return self.jobs[0].dest.parent


class Store:
    """Pulled models under ``models_dirs[0]``; manifests are read from every models dir."""

    def __init__(self, models_dirs: Sequence[Path | str], hub: Hub | None = None, *, emit: Emit | None = None,
                 retries: int = download.RETRIES) -> None:
        if not models_dirs:
            raise InvalidArgument("the model store needs a models directory")
        self.dirs = [Path(d).expanduser() for d in models_dirs]
        self.root = self.dirs[0]
        self.hub = hub or Hub.from_env()
        self.emit = emit
        self.retries = retries
        self._transfers: dict[tuple[str, str | None], Transfer] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        for t in list(self._transfers.values()):
            if t.task is not None:
                t.task.cancel()
        tasks = [t.task for t in self._transfers.values() if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=False, trust_env=True,
                                                  connector=aiohttp.TCPConnector(limit=16))
        return self._session

    # ------------------------------------------------------------------ manifests

    def manifests(self) -> list[tuple[Path, Manifest]]:
        return [(d, m) for d in self.dirs for m in manifest.read_all(d)]

    def present(self, ref: PullRef) -> Manifest | None:
        """The manifest of an already pulled ``ref`` whose files are all there (size checked), if any."""
        wanted = ref.name
        candidates = []
        for d, m in self.manifests():
            if m.kind != "pull" or (m.repo or "").lower() != ref.repo.lower():
                continue
            if m.name == wanted or ref.quant is None:
                paths = manifest.file_paths(d, m)
                if all(_size(p) == f.size for p, f in zip(paths, m.files)):
                    candidates.append(m)
        if ref.quant is None and candidates:
            order = {q: i for i, q in enumerate(DEFAULT_PREFERENCE)}
            candidates.sort(key=lambda m: order.get(m.quant or "", len(order)))
        return candidates[0] if candidates else None

    def _family(self, repo: str) -> str:
        """The family sub-directory for ``repo``: its name, or name-org when another repo has that name."""
        base = family_for_repo(repo)
        for _, m in self.manifests():
            if m.kind == "pull" and m.repo and m.repo.lower() != repo.lower() and m.files and \
                    Path(m.files[0].path).parts[0] == base:
                return f"{base}-{slugify(repo.split('/', 1)[0])}"
        return base

    # ------------------------------------------------------------------ pull

    async def pull(self, name: str, progress: Progress | None = None) -> Manifest:
        """Pull ``[hf.co/]ORG/REPO[:QUANT]``; its manifest (typed errors: the PullError family, 400s)."""
        tell = progress or (lambda _obj: None)
        tell({"status": "pulling manifest"})
        return await self.fetch(await self.plan(name), tell)

    async def plan(self, name: str) -> Plan:
        """What can fail before a byte moves: the name, the hub listing, the quantisation, the disk space.

        An already pulled model (manifest present, files of the right size) needs no hub at all.
        """
        ref = parse_pull_name(name)
        t0 = time.perf_counter()
        have = self.present(ref)
        if have is not None:
            return Plan(ref=ref, t0=t0, present=have)
        try:
            listing = await self.hub.listing(ref.repo, ref.revision)
            quant, files = choose_files(listing.files, ref.quant, listing.repo)
            ref = PullRef(repo=listing.repo, quant=quant, revision=ref.revision)
            have = self.present(ref)
            if have is not None:
                return Plan(ref=ref, t0=t0, present=have)
            family = self._family(listing.repo)
            folder = self.root / family
            jobs = tuple(download.FileJob(url=self.hub.file_url(listing.repo, listing.commit, f.path),
                                          headers=self.hub.headers(), dest=folder / f.basename, size=f.size,
                                          sha256=f.sha256) for f in files)
            needed = sum(max(0, j.size - max(0, _size(download.partial_path(j.dest)))) for j in jobs
                         if _size(j.dest) != j.size)
            await asyncio.to_thread(download.check_space, folder, needed)
        except MullamaError as exc:
            self._event("pull_failed", model=ref.name, error=str(exc), type=exc.type)
            raise
        return Plan(ref=ref, t0=t0, commit=listing.commit, family=family, files=files, jobs=jobs,
                    needed=needed)

    async def fetch(self, plan: Plan, progress: Progress | None = None) -> Manifest:
        """Download what ``plan`` says (shared with other pulls of the same files) and write the manifest."""
        tell = progress or (lambda _obj: None)
        ref, have = plan.ref, plan.present
        if have is not None:
            tell({"status": f"{have.name} is already present"})
            tell({"status": "success"})
            self._event("pull_done", model=have.name, repo=have.repo, revision=have.revision,
                        commit=have.commit,
                        quant=have.quant, files=[f.path for f in have.files], bytes=have.size, downloaded=0,
                        already_present=True, duration_ms=_ms(plan.t0))
            return have
        self._event("pull_started", model=ref.name, repo=ref.repo, quant=ref.quant, commit=plan.commit,
                    files=[j.dest.name for j in plan.jobs], total=sum(j.size for j in plan.jobs),
                    endpoint=self.hub.endpoint)
        try:
            plan.folder.mkdir(parents=True, exist_ok=True)
            digests = [await self._download(job, ref.name, tell) for job in plan.jobs]
            tell({"status": "verifying sha256 digest"})
            record = Manifest(
                name=ref.name, kind="pull", repo=ref.repo, revision=ref.revision, commit=plan.commit,
                quant=ref.quant, endpoint=self.hub.endpoint, size=sum(j.size for j in plan.jobs),
                pulled_at=manifest.now_iso(),
                files=tuple(ManifestFile(name=f.path, path=f"{plan.family}/{f.basename}", size=f.size,
                                         sha256=d) for f, d in zip(plan.files, digests)))
            tell({"status": "writing manifest"})
            await asyncio.to_thread(manifest.write, self.root, record)
        except asyncio.CancelledError:
            self._event("pull_failed", model=ref.name, error="cancelled", type="cancelled")
            raise
        except MullamaError as exc:
            self._event("pull_failed", model=ref.name, error=str(exc), type=exc.type)
            raise
        except OSError as exc:  # the disk: full (another pull took the space), unwritable, ...
            err = (InsufficientStorage if exc.errno == errno.ENOSPC else PullError)(
                f"cannot write {ref.name} into {plan.folder}: {exc.strerror or exc}")
            self._event("pull_failed", model=ref.name, error=str(err), type=err.type)
            raise err from exc
        tell({"status": "success"})
        self._event("pull_done", model=record.name, repo=record.repo, revision=record.revision,
                    commit=record.commit, quant=record.quant, files=[f.path for f in record.files],
                    bytes=record.size, downloaded=plan.needed, already_present=False,
                    duration_ms=_ms(plan.t0))
        log.info("pulled", model=record.name, files=[f.path for f in record.files], bytes=record.size)
        return record

    async def _download(self, job: download.FileJob, model: str, tell: Progress) -> str:
        digest = f"sha256:{job.sha256}" if job.sha256 else f"file:{job.dest.name}"
        status = f"pulling {job.sha256[:12]}" if job.sha256 else f"pulling {job.dest.name}"

        def listener(completed: int, total: int) -> None:
            tell({"status": status, "digest": digest, "total": total, "completed": completed,
                  "file": job.dest.name})

        key = (str(job.dest), job.sha256)
        t = self._transfers.get(key)
        if t is None:
            t = Transfer(job, model, self.emit)
            t.task = asyncio.get_running_loop().create_task(self._run(t, key))
            self._transfers[key] = t
        t.listeners.add(listener)
        listener(t.completed, job.size)
        try:
            return await asyncio.shield(t.task)
        except asyncio.CancelledError:
            t.listeners.discard(listener)
            if not t.listeners and not t.task.done():  # the last one waiting: stop it (the partial stays)
                t.task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait({t.task}, timeout=10)
            raise
        finally:
            t.listeners.discard(listener)

    async def _run(self, t: Transfer, key: tuple[str, str | None]) -> str:
        try:
            return await download.fetch(self._http(), t.job, t.on_bytes, retries=self.retries)
        finally:
            if self._transfers.get(key) is t:
                del self._transfers[key]

    def _event(self, kind: str, **fields: Any) -> None:
        if self.emit is not None:
            self.emit(kind, **fields)

    # ------------------------------------------------------------------ rm / copy

    def deletes_files(self, catalog: Catalog, name: str) -> bool:
        """Whether ``remove(catalog, name)`` would delete model files (and so must unload the model first).

        Raises what ``remove`` would refuse with, before anything happens: a refused request has no side
        effects, and a name that owns no files (a copy, a second pulled name) never touches a runner.
        """
        entry = catalog.resolve(name)
        hit = catalog.manifest_for(name)
        if hit is not None and hit.kind == "copy":
            return False
        self._removable(catalog, name, entry, hit)
        drop, keep = self._owners(entry, hit)
        return not keep

    def _removable(self, catalog: Catalog, name: str, entry, hit) -> None:
        if hit is None and catalog.is_alias(name):
            raise InvalidArgument(f"{name!r} is an alias from the config; remove it there (deleting it here "
                                  f"would delete {entry.name})")
        if entry.source != "models_dir":
            what = "the bundled model" if entry.source == "bundled" else "declared by a path in the config"
            raise InvalidArgument(f"{entry.name} is {what}; it is not in a models directory and cannot be "
                                  "removed here")

    def _owners(self, entry, hit) -> tuple[list, list]:
        """(manifests this removal drops, manifests that keep the files)."""
        first = _norm(entry.path)
        owning = [(d, m) for d, m in self.manifests()
                  if m.files and _norm(manifest.file_paths(d, m)[0]) == first]
        drop = [(d, m) for d, m in owning if hit is not None and m.name == hit.name] or owning
        return drop, [dm for dm in owning if dm not in drop]

    def remove(self, catalog: Catalog, name: str) -> dict[str, Any]:
        """Delete ``name``: its manifest; the files too once no other name (manifest) uses them.

        A catalog name (``family:variant``) deletes the files and every manifest naming them. The
        bundled model and files declared in the config are not the store's to delete (400).
        """
        entry = catalog.resolve(name)
        hit = catalog.manifest_for(name)
        if hit is not None and hit.kind == "copy":  # a name only: its manifest goes, never the files
            for d, m in self.manifests():
                if m.name == hit.name:
                    manifest.delete(d, m.name)
            result = {"model": entry.name, "names": [hit.name], "files": []}
            self._event("model_deleted", **result)
            return result
        self._removable(catalog, name, entry, hit)
        drop, keep = self._owners(entry, hit)
        for d, m in drop:
            manifest.delete(d, m.name)
        deleted: list[str] = []
        if not keep:
            for p in entry.parts:
                if not any(_inside(p, d) for d in self.dirs):
                    continue  # never delete outside the models directories
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    deleted.append(str(p))
                for leftover in (download.lock_path(p), download.partial_path(p)):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
            with contextlib.suppress(OSError):
                if entry.path.parent not in self.dirs:
                    entry.path.parent.rmdir()  # the family directory, once empty
        result = {"model": entry.name, "names": [m.name for _, m in drop], "files": deleted}
        self._event("model_deleted", **result)
        return result

    def copy(self, catalog: Catalog, source: str, destination: str) -> dict[str, Any]:
        """A new name for an existing model: a ``copy`` manifest naming the same files (no bytes copied)."""
        entry = catalog.resolve(source)
        dest = check_new_name(destination)
        try:
            taken = catalog.resolve(dest)
        except MullamaError:
            taken = None  # free
        if taken is not None:  # never over another name (a pull manifest least of all)
            raise InvalidState(f"{destination!r} already names {taken.name}; delete it first")
        first = _norm(entry.path)
        origin = catalog.manifest_for(source) or next(
            (m for d, m in self.manifests() if m.files and _norm(manifest.file_paths(d, m)[0]) == first),
            None)
        files = []
        for i, p in enumerate(entry.parts):
            rel = os.path.relpath(p, self.root) if _inside(p, self.root) else str(Path(p).absolute())
            src = origin.files[i] if origin is not None and i < len(origin.files) else None
            files.append(ManifestFile(name=src.name if src else "", path=rel, size=_size(p),
                                      sha256=src.sha256 if src else None))
        inherited = {k: getattr(origin, k) for k in ("repo", "revision", "commit", "quant", "endpoint",
                                                     "pulled_at")} if origin is not None else {}
        record = Manifest(name=dest, kind="copy", files=tuple(files), size=entry.size_bytes,
                          copied_from=entry.name, **inherited)
        manifest.write(self.root, record)
        self._event("model_copied", source=entry.name, destination=dest)
        return {"source": entry.name, "destination": dest}


def check_new_name(name: object) -> str:
    """A destination name for copy: ``name[:tag]`` or ``org/repo[:tag]``, strictly; lowercase."""
    if isinstance(name, str) and "/" in name:
        ref = parse_pull_name(name)
        return ref.name
    text = validate_name(name).lower()
    base, _, tag = text.partition(":")
    ok = all(part and part[0].isalnum() and all(c.isalnum() or c in "._-" for c in part)
             for part in (base, tag or "x"))
    if not ok or text.count(":") > 1 or len(text) > 128:
        raise InvalidModelName(f"invalid model name {name!r}: expected NAME or NAME:TAG with letters, "
                               "digits, '.', '_' and '-'")
    return text


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return -1


def _norm(p: Path | str) -> str:
    return os.path.normpath(os.path.abspath(str(p)))


def _inside(p: Path | str, root: Path) -> bool:
    real, base = os.path.realpath(p), os.path.realpath(root)
    return real.startswith(base.rstrip(os.sep) + os.sep)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)

