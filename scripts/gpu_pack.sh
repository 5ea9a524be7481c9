#!/usr/bin/env bash
# What a GPU box without network needs for scripts/gpu_check.sh, packed into .gpu/ (git-ignored; carry
# it, e.g. the device tool's `carry: [".gpu"]`). Run here, in the repository root, after `make setup model`.
#
#   .gpu/llama.cpp.tar.gz  the pinned llama.cpp source, trimmed to what the CUDA build and the baseline
#                          tools need (no models, docs, tests or other GPU backends): 8 MB
#   .gpu/wheels/           mullama's pure dependencies that the box's image lacks (msgspec, structlog, gguf)
#                          for its Python (3.12, x86-64)
#   .gpu/model/            the bundled SmolLM2 as metadata and tokenizer without weights (scripts/gpu_model.py)
#
# Usage: bash scripts/gpu_pack.sh [PYTHON_VERSION]   (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
PY=${PYTHON:-.venv/bin/python}
SRC=third_party/llama.cpp
[ -f "$SRC/include/llama.h" ] || { echo "no llama.cpp source in $SRC: run make setup first" >&2; exit 2; }
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/model

other_backends=$(cd "$SRC/ggml/src" && ls -d ggml-*/ | grep -v -E '^ggml-(cpu|cuda|rpc)/$' | sed 's|/$||')
excludes=(--exclude=./models --exclude=./docs --exclude=./media --exclude=./benches --exclude=./tests
          --exclude=./gguf-py --exclude=./examples --exclude=./pocs --exclude=./tools/ui/node_modules
          --exclude='*.gguf')
for b in $other_backends; do excludes+=("--exclude=./ggml/src/$b"); done
tar -C "$SRC" "${excludes[@]}" -czf .gpu/llama.cpp.tar.gz .

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/wheels msgspec structlog gguf

"$PY" scripts/gpu_model.py skeleton "$("$PY" -c 'from mullama.models.assets import default_model_path as p; print(p())')" .gpu/model
du -sh .gpu .gpu/*
