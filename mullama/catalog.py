"""The models a server can offer: GGUF files found in the models directories, named ``family:variant``.

A scan walks each models directory, reads only the header of every ``*.gguf`` (see
``gguf_header``), and turns files into entries: the family comes from the first-level
sub-directory or the file stem, the variant from the quantisation. Nothing a scan meets takes it
down: a missing directory becomes a sentence in ``dir_errors``, a broken file an entry with an
``error`` that ``resolve`` refuses with ``ModelUnavailable``. A catalog is immutable; a rescan
builds a new one and, given the old one, re-reads only files whose (path, size, mtime) changed.

Pulled models (``mullama pull``) also have a manifest under ``<models_dir>/.manifests/`` (see
``store/manifest.py``): the catalog reads them so that a model is served by the name it was pulled
as (``org/repo:quant``, ``hf.co/org/repo``) and by copy names, and so that entries say where they
came from (``origin``). A name with ``/`` is only ever looked up among those manifest names: it
never becomes a file-system path.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
import stat
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mullama.errors import InvalidModelName, ModelNotFound, ModelNotPulled, ModelUnavailable
from mullama.gguf_header import GgufHeader, parameters_label, read_header
from mullama.store import manifest as manifests
from mullama.store.manifest import Manifest

__all__ = ["Catalog", "GgufHeader", "ModelEntry", "parameters_label", "read_header", "slugify",
           "quant_from_filename", "family_from_stem", "validate_name", "DEFAULT_PREFERENCE"]

#: Variants tried in this order when a family has no configured default.
DEFAULT_PREFERENCE = ("q4_k_m", "q4_k_s", "q4_1", "q4_0", "q5_k_m", "q5_k_s", "q5_1", "q5_0",
                      "q6_k", "q8_0", "f16", "bf16", "f32")
MAX_NAME_LENGTH = 256
SYMLINK_ESCAPE = "symlink points outside the models directories"

_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_QUANT = re.compile(
    r"(?<![a-z0-9])(iq[1-4]_(?:xxs|xs|nl|s|m)|tq[12]_0|q[1-8]_k(?:_[sml])?|q[1-8]_[01]|mxfp4(?:_moe)?"
    r"|bf16|f16|f32)(?![a-z0-9])",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"^(?P<base>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class ModelEntry:
    """One servable (or listed-but-broken) model: a file, or the parts of a split file."""

    name: str  # "family:variant", lowercase
    family: str
    variant: str
    path: Path  # first (or only) file
    parts: tuple[Path, ...]
    size_bytes: int  # all parts
    modified: float  # mtime of the first file
    id: str  # 12 hex chars of sha256(resolved path, size, mtime), like ollama's ID column
    header: GgufHeader | None
    error: str | None  # why it cannot be served
    source: str  # "models_dir" | "bundled" | "config"
    origin: Manifest | None = None  # the pull manifest naming this file, if it was pulled

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for ``/api/tags``, ``mullama list`` and ``mullama show``."""
        out: dict[str, object] = {
            "name": self.name, "family": self.family, "variant": self.variant, "id": self.id,
            "path": str(self.path), "parts": [str(p) for p in self.parts], "size": self.size_bytes,
            "modified": self.modified, "source": self.source, "error": self.error,
        }
        if self.origin is not None:
            out["origin"] = self.origin.describe()
        h = self.header
        if h is not None:
            out.update(
                architecture=h.architecture, parameters=h.parameters,
                parameters_label=parameters_label(h.parameters), quantization=h.quantization,
                context_length=h.context_length, n_layer=h.n_layer, n_embd=h.n_embd, n_head=h.n_head,
                n_head_kv=h.n_head_kv, has_chat_template=h.has_chat_template,
            )
        return out


# ---------------------------------------------------------------- naming (pure)


