"""Per-model knobs of issue 19 that only show with a real model: a context shift lets a stream run past its
context (and without it the stream ends), tensor overrides reach llama.cpp's loader (a device it does not
have is refused with its name), and NUMA placement is set up before the weights are loaded."""

from __future__ import annotations

import httpx
import pytest
from supervisor_harness import Server, base_settings

MODEL = "smollm2:q4_1"


def _generate(server: Server, **extra) -> dict:
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 600, "temperature": 0, "ignore_eos": True,
            **extra}
    r = httpx.post(server.url + "/v1/completions", json=body, headers={"X-Profile": "1"}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = {"context_shift": True, "tensor_overrides": ["token_embd=CPU", r"blk\.0\.ffn_.*=CPU"], "numa": "distribute"}
    srv = Server(tmp_path_factory.mktemp("knobs"), base_settings(n_ctx=256, n_parallel=1, models={"smollm2": model}))
    yield srv
    srv.stop()


def test_a_context_shift_lets_a_stream_run_past_its_context(server):
    answer = _generate(server)
    profile = answer["profile"]
    assert answer["usage"]["completion_tokens"] == 600 and answer["choices"][0]["finish_reason"] == "length"
    assert profile["context_shifts"] >= 2  # 600 tokens in a 256-token context
    kv = httpx.get(f"{server.url}/internal/kv/{MODEL}", timeout=30).json()
    assert kv["context_shifts"] >= profile["context_shifts"]


def test_n_keep_minus_one_keeps_the_whole_prompt_so_nothing_can_shift(server):
    answer = _generate(server, n_keep=-1)
    assert answer["profile"]["context_shifts"] == 0
    assert answer["usage"]["completion_tokens"] < 256  # it ended when the context was full


def test_the_overrides_and_numa_reached_the_runner(server):
    _generate(server, max_tokens=4)
    models = httpx.get(server.url + "/internal/models", timeout=30).json()["models"]
    config = next(m for m in models if m["name"] == MODEL)["config"]
    assert config["numa"] == "distribute" and config["context_shift"] is True
    assert config["tensor_overrides"] == ["token_embd=CPU", r"blk\.0\.ffn_.*=CPU"]


def test_without_a_context_shift_a_full_context_ends_the_stream(tmp_path):
    srv = Server(tmp_path, base_settings(n_ctx=256, n_parallel=1))
    try:
        answer = _generate(srv)
        assert answer["profile"]["context_shifts"] == 0 and answer["usage"]["completion_tokens"] < 256
    finally:
        srv.stop()


def test_a_device_this_machine_lacks_is_refused_by_name(tmp_path):
    srv = Server(tmp_path, base_settings(models={"smollm2": {"tensor_overrides": ["token_embd=CUDA7"]}}))
    try:
        r = httpx.post(srv.url + "/v1/completions", timeout=120,
                       json={"model": MODEL, "prompt": "Hi", "max_tokens": 2})
        assert r.status_code >= 400 and "unknown buffer type 'CUDA7'" in r.text and "CPU" in r.text, r.text
    finally:
        srv.stop()


def test_without_a_unified_cache_each_slot_has_its_share(tmp_path):
    srv = Server(tmp_path, base_settings(n_ctx=1024, n_parallel=2, models={"smollm2": {"kv_unified": False}}))
    try:
        _generate(srv, max_tokens=2)
        kv = httpx.get(f"{srv.url}/internal/kv/{MODEL}", timeout=30).json()
        assert kv["n_ctx_slot"] == 512 and kv["cells_total"] == 1024
        r = httpx.post(srv.url + "/api/generate", timeout=60, json={
            "model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_ctx": 1024, "num_predict": 2}})
        assert r.status_code == 400 and "at most 512 tokens per request" in r.text, r.text
    finally:
        srv.stop()
