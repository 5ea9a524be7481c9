"""The dashboard's files and the API routes it added, on a real app: what a browser and Ollama's clients
get at ``/``, the files' security headers, paths that try to leave the static folder, the API key (the
page is open, the API is not), cross-site mutations, run-time pinning and the stats series."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mullama import config
from mullama.http import ui
from mullama.http.app import create_app
from mullama.ui import STATIC

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
async def make(tmp_path):
    clients: list[TestClient] = []

    async def start(**settings) -> TestClient:
        s = config.Settings(models_dirs=(str(tmp_path),), bundled_model=False, **settings)
        client = TestClient(TestServer(create_app(s), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def test_a_browser_at_root_goes_to_the_dashboard_and_ollama_clients_do_not(make) -> None:
    client = await make()
    resp = await client.get("/", headers=HTML, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/ui/"
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        resp = await client.get("/", headers=headers, allow_redirects=False)
        assert resp.status == 200 and await resp.text() == "Ollama is running"
    resp = await client.head("/", headers=HTML, allow_redirects=False)
    assert resp.status == 200  # HEAD / stays Ollama's probe
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/ui/"


async def test_files_come_with_their_type_and_a_strict_policy(make) -> None:
    client = await make()
    for path, kind in (("/ui/", "text/html"), ("/ui/js/app.js", "text/javascript"),
                       ("/ui/css/style.css", "text/css"), ("/ui/vendor/uplot/uPlot.esm.js", "text/javascript"),
                       ("/ui/vendor/uplot/LICENSE", "text/plain")):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == kind, path
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "js/app.js" in await (await client.get("/ui/")).text()


@pytest.mark.parametrize("path", ["/ui/../pyproject.toml", "/ui/%2e%2e/__init__.py", "/ui/%2e%2e/%2e%2e/config/schema.py",
                                  "/ui/js/nope.js", "/ui/js", "/ui/%00", "/ui//etc/passwd"])
async def test_nothing_outside_the_static_folder_is_served(make, path) -> None:
    client = await make()
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 404, (path, resp.status)
    assert "error" in await resp.json()


def test_static_file_refuses_links_out_of_the_folder(tmp_path) -> None:
    (tmp_path / "inside.js").write_text("x")
    (tmp_path / "out").symlink_to("/etc/hostname")
    assert ui.static_file("inside.js", tmp_path) == (tmp_path / "inside.js").resolve()
    for bad in ("out", "../" + tmp_path.name + "/inside.js/..", "/etc/hostname", "missing.css"):
        with pytest.raises(Exception) as info:
            ui.static_file(bad, tmp_path)
        assert getattr(info.value, "status", None) == 404, bad


async def test_with_keys_the_page_is_open_and_the_api_is_not(make) -> None:
    client = await make(api_keys=("sekret",))
    assert (await client.get("/ui/")).status == 200
    assert (await client.get("/ui/js/api.js")).status == 200
    resp = await client.get("/", headers=HTML, allow_redirects=False)
    assert resp.status == 302  # a browser gets the page, which asks for the key
    assert (await client.get("/", allow_redirects=False)).status == 401  # an API client still needs one
    assert (await client.get("/internal/models")).status == 401
    resp = await client.get("/internal/models", headers={"Authorization": "Bearer sekret"})
    assert resp.status == 200


async def test_a_cross_site_page_cannot_steer_the_server(make) -> None:
    client = await make()
    for path, body in (("/internal/scheduler", {"policy": "priority"}),
                       ("/internal/models/x/pin", {"pinned": True}), ("/api/unload", {"model": "x"})):
        resp = await client.post(path, json=body, headers={"Origin": "http://evil.example"})
        assert resp.status == 403, path
    view = await (await client.get("/internal/scheduler")).json()
    assert view["policy"] == "fifo"
    same = client.make_url("/").origin()
    resp = await client.post("/internal/scheduler", json={"policy": "priority"},
                             headers={"Origin": f"{same.scheme}://{same.host}:{same.port}"})
    assert resp.status == 200


async def test_the_scheduler_view_lists_the_policies_it_accepts(make) -> None:
    client = await make()
    view = await (await client.get("/internal/scheduler")).json()
    assert view["policies"] == ["fifo", "round_robin", "priority", "preemptive"]
    for name in view["policies"]:
        assert (await client.post("/internal/scheduler", json={"policy": name})).status == 200


async def test_pin_checks_its_body_and_the_model(make) -> None:
    client = await make()
    for body in ({}, {"pinned": "yes"}, {"pinned": True, "extra": 1}, [True]):
        resp = await client.post("/internal/models/x/pin", json=body)
        assert resp.status == 400, body
    resp = await client.post("/internal/models/nothing-here/pin", json={"pinned": True})
    assert resp.status == 404
    resp = await client.post("/internal/models/..%2Fetc/pin", json={"pinned": True})
    assert resp.status in (400, 404)


@pytest.mark.parametrize("since", ["x", "-1", "nan", "inf", "1e999"])
async def test_stats_since_must_be_a_time(make, since) -> None:
    client = await make()
    resp = await client.get("/internal/stats", params={"since": since})
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "since"


async def test_stats_answers_with_its_interval_and_samples(make) -> None:
    client = await make()
    body = await (await client.get("/internal/stats")).json()
    assert body["interval_s"] == 1.0 and body["window_s"] == 30.0 and isinstance(body["samples"], list)
    body = await (await client.get("/internal/stats", params={"since": "0"})).json()
    assert isinstance(body["samples"], list)


def test_the_page_never_builds_html_from_strings() -> None:
    """Model output and names are untrusted: no view may turn a string into markup."""
    for path in (STATIC / "js").rglob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{path.relative_to(STATIC)} uses {sink}"
    html = (STATIC / "index.html").read_text()
    assert "<script>" not in html and " on" + "click=" not in html and "<style" not in html
