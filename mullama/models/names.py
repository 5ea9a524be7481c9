"""Model names (pure: no I/O): local names from file names, and pulled-model names.

Local files are named ``family:variant``: ``slugify``, ``family_from_stem`` and
``quant_from_filename`` turn a file name into its parts; ``validate_name`` refuses anything that
could be a path. ``DEFAULT_PREFERENCE`` orders the variants of a family when none is configured.

A pull name is ``ORG/REPO[:QUANT]``, optionally prefixed ``hf.co/`` or ``huggingface.co/`` as
Ollama accepts. ``choose_files`` picks, from a repository's file list, the GGUF file -- or the
parts of a split GGUF (``-00001-of-0000N``) -- whose quantisation matches, case-insensitively;
with no quantisation asked for it takes the first of ``DEFAULT_PREFERENCE`` present (or
the only one). When nothing matches, the error lists the quantisations the repository has.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mullama.core.errors import InvalidModelName, PullNotFound

__all__ = [
    "DEFAULT_PREFERENCE",
    "HF_PREFIXES",
    "MAX_NAME_LENGTH",
    "PullRef",
    "RemoteFile",
    "available_quants",
    "choose_files",
    "family_from_stem",
    "family_for_repo",
    "manifest_key",
    "parse_pull_name",
    "pulled_key",
    "quant_from_filename",
    "quant_label",
    "slugify",
    "split_info",
    "validate_name",
]

HF_PREFIXES = ("hf.co/", "huggingface.co/", "https://huggingface.co/", "https://hf.co/")
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO = re.compile(rf"^(?P<org>{_PART})/(?P<repo>{_PART})$")
_QUANT_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: the quantisation label of a file: broader than the catalog's token (keeps Q4_K_XL, Q4_0_4_4, ...)
_LABEL = re.compile(r"(?<![a-z0-9])((?:iq|tq|q)[1-8](?:_[a-z0-9]+)*|bf16|f16|f32|mxfp4(?:_moe)?)(?![a-z0-9])",
                    re.IGNORECASE)
_SPLIT = re.compile(r"^(?P<base>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})$")

#: Variants tried in this order when a family has no configured default.
DEFAULT_PREFERENCE = ("q4_k_m", "q4_k_s", "q4_1", "q4_0", "q5_k_m", "q5_k_s", "q5_1", "q5_0",
                      "q6_k", "q8_0", "f16", "bf16", "f32")
MAX_NAME_LENGTH = 256
_QUANT = re.compile(
    r"(?<![a-z0-9])(iq[1-4]_(?:xxs|xs|nl|s|m)|tq[12]_0|q[1-8]_k(?:_[sml])?|q[1-8]_[01]|mxfp4(?:_moe)?"
    r"|bf16|f16|f32)(?![a-z0-9])",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

@dataclass(frozen=True)
class PullRef:
    """What a pull name asks for."""

    repo: str               # "Org/Repo", as typed (the hub matches case-insensitively)
    quant: str | None       # lowercase, or None: the preferred one
    revision: str = "main"

    @property
    def name(self) -> str:
        """``org/repo:quant`` in lowercase: the name the model is served under after the pull."""
        return f"{self.repo.lower()}:{self.quant}" if self.quant else self.repo.lower()


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository, as the hub lists it."""

    path: str               # relative to the repository root, may hold sub-directories
    size: int
    sha256: str | None      # the LFS sha256 the hub publishes (None for a file not in LFS)

    @property
    def basename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def strip_prefix(name: str) -> str:
    low = name.lower()
    for prefix in HF_PREFIXES:
        if low.startswith(prefix):
            return name[len(prefix):]
    return name


def parse_pull_name(name: object) -> PullRef:
    """``[hf.co/]ORG/REPO[:QUANT]`` -> PullRef; InvalidModelName (400) saying what is wrong otherwise."""
    if not isinstance(name, str):
        raise InvalidModelName(f"model name must be a string, got {type(name).__name__}")
    text = strip_prefix(name.strip())
    repo, colon, quant = text.partition(":")
    if not text:
        raise InvalidModelName("model name is empty")
    m = _REPO.match(repo)
    if m is None or ".." in repo or "--" in repo:
        raise InvalidModelName(
            f"invalid model name {name!r}: expected ORG/REPO[:QUANT] (a Hugging Face repository such as "
            "'bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M')")
    if ":" in quant or (colon and not _QUANT_TEXT.match(quant)):
        raise InvalidModelName(f"invalid quantisation {quant!r} in {name!r}: expected e.g. Q4_K_M")
    quant = quant.lower()
    return PullRef(repo=repo, quant=None if quant in ("", "latest") else quant)


def quant_label(path: str) -> str | None:
    """The quantisation of a GGUF file from its name (last token): ``x-Q4_K_M.gguf`` -> ``q4_k_m``."""
    stem = _stem(path.rsplit("/", 1)[-1])
    matches = list(_LABEL.finditer(stem))
    return matches[-1].group(1).lower() if matches else None


def _stem(basename: str) -> str:
    stem = basename[:-5] if basename.lower().endswith(".gguf") else basename
    m = _SPLIT.match(stem)
    return m.group("base") if m else stem


