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
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path

from mullama.core.errors import InvalidModelName, ModelNotFound, ModelNotPulled, ModelUnavailable
from mullama.models import manifest as manifests
from mullama.models.discovery import (
    SYMLINK_ESCAPE,
    CacheKey,
    Found,
    discover,
    file_stem,
    name_all,
    read_parts,
    stat_parts,
)
from mullama.models.entry import ModelEntry
from mullama.models.gguf_header import GgufHeader
from mullama.models.manifest import Manifest
from mullama.models.names import DEFAULT_PREFERENCE, pulled_key, validate_name

__all__ = ["Catalog", "ModelEntry", "validate_name"]


_EMPTY: Mapping[str, str] = types.MappingProxyType({})

class Catalog:
    """An immutable snapshot of the models on disk, with name resolution; build it with ``scan``."""

    def __init__(self, entries: Sequence[ModelEntry], *, aliases: Mapping[str, str],
                 default_variants: Mapping[str, str], dir_errors: Sequence[str],
                 cache: Mapping[CacheKey, tuple[GgufHeader | None, str | None]],
                 pulled: Sequence[tuple[Path, Manifest]] = ()) -> None:
        dir_errors = list(dir_errors)
        entries, self._pulled = _with_manifests(entries, pulled, dir_errors)
        self._by_name = {e.name: e for e in sorted(entries, key=lambda e: e.name)}
        self._families: dict[str, list[ModelEntry]] = {}
        self._files: dict[str, ModelEntry] = {}
        for e in self._by_name.values():
            self._families.setdefault(e.family, []).append(e)
        for e in sorted(entries, key=lambda e: (e.source == "models_dir", str(e.path))):
            for key in (e.path.name.lower(), file_stem(e.path).lower(), e.path.stem.lower()):
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
        cache: dict[CacheKey, tuple[GgufHeader | None, str | None]] = {}
        named: list[tuple[Found, GgufHeader | None, str | None, int, float]] = []
        for f in discover(dirs, extra, dir_errors):
            size, mtime, key, err = stat_parts(f.parts)
            header: GgufHeader | None = None
            err = f.error or err
            if err is None:
                if key in old:
                    header, err = old[key]
                else:
                    header, err = read_parts(f.parts)
                cache[key] = (header, err)
            named.append((f, header, err, size, mtime))
        entries = name_all(named)
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
        key = pulled_key(name)
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
        key = pulled_key(name) if isinstance(name, str) and "/" in name else \
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


