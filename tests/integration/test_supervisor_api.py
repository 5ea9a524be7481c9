"""The supervisor's management routes over plain HTTP: health, readiness, the catalog, /api/ps,
explicit load/unload and keep-alive, the error shapes of routes that do not exist, and how
loads behave under concurrent requests. One real ``mullama serve`` for the module, serving
SmolLM2 as "smollm2:q4_1" (bundled, default) and "smollm2:q8_0".

Tests that need a model in a given state put it there themselves (load or unload first), so
none depends on the order the tests run in; waits on process exits are bounded polls.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import openai
import psutil
import pytest

from supervisor_harness import N_THREADS, Server, base_settings, q8_variant
from supervisor_harness import assert_openai_error as _assert_openai_error

DEFAULT = "smollm2:q4_1"
Q8 = "smollm2:q8_0"
HELLO = [{"role": "user", "content": "Say hello."}]
SETTLE_S = 15.0
STATES = ("discovered", "loading", "warming", "ready", "draining", "unloading", "unloaded")


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    q8_variant()
    srv = Server(tmp_path_factory.mktemp("supervisor-api"), base_settings())
    try:
        yield srv
    finally:
        srv.stop()


def _ok(server: Server, method: str, path: str, body: Any = None) -> Any:
    status, out = server.call(method, path, body)
    assert status == 200, (method, path, status, out)
    return out


def _ps(server: Server) -> dict[str, dict]:
    return {row["name"]: row for row in _ok(server, "GET", "/api/ps")["models"]}


def _chat(server: Server, model: str, **extra: Any) -> dict:
    return _ok(server, "POST", "/v1/chat/completions",
               {"model": model, "messages": HELLO, "max_tokens": 4, "temperature": 0, **extra})


def _unload(server: Server, model: str) -> dict:
    return _ok(server, "POST", "/api/unload", {"model": model})


def _wait_for(check: Callable[[], bool], timeout: float = SETTLE_S) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _gone(proc: psutil.Process) -> bool:
    """The process has exited (is_running also notices a recycled pid)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _model_ready_count(server: Server, model: str) -> int:
    return sum(1 for e in server.events("model_ready")
               if e.get("model") == model and e.get("logger") == "mullama.lifecycle")


# ---------------------------------------------------------------------- health


def test_health(server: Server) -> None:
    assert _ok(server, "GET", "/health") == {"status": "ok"}


def test_ready_lists_loaded_models(server: Server) -> None:
    _chat(server, DEFAULT, keep_alive="10m")
    body = _ok(server, "GET", "/ready")
    assert body["status"] == "ready"
    assert DEFAULT in body["loaded"]
    assert body["uptime_s"] >= 0


# ---------------------------------------------------------------------- catalog


def test_api_models_lists_both_variants_with_metadata(server: Server) -> None:
    body = _ok(server, "GET", "/api/models")
    rows = {m["name"]: m for m in body["models"]}
    assert {DEFAULT, Q8} <= set(rows)
    assert body["default"] in ("smollm2", DEFAULT)
    assert body["dir_errors"] == []
    for name, quant in ((DEFAULT, "Q4_1"), (Q8, "Q8_0")):
        row = rows[name]
        assert row["family"] == "smollm2"
        assert row["variant"] == name.split(":")[1]
        assert row["error"] is None
        assert row["architecture"] == "llama"
        assert row["quantization"] == quant
        assert row["context_length"] == 8192
        assert row["parameters_label"] == "135M"
        assert row["has_chat_template"] is True
        assert row["size"] > 0 and len(row["id"]) == 12
        assert row["state"] in STATES
    assert rows[DEFAULT]["source"] == "bundled"
    assert rows[Q8]["source"] == "models_dir"


@pytest.mark.parametrize("name,expected", [(Q8, Q8), (DEFAULT, DEFAULT), ("smollm2", DEFAULT)])
def test_api_show_model_has_metadata_and_config(server: Server, name: str, expected: str) -> None:
    body = _ok(server, "GET", f"/api/models/{name}")
    assert body["name"] == expected
    assert body["metadata"]["general.architecture"] == "llama"
    assert body["metadata"]["llama.block_count"] == body["n_layer"] == 30
    cfg = body["config"]
    assert cfg["n_ctx"] == 2048
    assert cfg["n_parallel"] == 4
    assert cfg["threads"] == N_THREADS


