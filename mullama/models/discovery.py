"""Finding model files under the models directories and naming them ``family:variant`` (the scan's I/O).

``discover`` walks each directory (not following directory symlinks, skipping hidden and partial
files), groups the parts of split models and marks files that a symlink takes outside the models
directories; ``stat_parts`` and ``read_parts`` read what a catalog entry needs; ``name_all`` gives
each file its name. Nothing a scan meets raises: problems become errors on entries or directories.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mullama.models.entry import ModelEntry
from mullama.models.gguf_header import GgufHeader, read_header
from mullama.models.names import family_from_stem, quant_from_filename, slugify, split_info

SYMLINK_ESCAPE = "symlink points outside the models directories"

CacheKey = tuple[tuple[str, int, int], ...]


def file_stem(path: Path) -> str:
    """The stem of a model file; of a split model's part, the stem of the whole model."""
    info = split_info(path.name)
    return info[0] if info else path.stem


@dataclass(frozen=True)
class Found:
    """A model file (or split group) before it has a name."""

    parts: tuple[Path, ...]
    family: str | None  # from a sub-directory or an explicit name
    variant: str | None  # explicit (config) variant
    source: str
    error: str | None  # known before reading: symlink escape, missing split parts
    order: tuple[int, int, str]  # (kind, dir index, path): extras first, then dirs in order


def _ignored(name: str) -> bool:
    low = name.lower()
    return name.startswith(".") or low.endswith((".partial", ".tmp")) or not low.endswith(".gguf")


def _walk(root: Path, errors: list[str]) -> list[Path]:
    """Every ``*.gguf`` under ``root``, not following directory symlinks, in sorted order."""
    found: list[Path] = []
    stack = [root]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            where = f"models directory {here}" if here == root else f"{here} (inside models directory {root})"
            errors.append(f"cannot read {where}: {exc.strerror or exc}")
            continue
        subdirs = []
        for entry in items:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                subdirs.append(Path(entry.path))
            elif not _ignored(entry.name):
                found.append(Path(entry.path))
        stack.extend(reversed(subdirs))
    return sorted(found)


def _group_splits(files: Sequence[Path]) -> list[tuple[tuple[Path, ...], str | None]]:
    """Plain files one by one; the parts of a split model as one group, with an error if parts are missing."""
    groups: dict[tuple[Path, str, int], dict[int, Path]] = {}
    out: list[tuple[tuple[Path, ...], str | None]] = []
    for f in files:
        info = split_info(f.name)
        if info is None:
            out.append(((f,), None))
        else:
            groups.setdefault((f.parent, info[0].lower(), info[2]), {})[info[1]] = f
    for (_, _, count), parts in groups.items():
        missing = [i for i in range(1, count + 1) if i not in parts]
        ordered = tuple(parts[i] for i in sorted(parts))
        err = None
        if missing:
            err = f"split model is missing part(s) {', '.join(map(str, missing))} of {count}"
        out.append((ordered, err))
    return sorted(out, key=lambda g: str(g[0][0]))


def _split_siblings(path: Path) -> tuple[tuple[Path, ...], str | None]:
    """All parts of a split model given its first file (for config and bundled paths)."""
    info = split_info(path.name)
    if info is None or info[1] != 1:
        return (path,), None
    base, _, count = info
    parts = [path.with_name(f"{base}-{i:05d}-of-{count:05d}{path.suffix}") for i in range(1, count + 1)]
    missing = [str(i + 1) for i, p in enumerate(parts) if not p.exists()]
    err = f"split model is missing part(s) {', '.join(missing)} of {count}" if missing else None
    return tuple(p for p in parts if p.exists()) or (path,), err


def _within(real: str, roots: Sequence[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def discover(dirs: Sequence[Path], extra: Sequence[tuple[str, Path, str]],
              dir_errors: list[str]) -> list[Found]:
    found: list[Found] = []
    taken: set[str] = set()
    for i, (spec, path, source) in enumerate(extra):
        spec = spec.strip().lower()
        family, _, variant = spec.partition(":")
        parts, err = _split_siblings(Path(path).expanduser())
        taken.update(os.path.realpath(p) for p in parts)
        found.append(Found(parts, slugify(family), slugify(variant) if variant else None, source, err,
                            (0, i, str(parts[0]))))
    dirs = [Path(d).expanduser() for d in dirs]
    roots = [os.path.realpath(d) for d in dirs]
    for di, d in enumerate(dirs):
        try:
            is_dir = stat.S_ISDIR(os.stat(d).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            dir_errors.append(f"models directory {d} does not exist")
            continue
        except (OSError, ValueError) as exc:
            dir_errors.append(f"cannot read models directory {d}: {getattr(exc, 'strerror', None) or exc}")
            continue
        if not is_dir:
            dir_errors.append(f"models directory {d} is not a directory")
            continue
        for parts, err in _group_splits(_walk(d, dir_errors)):
            reals = [os.path.realpath(p) for p in parts]
            if reals[0] in taken:  # the same file as a bundled/config entry: that entry names it
                continue
            taken.update(reals)
            if not all(_within(r, roots) for r in reals):
                err = SYMLINK_ESCAPE
            rel = parts[0].relative_to(d).parts
            family = slugify(rel[0]) if len(rel) > 1 else None
            found.append(Found(parts, family, None, "models_dir", err, (1, di, str(parts[0]))))
    return found

def stat_parts(parts: Sequence[Path]) -> tuple[int, float, CacheKey, str | None]:
    size, mtime, key = 0, 0.0, []
    for i, p in enumerate(parts):
        try:
            st = p.stat()
        except OSError as exc:
            return size, mtime, tuple(key), f"{p}: cannot stat the model file: {exc.strerror or exc}"
        size += st.st_size
        mtime = st.st_mtime if i == 0 else mtime
        key.append((os.path.realpath(p), st.st_size, st.st_mtime_ns))
    return size, mtime, tuple(key), None


def read_parts(parts: Sequence[Path]) -> tuple[GgufHeader | None, str | None]:
    try:
        return read_header(parts[0], parts=parts if len(parts) > 1 else ()), None
    except Exception as exc:  # typed errors from read_header; anything else must not stop a scan
        return None, str(exc) or type(exc).__name__


def name_all(named: Sequence[tuple[Found, GgufHeader | None, str | None, int, float]]) -> list[ModelEntry]:
    """Give each file its ``family:variant``; a second file with a taken name gets ``variant-<stem>``."""
    entries: list[ModelEntry] = []
    used: set[str] = set()
    for f, header, err, size, mtime in sorted(named, key=lambda t: t[0].order):
        first = f.parts[0]
        stem = file_stem(first)
        family = f.family or family_from_stem(stem)
        quant = header.quantization.lower() if header and header.quantization != "unknown" else None
        variant = f.variant or slugify(quant or quant_from_filename(stem) or "default")
        name = f"{family}:{variant}"
        if name in used:
            variant = f"{variant}-{family_from_stem(stem)[:40].rstrip('-._')}"
            name, n = f"{family}:{variant}", 2
            while name in used:
                name, n = f"{family}:{variant}-{n}", n + 1
            variant = name.partition(":")[2]
        used.add(name)
        real = os.path.realpath(first)
        digest = hashlib.sha256(f"{real}\0{size}\0{mtime}".encode(errors="surrogateescape")).hexdigest()
        entries.append(ModelEntry(
            name=name, family=family, variant=variant, path=first, parts=f.parts, size_bytes=size,
            modified=mtime, id=digest[:12], header=header, error=err, source=f.source,
        ))
    return entries
