"""The lifecycle with real runners: swaps under a memory budget.

Each test starts its own ``mullama serve`` (the settings differ), over SmolLM2
Q4_1 (bundled) and its Q8_0 variant. Faults (a killed runner, a stalled load,
SIGTERM and SIGKILL of the supervisor) are in ``test_faults.py``.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
from supervisor_harness import Server, base_settings, q8_variant

Q4, Q8 = "smollm2:q4_1", "smollm2:q8_0"


@pytest.fixture(scope="module", autouse=True)
def _second_model():
    q8_variant()


def _client(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def _chat(model: str, text: str = "Name a colour.", n: int = 8) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": n, "temperature": 0}


def test_alternating_models_with_a_budget_for_one_swap_and_all_succeed(tmp_path):
    # one model takes ~250-300 MiB here (weights + 2048-token KV + compute); two do not fit in 420 MiB
    server = Server(tmp_path, base_settings(memory_budget="420MiB"))
    try:
        order = [Q4, Q8, Q4, Q8, Q4]
        for model in order:
            status, body = server.call("POST", "/v1/chat/completions", _chat(model))
            assert status == 200, body
            assert body["model"] == model and body["choices"][0]["message"]["content"]
        ready = [e["model"] for e in server.events("model_ready") if e.get("logger") == "mullama.lifecycle"]
        assert ready == order  # every alternation was a swap
        evicted = server.events("evict")
        assert [e["model"] for e in evicted] == order[:-1]
        assert all(e["why"] == "memory_budget" for e in evicted)
        status, ps = server.call("GET", "/api/ps")
        assert [m["name"] for m in ps["models"]] == [Q4]
        assert len(server.runner_pids()) == 1
    finally:
        server.stop()


async def test_concurrent_alternating_requests_are_all_served(tmp_path):
    # every swap drains the other model first; a long drain timeout keeps a starved CPU (other suites on
    # the same 2 cores) from turning slow requests into killed ones: this test is about ordering, not time
    server = Server(tmp_path, base_settings(memory_budget="420MiB", drain_timeout="120s"))
    try:
        client = _client(server)
        models = [Q4, Q8] * 4
        results = await asyncio.gather(*(client.chat.completions.create(**_chat(m, n=4)) for m in models))
        assert [r.model for r in results] == models
        assert all(r.choices[0].message.content for r in results)
        assert len(server.events("evict")) >= 1
    finally:
        server.stop()
