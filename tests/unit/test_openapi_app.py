"""The OpenAPI document against the real app: what the server sends fits the documented response schema
(no runner, then fake runners)."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import time
from collections.abc import Callable
from typing import Any

import openapi_checks
import pytest
from openapi_checks import (
    MSG,
    SPEC,
    check,
    component,
    operations,
    response_validator,
)

from mullama import wire
from mullama.http.keys import SUPERVISOR
from mullama.serving.policies import Request

make_client = openapi_checks.make_client  # the fixture: the real app over tiny models, no runner


# ---------------------------------------------------------------------- the real app, no runners


VARIANT = "/internal/models/{family}/variant"
CALLS = [
    ("get", "/health", "/health", None, 200),
    ("get", "/ready", "/ready", None, 200),
    ("get", "/api/ps", "/api/ps", None, 200),
    ("get", "/api/models", "/api/models", None, 200),
    ("get", "/api/models/{name}", "/api/models/tiny", None, 200),
    ("get", "/api/models/{name}", "/api/models/nope", None, 404),
    ("get", "/api/models/{name}", "/api/models/junk", None, 422),
    ("get", "/v1/models", "/v1/models", None, 200),
    ("get", "/v1/models/{name}", "/v1/models/tiny", None, 200),
    ("get", "/v1/models/{name}", "/v1/models/nope", None, 404),
    ("get", "/openapi.json", "/openapi.json", None, 200),
    ("post", "/api/unload", "/api/unload", {"model": "tiny"}, 200),
    ("post", "/api/unload", "/api/unload", {"model": "nope"}, 404),
    ("post", "/api/unload", "/api/unload", {"model": 5}, 400),
    ("post", "/api/load", "/api/load", {"model": "tiny", "keep_alive": "soon"}, 400),
    ("post", "/v1/chat/completions", "/v1/chat/completions", {"messages": []}, 400),
    ("post", "/v1/chat/completions", "/v1/chat/completions", {"model": "nope", "messages": MSG}, 404),
    ("post", "/v1/completions", "/v1/completions", {"prompt": [1, 2], "echo": True}, 400),
    ("post", "/v1/embeddings", "/v1/embeddings", {"input": [1, 2], "model": "tiny"}, 400),
    ("get", "/internal/scheduler", "/internal/scheduler", None, 200),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "Round-Robin"}, 200),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "preemptive"}, 200),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "nope"}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": ""}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "no.such_module:Policy"}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": 5}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "fifo", "extra": 1}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", None, 400),
    ("get", "/internal/models", "/internal/models", None, 200),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": "f32"}, 200),   # the one there is
    ("post", VARIANT, "/internal/models/TINY/variant", {"variant": "F32"}, 200),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": "q2_k"}, 404),
    ("post", VARIANT, "/internal/models/nope/variant", {"variant": "f32"}, 404),
    ("post", VARIANT, "/internal/models/junk/variant", {"variant": "default"}, 422),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": 5}, 400),
    ("post", VARIANT, "/internal/models/tiny/variant", {}, 400),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": "f32", "now": True}, 400),
    ("get", "/internal/kv/{model}", "/internal/kv/tiny", None, 503),
    ("get", "/internal/kv/{model}", "/internal/kv/tiny:f32", None, 503),
    ("get", "/internal/kv/{model}", "/internal/kv/nope", None, 404),
    ("get", "/internal/kv/{model}", "/internal/kv/junk", None, 422),
    ("get", "/internal/kv/{model}", "/internal/kv/a/b/c", None, 400),
]


@pytest.mark.parametrize("method, template, url, body, status", CALLS)
async def test_real_responses_fit(method: str, template: str, url: str, body: Any, status: int,
                                  make_client) -> None:
    client = await make_client()
    try:
        await check(client, method, template, url, body, status)
    finally:
        await client.close()


async def test_policy_switch_answers_what_changed(make_client) -> None:
    client = await make_client(scheduler="fifo")
    try:
        changed = await check(client, "post", "/internal/scheduler", "/internal/scheduler",
                              {"policy": "priority"}, 200)
        assert changed == {"policy": "priority", "previous": "fifo"}
        view = await check(client, "get", "/internal/scheduler", "/internal/scheduler", None, 200)
        assert view["policy"] == "priority"
    finally:
        await client.close()


async def test_metrics_is_prometheus_text(make_client) -> None:
    client = await make_client()
    try:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.content_type in SPEC["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert "# TYPE mullama_build_info gauge" in await resp.text()
    finally:
        await client.close()


async def test_events_is_an_event_stream(make_client) -> None:
    client = await make_client()
    try:
        client.server.app[SUPERVISOR].emit("model_loading", model="tiny:f32", reason="api")
        resp = await client.get("/internal/events", params={"backlog": "1"})
        assert resp.status == 200
        assert resp.content_type in SPEC["paths"]["/internal/events"]["get"]["responses"]["200"]["content"]
        assert await resp.content.readline() == b": mullama events\n"
        await resp.content.readline()
        event = (await resp.content.readline(), await resp.content.readline())
        assert event[0] == b"event: model_loading\n"
        record = json.loads(event[1].removeprefix(b"data: "))
        assert not list(component("Event").iter_errors(record)), record
        resp.close()
    finally:
        await client.close()


# ---------------------------------------------------------------------- the real app, fake runners


class FakeRunner:
    """``lifecycle.Handle`` and its client without a process: loads at once, answers health and /kv with
    ``busy`` (a request id) in slot 0."""

    def __init__(self, pid: int) -> None:
        self.pid, self.port = pid, 40000 + pid
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.tail = collections.deque(["last words"], maxlen=5)
        self.stalled = ""
        self.stopping = False
        self.busy: str | None = None
        self.client = self

    async def load(self, params: wire.LoadParams, timeout: float | None = None) -> wire.LoadResult:
        cpu = wire.DeviceMemory(device="CPU", description="cpu", type="cpu", free=0, total=0,
                                    model=1 << 20, context=1 << 18, compute=1 << 16)
        return wire.LoadResult(op=params.op, status="ready", devices=[cpu], n_ctx=512, n_layer=2)

    async def health(self, timeout: float = 5.0) -> wire.Health:
        return wire.Health(status="ready", progress=1.0)

    async def cache_ram(self, limit: int | None = None) -> wire.CacheRam:
        return wire.CacheRam(limit=limit or 0, held=0)

    async def kv(self, timeout: float = 30.0) -> wire.KvView:
        slots = [wire.SlotView(index=0, state="busy", request_id=self.busy, n_tokens=7, n_cached=3,
                                   n_prompt=5, n_generated=2),
                 wire.SlotView(index=1, state="idle", request_id=None, n_tokens=0, n_cached=0, n_prompt=0,
                                   n_generated=0)]
        return wire.KvView(slots=slots, cells_used=7, cells_total=512, n_ctx_slot=256, prefix_hits=3,
                               prefix_misses=2, prefix_evictions=0, cached_tokens=3)

    def exit(self, code: int) -> None:
        if not self.exited.done():
            self.exited.set_result(code)

    async def stop(self, drain_timeout: float) -> int:
        self.stopping = True
        self.exit(0)
        return 0

    async def kill(self) -> int:
        self.stopping = True
        self.exit(-9)
        return -9


async def settle(done: Callable[[], bool]) -> None:
    """Let the scheduler and lifecycle tasks run until ``done()`` (no timing is asserted)."""
    for _ in range(2000):
        if done():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the state never settled")


async def test_internal_views_of_loaded_models_fit(make_client, tmp_path) -> None:
    """Models loaded through the real lifecycle (fake runners): KV view, scheduler with a queue and slots,
    models with placement, history, loads, a crash and a variant swap, metrics with gauges."""
    import gguf_factory

    gguf_factory.write_tiny_llama(tmp_path / "tiny.F16.gguf", gguf_factory.TinySpec(dtype="f16"))  # tiny:f16
    runners: list[FakeRunner] = []

    async def launch(name: str) -> FakeRunner:
        runners.append(FakeRunner(len(runners) + 1))
        return runners[-1]

    client = await make_client(launch, n_parallel=1, scheduler="priority")
    sup = client.server.app[SUPERVISOR]
    tasks: list[asyncio.Task] = []
    try:
        await check(client, "post", "/api/load", "/api/load", {"model": "tiny"}, 200)  # the default, tiny:f16
        kv = await check(client, "get", "/internal/kv/{model}", "/internal/kv/tiny", None, 200)
        assert kv["model"] == "tiny:f16" and kv["usage_ratio"] == round(7 / 512, 4)

        # n_parallel 1: r0 runs, r1 and r2 wait
        for i, deadline in enumerate([None, time.monotonic() + 60, None]):
            tasks.append(asyncio.create_task(sup.scheduler.submit(
                Request(id=f"r{i}", model="tiny:f16", user="u", priority=i, deadline=deadline))))
            await settle(lambda i=i: sup.scheduler.running() == {"tiny:f16": 1} and
                         sum(sup.scheduler.waiting().values()) == i)
        runners[0].busy = "r0"
        view = await check(client, "get", "/internal/scheduler", "/internal/scheduler", None, 200)
        assert view["running"]["tiny:f16"][0]["slot"] == 0 and len(view["queue"]) == 2
        queue = [(q["id"], q["deadline_in_ms"] is None) for q in view["queue"]]
        assert queue == [("r2", True), ("r1", False)]

        swap = await check(client, "post", VARIANT, "/internal/models/tiny/variant", {"variant": "f32"}, 200)
        assert swap["mode"] == "parallel" and swap["previous"] == "tiny:f16"
        runners[-1].exit(-9)  # tiny:f32's runner dies
        await settle(lambda: sup.lifecycle.runtimes["tiny:f32"].crashes == 1)
        models = await check(client, "get", "/internal/models", "/internal/models", None, 200)
        by_name = {m["name"]: m for m in models["models"]}
        assert by_name["tiny:f32"]["loads"][-1]["crash"] and by_name["tiny:f16"]["placement"] is None
        assert models["swaps"] == [swap]
        assert models["variants"] == {"tiny": "f32"}

        resp = await client.get("/metrics")
        assert resp.status == 200 and resp.content_type == "text/plain"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


async def test_api_keys_give_documented_401(make_client) -> None:
    client = await make_client(api_keys=("k",))
    try:
        for path, method, _ in operations():
            if path == "/health" or path.startswith("/ui"):  # open: the dashboard's files ask for the key
                continue
            url = re.sub(r"{\w+}", "tiny", path)
            resp = await client.request(method.upper(), url, json={})
            assert resp.status == 401, url
            assert not list(response_validator(path, method, 401).iter_errors(await resp.json()))
        resp = await client.get("/api/ps", headers={"X-Api-Key": "k"})
        assert resp.status == 200
    finally:
        await client.close()