@pytest.mark.parametrize("path,status", [("/api/models/no-such-model", 404),
                                         ("/api/models/smollm2:q3_k_s", 404),
                                         ("/v1/models/no-such-model", 404),
                                         ("/api/models/..", 400)])
def test_api_show_unknown_model(server: Server, path: str, status: int) -> None:
    code, body = server.call("GET", path)
    assert code == status, body
    _assert_openai_error(body)


# ---------------------------------------------------------------------- /api/ps


def test_ps_after_a_request(server: Server) -> None:
    _chat(server, DEFAULT, keep_alive="10m")
    row = _ps(server)[DEFAULT]
    assert row["state"] == "ready"
    assert row["processor"] == "100% CPU"
    assert row["context_length"] == 2048
    assert row["n_parallel"] == 4
    assert row["in_flight"] == 0
    assert isinstance(row["port"], int) and 0 < row["port"] < 65536
    assert psutil.pid_exists(row["pid"]) and psutil.Process(row["pid"]).is_running()
    assert row["pid"] in server.runner_pids()
    assert row["size"] > 0 and row["size_vram"] == 0
    assert row["expires_at"] is not None and row["until"].endswith("from now")
    assert row["details"]["quantization_level"] == "Q4_1"


def test_runner_listens_on_loopback_only(server: Server) -> None:
    _chat(server, DEFAULT, keep_alive="10m")
    row = _ps(server)[DEFAULT]
    conns = psutil.Process(row["pid"]).net_connections(kind="inet")
    listening = [c for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening, conns
    assert {c.laddr.port for c in listening} == {row["port"]}
    for c in listening:
        assert c.laddr.ip in ("127.0.0.1", "::1"), c


# ---------------------------------------------------------------------- load / unload


def test_load_then_unload(server: Server) -> None:
    _unload(server, Q8)
    assert Q8 not in _ps(server)

    loaded = _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "10m"})
    assert loaded["model"] == Q8 and loaded["state"] == "ready"
    assert loaded["load_ms"] > 0
    proc = psutil.Process(loaded["pid"])
    assert proc.is_running()
    row = _ps(server)[Q8]
    assert row["state"] == "ready" and row["pid"] == loaded["pid"]
    assert {m["name"]: m["state"] for m in _ok(server, "GET", "/api/models")["models"]}[Q8] == "ready"

    again = _ok(server, "POST", "/api/load", {"model": Q8})  # already loaded: the same runner
    assert again["pid"] == loaded["pid"] and again["state"] == "ready"

    unloaded = _unload(server, Q8)
    assert unloaded == {"model": Q8, "was": "ready", "state": "unloaded"}
    assert _wait_for(lambda: _gone(proc)), f"runner {proc.pid} still running after unload"
    assert Q8 not in _ps(server)
    assert {m["name"]: m["state"] for m in _ok(server, "GET", "/api/models")["models"]}[Q8] == "unloaded"
    assert _unload(server, Q8)["was"] == "unloaded"  # unloading twice is harmless


def test_unload_takes_any_spelling_in_any_state(server: Server) -> None:
    body = _ok(server, "POST", "/api/unload", {"model": "smollm2:Q8_0"})
    assert body["model"] == Q8
    assert body["state"] in ("discovered", "unloaded")


def test_load_with_keep_alive_zero_unloads_soon_after(server: Server) -> None:
    _unload(server, Q8)
    loaded = _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "0"})
    proc = psutil.Process(loaded["pid"])
    try:
        assert _wait_for(lambda: Q8 not in _ps(server)), _ps(server).get(Q8)
        assert _wait_for(lambda: _gone(proc)), f"runner {proc.pid} still running"
    finally:
        _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "5m"})  # later tests expect the default


