#!/usr/bin/env python3
"""Fetch the pinned llama.cpp source into third_party/llama.cpp.

The source comes from the PyPI source distribution of llama-cpp-python (its
``vendor/llama.cpp``), downloaded with pip, verified by sha256, extracted once.
Idempotent: a stamp file records what is extracted; a cached archive is reused.

    python scripts/fetch_llama_cpp.py [--dest third_party/llama.cpp] [--cache DIR]

Exit codes: 0 ok, 2 hash mismatch or a broken archive, 3 download failed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_COMMIT = "0c1e570"
ARCHIVE = f"llama_cpp_python-{VERSION}.tar.gz"
VENDOR_PREFIX = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
STAMP = ".mullama-source"

ROOT = Path(__file__).resolve().parent.parent


class FetchError(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def default_cache() -> Path:
    base = os.environ.get("MULLAMA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mullama"
    )
    return Path(base) / "downloads"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamp_text() -> str:
    return f"{PACKAGE}=={VERSION} sha256={SHA256} llama.cpp={LLAMA_CPP_COMMIT}\n"


def download(cache: Path) -> Path:
    """Return a verified archive in ``cache``, downloading it with pip if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / ARCHIVE
    if archive.exists() and sha256_of(archive) == SHA256:
        return archive
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
            "--disable-pip-version-check", "-q", "-d", tmp,
            f"{PACKAGE}=={VERSION}",
        ]
        # pip prepares the sdist's metadata (in an isolated build env, ~30 s);
        # the archive is the only thing kept.
        result = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / ARCHIVE
        if not got.exists():
            raise FetchError(
                f"could not download {PACKAGE}=={VERSION} with pip:\n{result.stderr.strip()}", 3
            )
        actual = sha256_of(got)
        if actual != SHA256:
            raise FetchError(
                f"sha256 mismatch for {ARCHIVE}: expected {SHA256}, got {actual}. "
                "The download is corrupt or the registry served a different file; "
                "nothing was extracted.", 2,
            )
        os.replace(got, archive)
    return archive


def extract(archive: Path, dest: Path) -> None:
    """Extract vendor/llama.cpp from ``archive`` into ``dest`` atomically."""
    actual = sha256_of(archive)
    if actual != SHA256:
        raise FetchError(f"sha256 mismatch for {archive}: expected {SHA256}, got {actual}", 2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                if not m.name.startswith(VENDOR_PREFIX):
                    continue
                m.name = m.name[len(VENDOR_PREFIX):]
                # ".git" is a submodule pointer into llama-cpp-python's repo, which
                # is not there: keep it out so that CMake does not ask git.
                if not m.name or m.name == ".git":
                    continue
                members.append(m)
            if not members:
                raise FetchError(f"{archive} has no {VENDOR_PREFIX}", 2)
            tar.extractall(staging, members=members, filter="tar")
        (staging / STAMP).write_text(stamp_text())
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def fetch(dest: Path, cache: Path) -> Path:
    stamp = dest / STAMP
    if stamp.exists() and stamp.read_text() == stamp_text():
        return dest
    extract(download(cache), dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / "third_party" / "llama.cpp")
    parser.add_argument("--cache", type=Path, default=default_cache())
    args = parser.parse_args(argv)
    try:
        path = fetch(args.dest, args.cache)
    except FetchError as exc:
        print(f"fetch_llama_cpp: error: {exc}", file=sys.stderr)
        return exc.code
    print(f"llama.cpp {LLAMA_CPP_COMMIT} ready in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
