"""The browser guard against a real app on a real port: what a web page on another site can make a
browser send to a local server -- a DNS-rebinding Host, a foreign Origin, a no-preflight text/plain or
form POST -- is refused before any handler runs, and the server's own clients are not."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mullama import config
from mullama.http.app import create_app

JSON = {"Content-Type": "application/json"}
SWITCH = b'{"policy": "priority"}'


@pytest.fixture
async def make_guarded(tmp_path):
    clients: list[TestClient] = []

    async def make(**settings) -> TestClient:
        s = config.Settings(models_dirs=(str(tmp_path),), bundled_model=False, **settings)
        client = TestClient(TestServer(create_app(s), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def _policy(client: TestClient) -> str:
    resp = await client.get("/internal/scheduler")
    return (await resp.json())["policy"]


async def _openai_error(resp, status: int, type_: str) -> None:
    assert resp.status == status, await resp.text()
    err = (await resp.json())["error"]
    assert err["code"] == type_ and err["message"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "attacker.test:8080", "10.0.0.5"])
async def test_a_rebound_host_is_refused_when_bound_to_loopback(make_guarded, host) -> None:
    client = await make_guarded()
    for method, path, body in (("GET", "/v1/models", None), ("POST", "/internal/scheduler", SWITCH),
                               ("GET", "/internal/events?follow=0", None)):
        resp = await client.request(method, path, data=body, headers={"Host": host, **JSON})
        await _openai_error(resp, 403, "host_not_allowed")
    assert await _policy(client) == "fifo"  # nothing was switched


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.:8080", "127.0.0.1:1234", "127.8.9.10", "[::1]:8080",
                                  "app.localhost:5"])
async def test_loopback_hosts_are_served(make_guarded, host) -> None:
    client = await make_guarded()
    resp = await client.get("/v1/models", headers={"Host": host})
    assert resp.status == 200


async def test_allowed_hosts_extend_the_loopback_names(make_guarded) -> None:
    client = await make_guarded(allowed_hosts=("llm.internal",))
    assert (await client.get("/v1/models", headers={"Host": "llm.internal:8080"})).status == 200
    await _openai_error(await client.get("/v1/models", headers={"Host": "other.internal"}), 403, "host_not_allowed")


async def test_a_public_bind_checks_hosts_only_when_some_are_configured(make_guarded) -> None:
    open_ = await make_guarded(host="0.0.0.0", api_keys=("k",))
    auth = {"Authorization": "Bearer k"}
    assert (await open_.get("/v1/models", headers={"Host": "whatever.example", **auth})).status == 200
    listed = await make_guarded(host="0.0.0.0", api_keys=("k",), allowed_hosts=("llm.example",))
    assert (await listed.get("/v1/models", headers={"Host": "llm.example", **auth})).status == 200
    assert (await listed.get("/v1/models", headers={"Host": "0.0.0.0:8080", **auth})).status == 200  # its bind
    resp = await listed.get("/v1/models", headers={"Host": "whatever.example", **auth})
    await _openai_error(resp, 403, "host_not_allowed")


@pytest.mark.parametrize("origin", ["http://evil.example", "https://attacker.test:8443", "null",
                                    "http://localhost.evil.example", "http://[::1"])
async def test_a_foreign_origin_cannot_switch_the_scheduler_or_load_models(make_guarded, origin) -> None:
    client = await make_guarded()
    resp = await client.post("/internal/scheduler", data=SWITCH, headers={"Origin": origin, **JSON})
    await _openai_error(resp, 403, "origin_not_allowed")
    resp = await client.post("/api/load", data=b'{"model": "x"}', headers={"Origin": origin, **JSON})
    await _openai_error(resp, 403, "origin_not_allowed")
    assert await _policy(client) == "fifo"


async def test_the_servers_own_origin_and_configured_origins_are_allowed(make_guarded) -> None:
    client = await make_guarded(origins=("https://app.example.com",))
    own = f"http://127.0.0.1:{client.port}"
    for origin in (own, "https://app.example.com", "https://APP.example.com/"):
        resp = await client.post("/internal/scheduler", data=SWITCH, headers={"Origin": origin, **JSON})
        assert resp.status == 200, (origin, await resp.text())
    resp = await client.post("/internal/scheduler", data=SWITCH,
                             headers={"Origin": "https://app.example.com.evil.test", **JSON})
    await _openai_error(resp, 403, "origin_not_allowed")


async def test_origins_star_allows_any_origin(make_guarded) -> None:
    client = await make_guarded(origins=("*",))
    resp = await client.post("/internal/scheduler", data=SWITCH, headers={"Origin": "http://evil.example", **JSON})
    assert resp.status == 200


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/octet-stream", None])
async def test_a_body_not_declared_json_is_415_and_changes_nothing(make_guarded, content_type) -> None:
    client = await make_guarded()
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    resp = await client.post("/internal/scheduler", data=SWITCH, headers=headers)
    await _openai_error(resp, 415, "unsupported_media_type")
    assert await _policy(client) == "fifo"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json"])
async def test_json_bodies_pass(make_guarded, content_type) -> None:
    client = await make_guarded()
    resp = await client.post("/internal/scheduler", data=SWITCH, headers={"Content-Type": content_type})
    assert resp.status == 200, await resp.text()


async def test_requests_without_a_body_need_no_content_type(make_guarded) -> None:
    client = await make_guarded()
    assert (await client.get("/api/ps")).status == 200
    resp = await client.post("/api/unload")  # no body: the default model (none here): a 404, not a 415
    assert resp.status == 404


async def test_ollama_routes_refuse_in_ollamas_shape(make_guarded) -> None:
    client = await make_guarded()
    resp = await client.post("/api/pull", data=b'{"model": "a/b"}', headers={"Content-Type": "text/plain"})
    assert resp.status == 415 and "application/json" in (await resp.json())["error"]
    resp = await client.get("/api/tags", headers={"Host": "evil.example"})
    assert resp.status == 403 and "allowed_hosts" in (await resp.json())["error"]