def test_keep_alive_zero_on_a_loaded_model_unloads_it(server: Server) -> None:
    _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "10m"})
    _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "0"})
    try:
        assert _wait_for(lambda: Q8 not in _ps(server), timeout=5.0), _ps(server).get(Q8)
    finally:
        _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "5m"})


def test_keep_alive_zero_on_a_request_unloads_after_it(server: Server) -> None:
    _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "10m"})
    pid = _ps(server)[Q8]["pid"]
    proc = psutil.Process(pid)
    try:
        assert _chat(server, Q8, keep_alive=0)["model"] == Q8
        assert _wait_for(lambda: Q8 not in _ps(server)), _ps(server).get(Q8)
        assert _wait_for(lambda: _gone(proc))
    finally:
        _ok(server, "POST", "/api/load", {"model": Q8, "keep_alive": "5m"})


@pytest.mark.parametrize("route", ["/api/load", "/api/unload"])
def test_load_unknown_model_is_404(server: Server, route: str) -> None:
    status, body = server.call("POST", route, {"model": "no-such-model"})
    assert status == 404, body
    assert "no-such-model" in _assert_openai_error(body)["message"]


@pytest.mark.parametrize("keep_alive", ["abc", "5 parsecs", "", [1]])
def test_load_invalid_keep_alive_is_400(server: Server, keep_alive: Any) -> None:
    status, body = server.call("POST", "/api/load", {"model": DEFAULT, "keep_alive": keep_alive})
    assert status == 400, body
    err = _assert_openai_error(body)
    assert "keep_alive" in err["message"]


@pytest.mark.parametrize("route", ["/api/load", "/api/unload"])
@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"model": 5}'], ids=["garbage", "array", "number"])
def test_load_unload_malformed_body_is_400(server: Server, route: str, body: bytes) -> None:
    req = urllib.request.Request(server.url + route, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=60)
    assert info.value.code == 400
    _assert_openai_error(json.loads(info.value.read()))


# ---------------------------------------------------------------------- routing and input safety


def test_openapi_json(server: Server) -> None:
    body = _ok(server, "GET", "/openapi.json")
    assert isinstance(body, dict)
    assert isinstance(body["paths"], dict)
    assert "/v1/chat/completions" in body["paths"]


@pytest.mark.parametrize("model", ["../etc/passwd", "/abs/path.gguf", "..", "smollm2/../../x.gguf",
                                   "C:\\models\\x.gguf", "bad\x00name"])
def test_path_like_model_name_is_400(server: Server, model: str) -> None:
    status, body = server.call("POST", "/v1/chat/completions",
                               {"model": model, "messages": HELLO, "max_tokens": 4})
    assert status == 400, body
    assert _assert_openai_error(body)["type"] == "invalid_request_error"


@pytest.mark.parametrize("method,path,status", [("GET", "/no/such/route", 404), ("POST", "/v1/nope", 404),
                                                ("GET", "/v1/chat/completions", 405),
                                                ("DELETE", "/api/ps", 405)])
def test_unknown_route_in_openai_error_shape(server: Server, method: str, path: str, status: int) -> None:
    code, body = server.call(method, path)
    assert code == status, body
    _assert_openai_error(body)


# ---------------------------------------------------------------------- concurrency during a load


async def test_concurrent_requests_during_a_load_share_one_load(server: Server) -> None:
    _unload(server, DEFAULT)
    assert DEFAULT not in _ps(server)
    before = _model_ready_count(server, DEFAULT)
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                                  timeout=120) as client:
        results = await asyncio.gather(*(
            client.chat.completions.create(model="smollm2", max_tokens=8, temperature=0,
                                           messages=[{"role": "user", "content": f"Count to {i + 2}."}])
            for i in range(6)))
    assert len(results) == 6
    for resp in results:
        assert resp.model == DEFAULT
        assert resp.choices[0].message.content
        assert resp.usage.completion_tokens > 0
    assert _wait_for(lambda: _model_ready_count(server, DEFAULT) > before, timeout=5.0)
    time.sleep(0.2)  # the log reader thread may lag a line or two behind
    assert _model_ready_count(server, DEFAULT) == before + 1
    assert _ps(server)[DEFAULT]["in_flight"] == 0
