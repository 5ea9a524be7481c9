#!/usr/bin/env python3
"""Build llama.cpp's own tools (llama-bench, llama-server, ...) as baselines.

The code lives in ``mullama/bench/baselines.py`` (``mullama bench --baseline llama-server``
needs it at run time); this script and its names stay for the other benchmark scripts.

    python benchmarks/baselines.py                     # llama-bench
    python benchmarks/baselines.py llama-bench llama-server
    python benchmarks/baselines.py --print-path llama-bench

From Python::

    from baselines import build_tools          # benchmarks/ on sys.path
    paths = build_tools(["llama-bench"])       # {"llama-bench": Path(...)}
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mullama.bench.baselines import (  # noqa: F401
    DEFAULT_BUILD_DIR,
    KNOWN_TARGETS,
    PINNED_COMMIT,
    ROOT,
    STAMP,
    BaselineError,
    build_tool,
    build_tools,
    cmake_args,
    configure,
    cpu_model,
    default_build_dir,
    default_openmp,
    llama_cpp_commit,
    llama_cpp_dir,
    main,
)

if __name__ == "__main__":
    sys.exit(main())
