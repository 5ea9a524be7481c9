#!/usr/bin/env bash
# The GPU check, in one command, on a box with an NVIDIA GPU (made for 16 cores and one H100/H200, in at
# most 9 minutes): build the CUDA engine for that GPU's architecture only, run the GPU-marked tests, and
# benchmark `mullama serve` side by side with a CUDA llama-server built from the same tree, at 1, 8 and
# 16 streams. Everything it writes goes to $OUT (default results/gpu): steps.log with each step's time,
# gpu.csv (nvidia-smi), build.log, tests.log and tests.xml, headline.md and the benchmark's files.
#
#   bash scripts/gpu_check.sh            # from the repository root
#
# What the box needs: the CUDA toolkit (nvcc; cuBLAS from the toolkit or the `nvidia-cublas` wheel),
# CMake, ninja, a C++ compiler, and a Python with pybind11, setuptools, aiohttp, numpy, psutil,
# nvidia-ml-py, prometheus-client, rich and pytest. A box that reaches no index or model hub gets the
# rest from .gpu/ (scripts/gpu_pack.sh, run beforehand on a machine that has them): the pinned llama.cpp
# source, wheels of msgspec, structlog and gguf, and SmolLM2's metadata, from which a model of its exact
# shape with random weights is made here (scripts/gpu_model.py). With the real SmolLM2 available
# (`python -m mullama.models.assets`) that is used instead. GPU_CHECK_MODEL=path picks any GGUF.
#
# Environment: PYTHON (default python3), CMAKE_CUDA_ARCHITECTURES (default: the GPU's, with the "a"
# suffix on Hopper: 90a), GPU_CHECK_THREADS (CPU threads of both servers, default 4), GPU_CHECK_REPS
# (default 1), GPU_CHECK_STEPS (default "build tests bench"; e.g. "build" to compile only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/results/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
STEPS=${GPU_CHECK_STEPS:-build tests bench}
T0=$(date +%s)
log() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/steps.log"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }

# ---- the box
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,compute_cap --format=csv | tee "$OUT/gpu.csv"
    CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
else
    log "no nvidia-smi: no GPU here"
    CAP=""
fi
if [ -z "${CMAKE_CUDA_ARCHITECTURES:-}" ]; then
    case "$CAP" in
        90) CMAKE_CUDA_ARCHITECTURES=90a ;;   # Hopper: the arch-specific target (wgmma, TMA)
        "") CMAKE_CUDA_ARCHITECTURES=90a ;;   # no GPU: compile for the box the check is made for
        *) CMAKE_CUDA_ARCHITECTURES=$CAP ;;
    esac
fi
export CMAKE_CUDA_ARCHITECTURES
log "python $($PY -c 'import sys; print(sys.version.split()[0])'), cores $(nproc), CUDA arch $CMAKE_CUDA_ARCHITECTURES"

# ---- what .gpu/ carries
missing=$($PY -c '
import importlib.util
print(" ".join(m for m in ("msgspec", "structlog", "gguf") if importlib.util.find_spec(m) is None))')
if [ -n "$missing" ]; then
    wheels=()
    for m in $missing; do wheels+=(.gpu/wheels/"$m"-*.whl); done
    log "installing $missing from .gpu/wheels"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site \
        "${wheels[@]}"
    export PYTHONPATH=/tmp/gpu-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ ! -f third_party/llama.cpp/include/llama.h ] && [ -f .gpu/llama.cpp.tar.gz ]; then
    mkdir -p third_party/llama.cpp && tar -C third_party/llama.cpp -xzf .gpu/llama.cpp.tar.gz
    log "llama.cpp source from .gpu/llama.cpp.tar.gz"
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

# ---- 1. build: the extension and the baseline tools in one CMake tree (the CUDA backend compiles once)
BUILD=$ROOT/build/cmake-cuda-gpucheck
if want build; then
    log "build: CUDA engine for $CMAKE_CUDA_ARCHITECTURES"
    MULLAMA_CUDA=1 MULLAMA_BUILD_DIR=$BUILD MULLAMA_BUILD_JOBS=$(nproc) \
    MULLAMA_CMAKE_ARGS="-DGGML_CUDA_FA_ALL_QUANTS=OFF -DMULLAMA_BASELINE_TOOLS=ON ${MULLAMA_CMAKE_ARGS:-}" \
        $PY setup.py -q build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    log "build: llama-server, llama-bench, llama-batched-bench from the same tree"
    cmake --build "$BUILD" -j "$(nproc)" --target llama-server llama-bench llama-batched-bench \
        >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    $PY -c 'from mullama import engine; print("gpu offload:", engine.supports_gpu_offload()); print(engine.devices())' \
        | tee -a "$OUT/steps.log"
fi

# ---- the model
MODEL=${GPU_CHECK_MODEL:-}
if [ -z "$MODEL" ]; then
    MODEL=$($PY -c 'from mullama.models.assets import default_model_path as p; print(p(download=False))' 2>/dev/null || true)
fi
if [ -z "$MODEL" ] || [ ! -f "$MODEL" ]; then
    MODEL=$ROOT/build/gpu-model/SmolLM2-shape-random.Q4_1.gguf
    if [ ! -f "$MODEL" ]; then
        log "model: SmolLM2's shape with random weights (scripts/gpu_model.py)"
        mkdir -p "$(dirname "$MODEL")"
        $PY scripts/gpu_model.py weights .gpu/model "${MODEL%.Q4_1.gguf}.F16.gguf"
        $PY -c "from mullama import engine; engine.quantize('${MODEL%.Q4_1.gguf}.F16.gguf', '$MODEL', engine.QuantizeParams(type='Q4_1'))"
    fi
fi
export GPU_CHECK_MODEL=$MODEL
log "model: $MODEL"

# ---- 2. the GPU-marked tests
if want tests; then
    log "tests: pytest -m gpu tests/gpu"
    set +e
    $PY -m pytest -q -p no:cacheprovider -m gpu tests/gpu --junitxml "$OUT/tests.xml" >"$OUT/tests.log" 2>&1
    rc=$?
    set -e
    tail -15 "$OUT/tests.log"
    log "tests: exit $rc"
fi

# ---- 3. side by side: ceiling (llama-bench, llama-batched-bench), llama-server and mullama serve, all offloaded
if want bench; then
    log "bench: benchmarks/headline.py at 1, 8, 16 streams, every layer on the GPU"
    $PY benchmarks/headline.py --tools-dir "$BUILD/bin" --model "$MODEL" --n-gpu-layers 99 --fresh-prompts \
        --threads "${GPU_CHECK_THREADS:-4}" --reps "${GPU_CHECK_REPS:-1}" --out "$OUT" 2>&1 | tail -12 \
        | tee -a "$OUT/steps.log"
fi
log "done"
