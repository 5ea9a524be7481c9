"""/internal routes refuse what could hurt the server: arbitrary imports at run time, bad query values."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mullama.http.app import create_app
from mullama.config import load_settings


@pytest.fixture
async def client(tmp_path):
    settings = load_settings({"models_dirs": [str(tmp_path)], "bundled_model": False}, env={})
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.mark.parametrize("policy", ["os:abort", "os:fork", "subprocess:Popen", "tests.unit.example_policy:Nope"])
async def test_run_time_switch_refuses_unconfigured_import_paths(client, policy):
    resp = await client.post("/internal/scheduler", json={"policy": policy})
    assert resp.status == 400
    assert "configured" in (await resp.json())["error"]["message"]
    view = await (await client.get("/internal/scheduler")).json()
    assert view["policy"] == "fifo"


async def test_run_time_switch_to_a_built_in(client):
    resp = await client.post("/internal/scheduler", json={"policy": "round-robin"})
    assert resp.status == 200 and (await resp.json()) == {"policy": "round_robin", "previous": "fifo"}


@pytest.mark.parametrize("backlog", ["x", "-1", "100001", "1e3"])
async def test_events_backlog_must_be_a_small_integer(client, backlog):
    resp = await client.get("/internal/events", params={"backlog": backlog})
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "backlog"


async def test_events_without_follow_end_after_the_backlog(client):
    await client.post("/internal/scheduler", json={"policy": "priority"})
    resp = await client.get("/internal/events", params={"backlog": "10", "follow": "0"})
    assert resp.status == 200
    text = await resp.text()
    assert "event: scheduler_changed" in text
