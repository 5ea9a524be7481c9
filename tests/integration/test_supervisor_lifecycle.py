"""The lifecycle with real runners: swaps under a memory budget, a stalled load, a killed runner.

Each test starts its own ``mullama serve`` (the settings differ), over SmolLM2
Q4_1 (bundled) and its Q8_0 variant.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import openai
import psutil
import pytest

from supervisor_harness import Server, base_settings, q8_variant

Q4, Q8 = "smollm2:q4_1", "smollm2:q8_0"


@pytest.fixture(scope="module", autouse=True)
def _second_model():
    q8_variant()


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: it no longer runs); reaping between two checks is not a failure."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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
    server = Server(tmp_path, base_settings(memory_budget="420MiB"))
    try:
        client = _client(server)
        models = [Q4, Q8] * 4
        results = await asyncio.gather(*(client.chat.completions.create(**_chat(m, n=4)) for m in models))
        assert [r.model for r in results] == models
        assert all(r.choices[0].message.content for r in results)
        assert len(server.events("evict")) >= 1
    finally:
        server.stop()


def test_a_stalled_load_is_detected_and_reported(tmp_path):
    server = Server(tmp_path, base_settings(load_timeout="3s"), env={"MULLAMA_TEST_STALL_LOAD": "1"})
    try:
        t0 = time.monotonic()
        status, body = server.call("POST", "/v1/chat/completions", _chat(Q4), timeout=120)
        elapsed = time.monotonic() - t0
        assert status == 503, body
        assert body["error"]["code"] == "load_stalled"
        assert "no progress for 3 s" in body["error"]["message"]
        assert elapsed < 60
        assert server.events("load_stalled")
        deadline = time.monotonic() + 10
        while server.runner_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.runner_pids() == []  # the stalled runner was killed
        status, body = server.call("GET", "/api/models")
        assert status == 200  # the server itself keeps serving
    finally:
        server.stop()


async def test_a_killed_runner_fails_its_streams_and_the_next_request_succeeds(tmp_path):
    server = Server(tmp_path, base_settings(n_parallel=4))
    try:
        client = _client(server)
        await client.chat.completions.create(**_chat(Q4, n=2))  # loaded
        pid = server.call("GET", "/api/ps")[1]["models"][0]["pid"]

        async def stream_until_error() -> tuple[int, BaseException | None, float]:
            got = 0
            try:
                stream = await client.chat.completions.create(
                    **{**_chat(Q4, "Count from one to one thousand.", n=2000), "stream": True,
                       "extra_body": {"ignore_eos": True}})
                async for _ in stream:
                    got += 1
            except openai.APIError as exc:
                return got, exc, time.monotonic()
            return got, None, time.monotonic()

        tasks = [asyncio.ensure_future(stream_until_error()) for _ in range(4)]
        while server.call("GET", "/api/ps")[1]["models"][0]["in_flight"] < 4:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for got, exc, ended in results:
            assert got > 0
            assert isinstance(exc, openai.APIError), "a stream ended without an error"
            assert "runner" in str(exc).lower()
            assert ended - killed_at < 2.0
        assert _gone(pid)
        deadline = time.monotonic() + 10
        while not (crashed := server.events("runner_crashed")) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert crashed and crashed[0]["pid"] == pid
        again = await client.chat.completions.create(**_chat(Q4, n=2))
        assert again.choices[0].message.content
        new_pid = server.call("GET", "/api/ps")[1]["models"][0]["pid"]
        assert new_pid != pid
    finally:
        server.stop()


def test_sigterm_drains_streams_then_stops_runners(tmp_path):
    server = Server(tmp_path, base_settings())
    try:
        status, _ = server.call("POST", "/v1/chat/completions", _chat(Q4, n=2))
        assert status == 200
        runners = server.runner_pids()
        assert runners
        assert server.stop(60) == 0
        assert [p for p in runners if not _gone(p)] == []
    finally:
        server.kill()
