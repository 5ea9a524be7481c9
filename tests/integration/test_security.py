"""The security promises of docs/security.md that no other test already proves: API keys (several,
Bearer and X-Api-Key, compared in constant time against every key, /health exempt), runners that
refuse a caller without their per-spawn secret (tried from another local process), refusing a public
bind without keys unless --allow-public (which then warns), symlinks out of the models dirs, the
request limits naming themselves, and prompts and outputs staying out of the logs and the event log
at the default log level.

One real ``mullama serve`` with two API keys serves most tests; the bind tests start their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf_factory
import pytest
from supervisor_harness import REPO_ROOT, Server, assert_openai_error, base_settings, jsonl_records

KEYS = ("key-alpha-4f1c9e", "key-bravo-77d2aa")
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
LIMITS = {"max_body_bytes": 64 << 10, "max_tokens_limit": 32, "max_messages": 4, "max_stop": 2}
N_CTX = 512
HI = [{"role": "user", "content": "hi"}]
#: every route of the runner (mullama/runner/server.py): none is exempt from the token, not even /health
RUNNER_ROUTES = [
    ("GET", "/health"),
    ("POST", "/load"),
    ("POST", "/completion"),
    ("POST", "/embedding"),
    ("POST", "/tokenize"),
    ("POST", "/detokenize"),
    ("POST", "/apply-template"),
    ("POST", "/cancel"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("GET", "/kv"),
    ("GET", "/stats"),
    ("GET", "/no-such-route"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("security")


@pytest.fixture(scope="module")
def models_dir(workdir: Path) -> Path:
    """A models dir holding a symlink to a GGUF outside every models dir."""
    (workdir / "outside").mkdir()
    outside = gguf_factory.write_tiny_llama(workdir / "outside" / "secret.gguf")
    models = workdir / "models"
    models.mkdir()
    (models / "escape.gguf").symlink_to(outside)
    return models


@pytest.fixture(scope="module")
def server(workdir: Path, models_dir: Path) -> Iterator[Server]:
    settings = base_settings(
        threads=1,
        threads_batch=1,
        n_ctx=N_CTX,
        n_parallel=1,
        keep_alive="1h",
        api_keys=list(KEYS),
        event_log=str(workdir / "events.jsonl"),
        **LIMITS,
    )
    settings["models_dirs"] = [*settings["models_dirs"], str(models_dir)]
    del settings["log_level"]  # the default level: what the log promise is about
    srv = Server(workdir / "keyed", settings)
    try:
        yield srv
    finally:
        srv.stop()


def _call(
    server: Server,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    return server.call(method, path, body, headers=AUTH if headers is None else headers)


def _chat(server: Server, **fields: Any) -> tuple[int, Any]:
    return _call(server, "POST", "/v1/chat/completions", {"messages": HI, "max_tokens": 1, **fields})


# ---------------------------------------------------------------------- API keys


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
@pytest.mark.parametrize("key", KEYS)
def test_every_key_works_as_bearer_and_x_api_key(server: Server, header: str, key: str) -> None:
    value = f"Bearer {key}" if header == "Authorization" else key
    status, body = server.call("GET", "/v1/models", headers={header: value})
    assert status == 200, body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {KEYS[0][:-1]}"},
        {"Authorization": f"Bearer {KEYS[0]}x"},
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": "Bearer "},
        {"Authorization": KEYS[0]},
        {"Authorization": f"Bearer {KEYS[0].upper()}"},
        {"X-Api-Key": "wrong"},
        {"X-Api-Key": ""},
        {"Authorization": "Bearer wrong", "X-Api-Key": KEYS[0]},
        {"Authorization": f"Bearer {KEYS[0]},{KEYS[1]}"},
        {"X-Api-Key": "\xff\xfe"},  # bytes that are not UTF-8 (sent as latin-1 by urllib)
    ],
    ids=[
        "none",
        "wrong",
        "prefix",
        "suffix",
        "basic",
        "empty_bearer",
        "no_scheme",
        "case",
        "wrong_x_api_key",
        "empty_x_api_key",
        "wrong_bearer_beats_x_api_key",
        "two_keys",
        "not_utf8",
    ],
)
@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/api/ps"),
        ("POST", "/api/load"),
        ("GET", "/internal/models"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/ready"),
        ("GET", "/no/such/route"),
    ],
)
def test_missing_or_wrong_key_is_401(server: Server, headers: dict[str, str], method: str, path: str) -> None:
    status, body = server.call(method, path, {"messages": HI} if method == "POST" else None, headers=headers)
    assert status == 401, body
    err = assert_openai_error(body)
    assert err["type"] == "authentication_error"
    assert KEYS[0] not in err["message"] and KEYS[1] not in err["message"]


def test_health_needs_no_key(server: Server) -> None:
    assert server.call("GET", "/health", headers={}) == (200, {"status": "ok"})


async def test_keys_are_compared_in_constant_time_against_every_key(tmp_path: Path, monkeypatch) -> None:
    """Every request is compared with ``hmac.compare_digest`` against every configured key, also after
    a match: neither the time taken nor the number of comparisons tells which key matched."""
    import hmac

    from aiohttp.test_utils import TestClient, TestServer

    from mullama import config
    from mullama.http import middleware
    from mullama.http.app import create_app

    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", counting)
    keys = ("k-one", "k-two", "k-three")
    settings = config.Settings(models_dirs=(str(tmp_path),), bundled_model=False, api_keys=keys)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        for given, status in (("k-one", 200), ("k-three", 200), ("nope", 401)):
            calls.clear()
            resp = await client.get("/v1/models", headers={"Authorization": f"Bearer {given}"})
            assert resp.status == status
            assert sorted(b for _, b in calls) == sorted(k.encode() for k in keys)
    finally:
        await client.close()


# ---------------------------------------------------------------------- runners

_PROBE = r"""
import json, sys, urllib.error, urllib.request
port, routes, tokens = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = []
for token in tokens:
    for method, path in routes:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = token
        data = b'{"prompt": "hi", "max_tokens": 1}' if method == "POST" else None
        url = f"http://127.0.0.1:{port}{path}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                out.append([token, path, resp.status, resp.read().decode()])
        except urllib.error.HTTPError as exc:
            out.append([token, path, exc.code, exc.read().decode()])