def slugify(text: str) -> str:
    """Lowercase, ``[a-z0-9._-]`` only, runs of anything else as one ``-``; never empty."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    slug = re.sub(r"-{2,}", "-", slug).strip("-._")
    return slug or "model"


def quant_from_filename(stem: str) -> str | None:
    """The last quantisation token of a file stem (``"...Instruct.Q4_K_M"`` -> ``"q4_k_m"``), if any."""
    matches = list(_QUANT.finditer(stem))
    return matches[-1].group(1).lower() if matches else None


def family_from_stem(stem: str) -> str:
    """``"SmolLM2-135M-Instruct.Q4_1"`` -> ``"smollm2-135m-instruct"``: the stem less its quant token."""
    matches = list(_QUANT.finditer(stem))
    if matches:
        m = matches[-1]
        stem = f"{stem[:m.start()]}-{stem[m.end():]}"  # slugify trims and merges the separators
    return slugify(stem)


def _split_info(path: Path) -> tuple[str, int, int] | None:
    """(base stem, part number, part count) of ``name-00001-of-00003.gguf``; None for a plain file."""
    m = _SPLIT.match(path.name[: -len(".gguf")] if path.name.lower().endswith(".gguf") else path.stem)
    if not m:
        return None
    no, count = int(m.group("no")), int(m.group("count"))
    return (m.group("base"), no, count) if 1 <= no <= count else None


def _stem(path: Path) -> str:
    info = _split_info(path)
    return info[0] if info else path.stem


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True)
class _Found:
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
        info = _split_info(f)
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
    info = _split_info(path)
    if info is None or info[1] != 1:
        return (path,), None
    base, _, count = info
    parts = [path.with_name(f"{base}-{i:05d}-of-{count:05d}{path.suffix}") for i in range(1, count + 1)]
    missing = [str(i + 1) for i, p in enumerate(parts) if not p.exists()]
    err = f"split model is missing part(s) {', '.join(missing)} of {count}" if missing else None
    return tuple(p for p in parts if p.exists()) or (path,), err


def _within(real: str, roots: Sequence[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _discover(dirs: Sequence[Path], extra: Sequence[tuple[str, Path, str]],
              dir_errors: list[str]) -> list[_Found]:
    found: list[_Found] = []
    taken: set[str] = set()
    for i, (spec, path, source) in enumerate(extra):
        spec = spec.strip().lower()
        family, _, variant = spec.partition(":")
        parts, err = _split_siblings(Path(path).expanduser())
        taken.update(os.path.realpath(p) for p in parts)
        found.append(_Found(parts, slugify(family), slugify(variant) if variant else None, source, err,
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
            found.append(_Found(parts, family, None, "models_dir", err, (1, di, str(parts[0]))))
    return found


# ---------------------------------------------------------------- catalog


_CacheKey = tuple[tuple[str, int, int], ...]


class Catalog:
    """An immutable snapshot of the models on disk, with name resolution; build it with ``scan``."""

    def __init__(self, entries: Sequence[ModelEntry], *, aliases: Mapping[str, str],
                 default_variants: Mapping[str, str], dir_errors: Sequence[str],
                 cache: Mapping[_CacheKey, tuple[GgufHeader | None, str | None]],
                 pulled: Sequence[tuple[Path, Manifest]] = ()) -> None:
        dir_errors = list(dir_errors)
        entries, self._pulled = _with_manifests(entries, pulled, dir_errors)
        self._by_name = {e.name: e for e in sorted(entries, key=lambda e: e.name)}
        self._families: dict[str, list[ModelEntry]] = {}
        self._files: dict[str, ModelEntry] = {}
        for e in self._by_name.values():
            self._families.setdefault(e.family, []).append(e)
        for e in sorted(entries, key=lambda e: (e.source == "models_dir", str(e.path))):
            for key in (e.path.name.lower(), _stem(e.path).lower(), e.path.stem.lower()):
                self._files.setdefault(key, e)
        self._aliases = {k.strip().lower(): v.strip().lower() for k, v in aliases.items()}
        self._defaults = {k.strip().lower(): v.strip().lower() for k, v in default_variants.items()}
        self._dir_errors = list(dir_errors)
        self._cache = dict(cache)

    @classmethod
    def scan(cls, dirs: Sequence[Path], *, aliases: Mapping[str, str] = _EMPTY,
             extra: Sequence[tuple[str, Path, str]] = (), default_variants: Mapping[str, str] = _EMPTY,
             previous: Catalog | None = None) -> Catalog:
        """Walk ``dirs`` and name every GGUF found; ``extra`` adds (name, path, source) entries first.

        ``extra`` names are ``family`` or ``family:variant`` (the bundled model, per-model ``path``
        from the config); a scanned file that is the same file as an extra is not listed twice.
        ``previous``: headers of files whose (path, size, mtime) did not change are reused.
        """
        dir_errors: list[str] = []
        pulled = [(Path(d).expanduser(), m) for d in dirs
                  for m in manifests.read_all(Path(d).expanduser(), dir_errors)]
        old = previous._cache if previous is not None else {}
        cache: dict[_CacheKey, tuple[GgufHeader | None, str | None]] = {}
        named: list[tuple[_Found, GgufHeader | None, str | None, int, float]] = []
        for f in _discover(dirs, extra, dir_errors):
            size, mtime, key, err = _stat(f.parts)
            header: GgufHeader | None = None
            err = f.error or err
            if err is None:
                if key in old:
                    header, err = old[key]
                else:
                    header, err = _read(f.parts)
                cache[key] = (header, err)
            named.append((f, header, err, size, mtime))
        entries = _name_all(named)
        return cls(entries, aliases=aliases, default_variants=default_variants, dir_errors=dir_errors,
                   cache=cache, pulled=pulled)

    @property
    def dir_errors(self) -> list[str]:
        """Models directories (or sub-directories) that are missing or unreadable, one sentence each."""
        return list(self._dir_errors)

    def entries(self) -> list[ModelEntry]:
        """Every entry, broken ones included, sorted by name."""
        return list(self._by_name.values())

    def variants(self, family: str) -> list[ModelEntry]:
        """The entries of ``family`` sorted by name (empty for an unknown family)."""
        return list(self._families.get(family.strip().lower(), ()))

    def default_variant(self, family: str) -> ModelEntry:
        """The configured default, else the first of DEFAULT_PREFERENCE present, else the smallest file.

        A broken entry is the default only when no variant of the family works.
        """
        fam = family.strip().lower()
        members = self._families.get(fam)
        if not members:
            raise ModelNotFound(self._not_found_message(family))
        pool = [e for e in members if e.error is None] or members
        wanted = self._defaults.get(fam)
        for pref in ((wanted,) if wanted else ()) + DEFAULT_PREFERENCE:
            for e in pool:
                if e.variant == pref:
                    return e
            for e in pool:
                if e.variant.startswith(pref + "-"):
                    return e
        return min(pool, key=lambda e: (e.size_bytes, e.name))

    def resolve(self, name: str) -> ModelEntry:
        """The entry for a request's model name; raises InvalidModelName, ModelNotFound or ModelUnavailable.

        Accepted, case-insensitively: ``family:variant``; ``family`` and ``family:latest`` (the
        default variant); an alias (one level, to a name or family); a pulled or copied name
        (``[hf.co/]org/repo[:quant]``, from the manifests only); a file name or stem.
        """
        if isinstance(name, str) and "/" in name and "\\" not in name:
            entry = self._resolve_pulled(name)
        else:
            n = validate_name(name).lower()
            entry = self._lookup(n, files=False)
            if entry is None and n in self._aliases:
                target = self._aliases[n]
                entry = self._lookup(target, files=True)
                if entry is None:
                    raise ModelNotFound(f"model {name!r} is an alias of {target!r}, which is not in the "
                                        "catalog")
            if entry is None and n in self._pulled:
                entry = self._pulled[n][0]
        if entry is None:
            entry = self._lookup(n, files=True)
        if entry is None:
            raise ModelNotFound(self._not_found_message(name))
        if entry.error == SYMLINK_ESCAPE:  # a name that leads out of the models dirs: refused like a path
            raise InvalidModelName(f"model {entry.name!r} is refused: its {entry.error}")
        if entry.error is not None:
            raise ModelUnavailable(f"model {entry.name!r} cannot be served: {entry.error}")
        return entry

    def _resolve_pulled(self, name: str) -> ModelEntry:
        """A name with ``/``: a dictionary lookup among the manifest names, nothing else."""
        key = _pulled_key(name)
        if key is None:
            validate_name(name)  # the path-separator (or control-character, length) error
            raise InvalidModelName(f"invalid model name {name!r}")
        hit = self._pulled.get(key)
        if hit is None:
            raise ModelNotPulled(f"model {name.strip()!r} not found: it has not been pulled; run "
                                 f"'mullama pull {name.strip()}' first")
        return hit[0]

    def is_alias(self, name: str) -> bool:
        """``name`` is an alias from the config (``aliases``)."""
        return isinstance(name, str) and name.strip().lower() in self._aliases

    def manifest_for(self, name: str) -> Manifest | None:
        """The manifest a pulled or copied ``name`` resolves through (None for other names)."""
        key = _pulled_key(name) if isinstance(name, str) and "/" in name else \
            (name.strip().lower() if isinstance(name, str) else None)
        hit = self._pulled.get(key) if key else None
        return hit[1] if hit else None

    def pulled_names(self) -> dict[str, str]:
        """The name of every manifest (pulled or copied as; not the short forms it also answers to)
        -> the catalog name it resolves to."""
        return {m.name: e.name for k, (e, m) in sorted(self._pulled.items()) if k == m.name}

    def _lookup(self, n: str, *, files: bool) -> ModelEntry | None:
        if n in self._by_name:
            return self._by_name[n]
        family = n.removesuffix(":latest")
        if family in self._families:
            return self.default_variant(family)
        return self._files.get(n) if files else None

    def _not_found_message(self, name: str) -> str:
        pool = sorted({*self._by_name, *self._families, *self._aliases, *self._pulled})
        query = name.strip().lower()
        close = difflib.get_close_matches(query, pool, n=5, cutoff=0.5)
        close += [p for p in pool if query in p and p not in close]  # "smollm2" -> "smollm2-135m-instruct"
        close = close[:5]
        if close:
            return f"model {name!r} not found; did you mean: {', '.join(close)}?"
        if not pool:
            return f"model {name!r} not found: the catalog is empty"
        return f"model {name!r} not found ({len(self._by_name)} models in the catalog)"


def _pulled_key(name: str) -> str | None:
    """``[hf.co/]Org/Repo[:Quant]`` -> ``org/repo[:quant]`` (the key of the manifest names), else None."""
    from mullama.store.names import parse_pull_name, strip_prefix

    if _CONTROL.search(name) or len(name) > MAX_NAME_LENGTH:
        return None
    try:
        parse_pull_name(name)
    except InvalidModelName:
        return None
    return strip_prefix(name.strip()).lower()


def _abs(path: Path | str) -> str:
    """A path as one comparable string (no disk access: symlinks are not resolved)."""
    return os.path.normpath(os.path.abspath(path))


def _with_manifests(entries: Sequence[ModelEntry], pulled: Sequence[tuple[Path, Manifest]],
                    dir_errors: list[str]) -> tuple[list[ModelEntry], dict[str, tuple[ModelEntry, Manifest]]]:
    """Entries with their pull ``origin`` set, and every manifest name -> (entry, manifest).

    ``org/repo:quant`` and its copies by their names; ``org/repo`` and ``org/repo:latest`` go to the
    pulled quantisation first in DEFAULT_PREFERENCE; a copy ``name`` is also ``name:latest``.
    """
    by_path = {_abs(e.path): e for e in entries}
    found: list[tuple[str, Manifest]] = []
    origins: dict[str, Manifest] = {}
    for folder, m in pulled:
        first = _abs(manifests.file_paths(folder, m)[0])
        if first not in by_path:
            dir_errors.append(f"pulled model {m.name!r}: its file {first} is missing (pull it again)")
            continue
        found.append((first, m))
        if m.kind == "pull":
            origins.setdefault(first, m)
    out = [dataclasses.replace(e, origin=origins[k]) if (k := _abs(e.path)) in origins else e
           for e in entries]
    by_path = {_abs(e.path): e for e in out}
    names: dict[str, tuple[ModelEntry, Manifest]] = {}
    order = {q: i for i, q in enumerate(DEFAULT_PREFERENCE)}
    for first, m in sorted(found, key=lambda fm: (order.get(fm[1].quant or "", len(order)), fm[1].name)):
        hit = (by_path[first], m)
        names.setdefault(m.name, hit)
        base, sep, tag = m.name.partition(":")
        if m.kind == "pull" and sep:
            names.setdefault(base, hit)
            names.setdefault(f"{base}:latest", hit)
        elif not sep:
            names.setdefault(f"{m.name}:latest", hit)
        elif tag == "latest":
            names.setdefault(base, hit)
    return out, names


def validate_name(name: object) -> str:
    """``name`` stripped, or InvalidModelName if it could be a path or holds control characters."""
    if not isinstance(name, str):
        raise InvalidModelName(f"model name must be a string, got {type(name).__name__}")
    text = name.strip()
    if not text:
        raise InvalidModelName("model name is empty")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidModelName(f"model name is {len(text)} characters long (at most {MAX_NAME_LENGTH})")
    if "/" in text or "\\" in text:
        raise InvalidModelName(f"invalid model name {text!r}: names cannot contain path separators")
    if _CONTROL.search(text):
        raise InvalidModelName(f"invalid model name {text!r}: names cannot contain control characters")
    if text in (".", "..") or os.path.isabs(text):
        raise InvalidModelName(f"invalid model name {text!r}: names cannot be paths")
    return text


def _stat(parts: Sequence[Path]) -> tuple[int, float, _CacheKey, str | None]:
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


def _read(parts: Sequence[Path]) -> tuple[GgufHeader | None, str | None]:
    try:
        return read_header(parts[0], parts=parts if len(parts) > 1 else ()), None
    except Exception as exc:  # typed errors from read_header; anything else must not stop a scan
        return None, str(exc) or type(exc).__name__


def _name_all(named: Sequence[tuple[_Found, GgufHeader | None, str | None, int, float]]) -> list[ModelEntry]:
    """Give each file its ``family:variant``; a second file with a taken name gets ``variant-<stem>``."""
    entries: list[ModelEntry] = []
    used: set[str] = set()
    for f, header, err, size, mtime in sorted(named, key=lambda t: t[0].order):
        first = f.parts[0]
        stem = _stem(first)
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
