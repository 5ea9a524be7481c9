"""On a real NVIDIA GPU with the CUDA build (scripts/gpu_check.sh runs them: ``pytest -m gpu tests/gpu``).

Skipped where there is no GPU, no NVML or an engine without GPU offload (this development machine, CI).
The model is $GPU_CHECK_MODEL (the check's SmolLM2-shaped one) or the bundled SmolLM2. What is checked
against NVML, the driver's own accounting:
- the device list the placement plans with (hardware/devices.py) is NVML's, GPU for GPU;
- a full and a partial offload (n_gpu_layers) each put what /api/ps and /metrics say on the GPU, and the
  runner process holds that much device memory by NVML (plus the CUDA context, minus nothing).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from supervisor_harness import Server, base_settings

from mullama import engine

MiB = 1 << 20
CUDA_CONTEXT_MAX = 1536 * MiB  # what a process's CUDA context and cuBLAS workspace may add beyond our buffers


def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml if pynvml.nvmlDeviceGetCount() > 0 else None
    except Exception:  # no library, no driver, no device
        return None


NVML = _nvml()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(NVML is None or not engine.supports_gpu_offload(),
                       reason="needs an NVIDIA GPU (NVML) and the CUDA build (scripts/gpu_check.sh)"),
]


@pytest.fixture(scope="module")
def model_path() -> str:
    from mullama.models.assets import default_model_path

    return os.environ.get("GPU_CHECK_MODEL") or str(default_model_path())


def process_gpu_bytes(pid: int) -> int:
    """Device memory NVML accounts to ``pid`` on every GPU."""
    total = 0
    for i in range(NVML.nvmlDeviceGetCount()):
        handle = NVML.nvmlDeviceGetHandleByIndex(i)
        for p in NVML.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == pid and p.usedGpuMemory is not None:
                total += p.usedGpuMemory
    return total


def test_the_device_list_is_nvmls():
    from mullama.hardware import devices

    gpus = devices.probe().gpus
    assert len(gpus) == NVML.nvmlDeviceGetCount()
    for gpu in gpus:
        handle = NVML.nvmlDeviceGetHandleByIndex(gpu.index)
        assert gpu.total == NVML.nvmlDeviceGetMemoryInfo(handle).total
        assert 0 < gpu.free <= gpu.total
    assert {d["type"] for d in engine.devices()} >= {"gpu"}


def serve(tmp_path: Path, model_path: str, n_gpu_layers: int) -> Server:
    settings = base_settings(n_parallel=2, n_ctx=4096, default_model="target",
                             models={"target": {"path": model_path, "n_gpu_layers": n_gpu_layers}})
    return Server(tmp_path, settings)


def loaded(server: Server) -> dict:
    status, body = server.call("POST", "/v1/completions", {"prompt": "The GPU says", "max_tokens": 8,
                                                           "temperature": 0})
    assert status == 200, body
    status, ps = server.call("GET", "/api/ps")
    assert status == 200
    row, = ps["models"]
    return row


def metric_bytes(server: Server, device_prefix: str) -> int:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = server.call("GET", "/metrics")
    assert status == 200
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "mullama_model_memory_bytes" and s.labels["device"].startswith(device_prefix)))


@pytest.mark.parametrize("n_gpu_layers", [99, 12])
def test_an_offload_is_on_the_gpu_as_ps_metrics_and_nvml_say(tmp_path, model_path, n_gpu_layers):
    server = serve(tmp_path, model_path, n_gpu_layers)
    try:
        row = loaded(server)
        vram = row["size_vram"]
        assert 0 < vram <= row["size"]
        if n_gpu_layers == 99:
            assert row["processor"] == "100% GPU" and vram > 0.75 * row["size"], row  # token_embd stays on the host
        else:
            assert row["processor"].endswith("CPU/GPU") and vram < 0.8 * row["size"], row
        assert metric_bytes(server, "CUDA") == vram  # /metrics and /api/ps: one accounting
        held = process_gpu_bytes(row["pid"])
        assert vram <= held <= vram + CUDA_CONTEXT_MAX, (held, vram)
    finally:
        server.stop()


def test_the_placement_counts_the_gpus_free_memory(tmp_path, model_path):
    """n_gpu_layers unset: the plan puts every layer on the GPU (it has the room), as /internal/models shows."""
    server = Server(tmp_path, base_settings(n_parallel=2, n_ctx=4096, default_model="target",
                                            models={"target": {"path": model_path}}))
    try:
        row = loaded(server)
        assert row["processor"] == "100% GPU", row
        status, models = server.call("GET", "/internal/models")
        assert status == 200
        placed = [m for m in models["models"] if m.get("placement")]
        assert placed and all(m["placement"]["full_offload"] for m in placed), placed
    finally:
        server.stop()