def _is_model_gguf(path: str) -> bool:
    base = path.rsplit("/", 1)[-1].lower()
    return base.endswith(".gguf") and "mmproj" not in base and not base.startswith(".")


def _sets(files: Sequence[RemoteFile]) -> list[tuple[RemoteFile, ...]]:
    """GGUF files grouped: a plain file alone, the parts of a split file together (ordered)."""
    groups: dict[tuple[str, str, int], dict[int, RemoteFile]] = {}
    out: list[tuple[RemoteFile, ...]] = []
    for f in files:
        if not _is_model_gguf(f.path):
            continue
        folder, _, base = f.path.rpartition("/")
        m = _SPLIT.match(base[:-5])
        if m is None:
            out.append((f,))
            continue
        groups.setdefault((folder, m.group("base"), int(m.group("count"))), {})[int(m.group("no"))] = f
    for (_, _, count), parts in groups.items():
        if sorted(parts) == list(range(1, count + 1)):  # an incomplete set cannot be served: leave it out
            out.append(tuple(parts[i] for i in range(1, count + 1)))
    return sorted(out, key=lambda s: s[0].path)


def available_quants(files: Sequence[RemoteFile]) -> list[str]:
    """The quantisations the repository offers (sorted), from its GGUF file names."""
    return sorted({quant_label(s[0].path) or _stem(s[0].basename).lower() for s in _sets(files)})


def choose_files(files: Sequence[RemoteFile], quant: str | None, repo: str
                 ) -> tuple[str, tuple[RemoteFile, ...]]:
    """(quant, files to download) for ``quant`` (None: the preferred one); PullNotFound lists the options."""
    sets = _sets(files)
    if not sets:
        raise PullNotFound(f"repository {repo!r} has no GGUF model files (mullama serves GGUF only; look "
                           "for a repository whose name ends in -GGUF)")
    labelled = [(quant_label(s[0].path) or _stem(s[0].basename).lower(), s) for s in sets]
    if quant is None:
        for pref in DEFAULT_PREFERENCE:
            for label, s in labelled:
                if label == pref:
                    return label, s
        if len(labelled) == 1:
            return labelled[0]
        raise PullNotFound(f"repository {repo!r} has several GGUF files and none of the usual default "
                           "quantisations; name one: "
                           f"{', '.join(q.upper() for q in available_quants(files))} "
                           f"(e.g. {repo}:{labelled[0][0].upper()})")
    want = quant.lower()
    exact = [(label, s) for label, s in labelled if label == want]
    if not exact and _LABEL.search(want):  # "UD-Q4_K_XL", or a label that is not the last token
        token = re.compile(rf"(?<![a-z0-9]){re.escape(want)}(?![a-z0-9])")
        exact = [(want, s) for _, s in labelled if token.search(_stem(s[0].basename).lower())]
        if len(exact) > 1:  # ambiguous: never pick one silently
            raise PullNotFound(f"{quant.upper()} matches several GGUF files in {repo!r}: "
                               f"{', '.join(s[0].path for _, s in exact)}; name the quantisation exactly")
    if not exact:
        raise PullNotFound(f"repository {repo!r} has no {quant.upper()} GGUF file; available quantisations: "
                           f"{', '.join(q.upper() for q in available_quants(files))}")
    exact.sort(key=lambda ls: (len(ls[1]), ls[1][0].path))  # a single file beats a split set, then by name
    return want, exact[0][1]


def family_for_repo(repo: str) -> str:
    """The catalog family (models-dir sub-directory) of a repo: ``org/SmolLM2-1B-GGUF`` -> ``smollm2-1b``."""
    name = slugify(repo.rsplit("/", 1)[-1])
    for suffix in ("-gguf", "_gguf", ".gguf"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name.strip("-._") or "model"


def manifest_key(name: str) -> str:
    """A file-system safe, unique file stem for a served name.

    ``Org/Repo:Q4_K_M`` -> ``org--repo--q4_k_m-1a2b3c4d`` (the suffix: sha256 of the lowercase name).
    """
    low = name.strip().lower()
    safe = re.sub(r"[^a-z0-9._-]", "_", low.replace("/", "--").replace(":", "--")).lstrip(".")
    return f"{safe[:150]}-{hashlib.sha256(low.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------- local names


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



def split_info(basename: str) -> tuple[str, int, int] | None:
    """(base stem, part number, part count) of ``name-00001-of-00003.gguf``; None for a plain file."""
    m = _SPLIT.match(basename[: -len(".gguf")] if basename.lower().endswith(".gguf") else os.path.splitext(basename)[0])
    if not m:
        return None
    no, count = int(m.group("no")), int(m.group("count"))
    return (m.group("base"), no, count) if 1 <= no <= count else None



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




def pulled_key(name: str) -> str | None:
    """``[hf.co/]Org/Repo[:Quant]`` -> ``org/repo[:quant]`` (the key of the manifest names), else None."""
    if _CONTROL.search(name) or len(name) > MAX_NAME_LENGTH:
        return None
    try:
        parse_pull_name(name)
    except InvalidModelName:
        return None
    return strip_prefix(name.strip()).lower()
