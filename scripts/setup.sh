#!/usr/bin/env bash
# Installs everything mullama needs on a fresh Debian machine and builds it:
# system packages (compiler, cmake, ninja, ccache), a virtualenv in .venv with
# the Python dependencies, the pinned llama.cpp source, and the extension.
# Idempotent: a second run reuses the venv, the source and the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v ccache >/dev/null || missing+=(ccache)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null; then
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: please install: ${missing[*]}" >&2
        exit 1
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install "setuptools>=68" wheel "pybind11>=2.13"
python_ok=$(.venv/bin/python -c 'import sys; print(sys.version_info >= (3, 10))')
[ "$python_ok" = True ] || { echo "setup: Python >= 3.10 required" >&2; exit 1; }

.venv/bin/python scripts/fetch_llama_cpp.py
# --no-build-isolation: build with the venv's pybind11 so that CMake's cache
# stays valid between runs and llama.cpp is not rebuilt. pip runs verbose into
# build/setup.log; build_progress.py shows the compile's progress from it.
mkdir -p build
echo "setup: installing mullama and its dependencies (full log: build/setup.log)"
if ! .venv/bin/python -m pip --disable-pip-version-check install -v --no-build-isolation -e ".[test]" 2>&1 \
        | tee build/setup.log | .venv/bin/python scripts/build_progress.py; then
    echo "setup: pip install failed; the last lines of build/setup.log:" >&2
    tail -n 40 build/setup.log >&2
    exit 1
fi