print(json.dumps(out))
"""


def test_runner_refuses_other_processes_without_its_secret(server: Server) -> None:
    status, body = _chat(server)
    assert status == 200, body
    status, ps = _call(server, "GET", "/api/ps")
    (row,) = [r for r in ps["models"] if r["name"] == "smollm2:q4_1"]
    tokens = [None, "Bearer ", "Bearer wrong", f"Bearer {KEYS[0]}", "Bearer " + "A" * 43, "Basic x"]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(row["port"]), json.dumps(RUNNER_ROUTES), json.dumps(tokens)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(tokens) * len(RUNNER_ROUTES)
    for token, path, status, text in results:
        assert status == 401, (token, path, status, text)
        assert json.loads(text)["error"]["type"] == "authentication_error"
    assert _chat(server)[0] == 200  # the runner is still serving its supervisor


# ---------------------------------------------------------------------- binding


def _serve(workdir: Path, *extra: str) -> list[str]:
    config = workdir / f"public-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(f'models_dirs = ["{workdir}"]\nbundled_model = false\nlog_format = "json"\n')
    return [sys.executable, "-m", "mullama.cli", "serve", "--config", str(config), "--port", "0", *extra]


def test_public_bind_without_keys_is_refused(workdir: Path) -> None:
    proc = subprocess.run(
        _serve(workdir, "--host", "0.0.0.0"),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode != 0
    assert "not a loopback address" in proc.stderr and "--allow-public" in proc.stderr, proc.stderr


def test_allow_public_serves_and_warns(workdir: Path) -> None:
    srv = Server(workdir / "public", {}, argv=_serve(workdir, "--host", "0.0.0.0", "--allow-public"))
    try:
        assert srv.call("GET", "/health") == (200, {"status": "ok"})
        (warning,) = srv.events("public_without_keys")
        assert warning["level"] == "warning" and warning["host"] == "0.0.0.0"
    finally:
        srv.stop()


# ---------------------------------------------------------------------- names and paths


def test_symlink_out_of_the_models_dirs_is_refused(server: Server, models_dir: Path) -> None:
    status, catalog = _call(server, "GET", "/api/models?refresh=1")
    (entry,) = [m for m in catalog["models"] if m["name"].startswith("escape")]
    assert "outside the models directories" in entry["error"]
    for name in ("escape", entry["name"]):
        status, body = _chat(server, model=name)
        assert status == 400, body
        err = assert_openai_error(body)
        assert "outside the models directories" in err["message"] and err["param"] == "model"
        status, body = _call(server, "POST", "/api/load", {"model": name})
        assert status == 400, body
    assert not [r for r in _call(server, "GET", "/api/ps")[1]["models"] if r["name"].startswith("escape")]


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "..", "smollm2/../../x", "a\\b", "~/x"])
@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("POST", "/api/load"),
        ("GET", "/api/models/{}"),
        ("GET", "/v1/models/{}"),
        ("GET", "/internal/kv/{}"),
    ],
)
def test_path_escape_names_are_400(server: Server, name: str, method: str, path: str) -> None:
    from urllib.parse import quote

    if method == "GET":
        status, body = _call(server, method, path.format(quote(name, safe="")))
    else:
        status, body = _call(server, method, path, {"model": name, "messages": HI, "input": "a"})
    assert status == 400, body
    assert assert_openai_error(body)["param"] == "model"


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    "fields,param,number",
    [
        ({"max_tokens": 33}, "max_tokens", "32"),
        ({"max_tokens": None, "max_completion_tokens": 33}, "max_completion_tokens", "32"),
        ({"messages": HI * 5}, "messages", "4"),
        ({"stop": ["a", "b", "c"]}, "stop", "2"),
    ],
)
def test_request_limits_name_the_limit(server: Server, fields: dict, param: str, number: str) -> None:
    status, body = _chat(server, **fields)
    assert status == 400, body
    err = assert_openai_error(body)
    assert err["param"] == param and f"limit of {number}" in err["message"]


def test_body_limit_is_413_naming_the_size(server: Server) -> None:
    status, body = _chat(server, messages=[{"role": "user", "content": "x" * (64 << 10)}])
    assert status == 413, body
    assert str(64 << 10) in assert_openai_error(body)["message"]


@pytest.mark.parametrize(
    "path,body",
    [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hello " * 600}], "max_tokens": 1},
        ),
        ("/v1/completions", {"prompt": "hello " * 600, "max_tokens": 1}),
        ("/v1/embeddings", {"input": "hello " * 600}),
    ],
)
def test_input_longer_than_the_context_is_400(server: Server, path: str, body: dict) -> None:
    status, out = _call(server, "POST", path, body)
    assert status == 400, out
    assert assert_openai_error(out)["code"] == "context_length_exceeded"


# ---------------------------------------------------------------------- logs


def _sse_text(stream: str) -> str:
    chunks = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_prompts_and_outputs_stay_out_of_the_logs(server: Server, workdir: Path) -> None:
    """At the default log level neither the supervisor's log, the runners' relayed logs nor the event log
    holds a prompt or a generated text, for answered, streamed and refused requests alike."""
    secret = f"PROMPT-SECRET-{uuid.uuid4().hex}"
    output = f"OUT{uuid.uuid4().hex[:8].upper()}"
    grammar = f'root ::= "{output}"'  # the model can only say this: a string that is nowhere else
    asked = [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": secret}], "grammar": grammar, "max_tokens": 24},
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "system", "content": secret}, *HI],
                "grammar": grammar,
                "max_tokens": 24,
                "stream": True,
            },
        ),
        ("/v1/completions", {"prompt": secret, "grammar": grammar, "max_tokens": 24}),
        ("/v1/embeddings", {"input": secret}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": secret}], "temperature": 9}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": secret + " x" * 600}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": secret}], "grammar": "root ::= ("},
        ),
    ]
    answers = [_call(server, "POST", path, body) for path, body in asked]
    assert [status for status, _ in answers] == [200, 200, 200, 200, 400, 400, 400], answers
    assert answers[0][1]["choices"][0]["message"]["content"] == output
    assert _sse_text(answers[1][1]) == output and answers[2][1]["choices"][0]["text"] == output
    logs = server.log_text()
    events = (workdir / "events.jsonl").read_text()
    assert jsonl_records(workdir / "events.jsonl")
    for text in (secret, output, secret[len("PROMPT-") :]):
        assert text not in logs
        assert text not in events


def test_runner_logs_reach_the_supervisor_log(server: Server) -> None:
    """The log test above reads the runners' logs in the supervisor's: each runner's JSON stderr lines
    are relayed there (``runner_process.py``), its per-request "completion" record included."""
    assert _chat(server)[0] == 200
    records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    relayed = [r for r in records if r.get("logger") == "mullama.runner"]
    assert {"listening", "alloc", "ready", "completion"} <= {r["event"] for r in relayed}, relayed
