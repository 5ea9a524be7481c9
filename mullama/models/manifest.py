"""One JSON manifest per served name, under ``<models_dir>/.manifests/`` (hidden: the catalog skips it).

A manifest says where a model came from -- repository, revision, commit, quantisation, each
file's name, size and sha256, when it was pulled -- and which files it names, relative to its
models directory. ``kind`` is ``pull`` for ``mullama pull`` and ``copy`` for a name made by
``/api/copy`` (same files, a new name). Manifests are written atomically (temp file, fsync,
``os.replace``); an unreadable or invalid one is skipped by ``read_all`` and reported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from pathlib import Path

import msgspec

from mullama.models.names import manifest_key

__all__ = ["MANIFEST_DIR", "Manifest", "ManifestFile", "delete", "file_paths", "now_iso", "read_all", "write",
           "write_json"]

MANIFEST_DIR = ".manifests"
SCHEMA = 1
MAX_MANIFEST_BYTES = 1 << 20


class ManifestFile(msgspec.Struct, frozen=True, kw_only=True):
    name: str                   # the file's path in the repository ("" for a copy of a local file)
    path: str                   # relative to the models dir (absolute only for a copy of an outside file)
    size: int
    sha256: str | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    name: str                   # the served name, lowercase: "org/repo:q4_k_m" or a copy's name
    kind: str = "pull"          # "pull" | "copy"
    schema: int = SCHEMA
    repo: str | None = None     # "Org/Repo" as the hub spells it
    revision: str | None = None  # what was asked for ("main")
    commit: str | None = None   # the commit it resolved to
    quant: str | None = None
    endpoint: str | None = None
    files: tuple[ManifestFile, ...] = ()
    size: int = 0
    pulled_at: str | None = None  # ISO 8601, UTC
    copied_from: str | None = None

    def describe(self) -> dict[str, object]:
        """The JSON-able origin for ``/api/models``, ``mullama list`` and ``mullama show``."""
        return {k: v for k, v in msgspec.to_builtins(self).items() if k not in ("schema", "files")} | {
            "files": [f.name or f.path for f in self.files]}


_decoder = msgspec.json.Decoder(Manifest)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def manifests_dir(models_dir: Path) -> Path:
    return Path(models_dir) / MANIFEST_DIR


def file_paths(models_dir: Path, manifest: Manifest) -> tuple[Path, ...]:
    """The manifest's files as paths (relative ones under ``models_dir``); never reads the disk."""
    return tuple(Path(f.path) if os.path.isabs(f.path) else Path(models_dir) / f.path for f in manifest.files)


def read_all(models_dir: Path, errors: list[str] | None = None) -> list[Manifest]:
    """Every valid manifest of ``models_dir``, sorted by name; problems go to ``errors`` (if given)."""
    folder = manifests_dir(models_dir)
    out: list[Manifest] = []
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json") and e.is_file())
    except OSError:
        return out  # no manifests yet
    for name in names:
        path = folder / name
        try:
            m = _decoder.decode(read_bounded(path, MAX_MANIFEST_BYTES))
            if not m.files or any(".." in Path(f.path).parts for f in m.files):
                raise ValueError("no files, or a path with '..'")
            out.append(m)
        except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            if errors is not None:
                errors.append(f"manifest {path} skipped: {exc}")
    return sorted(out, key=lambda m: m.name)


def _path_for(models_dir: Path, name: str) -> Path:
    return manifests_dir(models_dir) / f"{manifest_key(name)}.json"


def write(models_dir: Path, manifest: Manifest) -> Path:
    """Write (or replace) the manifest of ``manifest.name`` atomically; its path."""
    return write_json(_path_for(models_dir, manifest.name), manifest)


def read_bounded(path: Path, limit: int) -> bytes:
    """A small JSON file's bytes; ValueError past ``limit`` (a file that big is not one of ours). Also how
    ``presets.py`` reads a created preset."""
    with path.open("rb") as fh:
        raw = fh.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"larger than {limit >> 20} MiB")
    return raw


def write_json(target: Path, obj: object) -> Path:
    """``obj`` as indented JSON at ``target``, atomically (temp file, fsync, ``os.replace``); its path.
    Also how ``presets.py`` writes a created preset."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.json.format(msgspec.json.encode(obj), indent=2) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def delete(models_dir: Path, name: str) -> bool:
    """Remove the manifest of ``name``; False when there was none."""
    try:
        _path_for(models_dir, name.strip().lower()).unlink()
    except FileNotFoundError:
        return False
    return True
