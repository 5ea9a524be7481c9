"""Harness for the supervisor integration tests: a real ``mullama serve`` subprocess
over real runners and real models, and the second model they need.

* ``q8_variant()``: SmolLM2 re-quantised to Q8_0 once with the engine's
  ``quantize`` into ``~/.cache/mullama/test-models/smollm2/`` (family
  "smollm2", variant "q8_0"; the bundled file is variant "q4_1").
* ``Server``: ``python -m mullama.cli serve --config FILE --port 0``; the port
  comes from its "serving on" line; ``stop()`` sends SIGTERM, ``kill()``
  SIGKILL. Every wait is bounded; an atexit hook kills leftovers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from mullama.bench.servers import toml_value

REPO_ROOT = Path(__file__).resolve().parents[2]
N_THREADS = int(os.environ.get("MULLAMA_TEST_THREADS", "2"))
START_TIMEOUT = 60.0
_PORT_LINE = re.compile(r"mullama serving on http://[^:]+:(\d+)")
_live: list[subprocess.Popen] = []


def _kill_leftovers() -> None:
    for proc in _live:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


def models_cache_dir() -> Path:
    from mullama.models.assets import cache_dir

    return cache_dir() / "test-models"


def q8_variant() -> Path:
    """SmolLM2 Q8_0, made once (atomically) from the bundled Q4_1 with the engine's quantize."""
    from mullama import engine
    from mullama.models.assets import default_model_path

    target = models_cache_dir() / "smollm2" / "SmolLM2-135M-Instruct.Q8_0.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    engine.quantize(str(default_model_path()), str(tmp),
                    engine.QuantizeParams(type="Q8_0", n_threads=N_THREADS, allow_requantize=True))
    os.replace(tmp, target)
    return target


def write_config(path: Path, **settings: Any) -> Path:
    """A TOML file from keyword settings; ``models={"name": {...}}`` become [models."name"] tables."""
    models = settings.pop("models", {})
    lines = [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    for name, table in models.items():
        lines.append(f'\n[models."{name}"]')
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def base_settings(**over: Any) -> dict[str, Any]:
    """The suite's server settings: 2 threads, small contexts, the test models dir, quiet logs."""
    s: dict[str, Any] = {"models_dirs": [str(models_cache_dir())], "threads": N_THREADS,
                         "threads_batch": N_THREADS, "n_ctx": 2048, "n_parallel": 4, "log_level": "info",
                         "log_format": "json", "load_timeout": "120s", "drain_timeout": "10s"}
    s.update(over)
    return s


class Server:
    """A ``mullama serve`` subprocess (own process group) and its captured stderr."""

    def __init__(self, workdir: Path, settings: dict[str, Any], env: dict[str, str] | None = None,
                 argv: list[str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = write_config(workdir / f"mullama-{time.monotonic_ns()}.toml", **settings)
        self.lines: list[str] = []
        self._port_seen = threading.Event()
        self.port = 0
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GGML_NO_BACKTRACE": "1", **(env or {})}
        for key in ("MULLAMA_CONFIG", "MULLAMA_HOST", "MULLAMA_PORT", "MULLAMA_API_KEY", "MULLAMA_API_KEYS"):
            if not env or key not in env:
                full_env.pop(key, None)
        cmd = argv or [sys.executable, "-m", "mullama.cli", "serve", "--config", str(self.config), "--port", "0"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=full_env, cwd=str(REPO_ROOT),
                                     start_new_session=True)
        _live.append(self.proc)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._port_seen.wait(START_TIMEOUT):
            self.kill()
            raise RuntimeError("mullama serve did not start:\n" + "\n".join(self.lines[-40:]))

    def _read(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = _PORT_LINE.search(line)
            if match and not self._port_seen.is_set():
                self.port = int(match.group(1))
                self._port_seen.set()
        self._port_seen.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             timeout: float = 300.0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def runner_pids(self) -> list[int]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        return []

    def events(self, name: str) -> list[dict]:
        out = []
        for line in list(self.lines):
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == name:
                    out.append(record)
        return out

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def log_text(self) -> str:
        return "\n".join(self.lines)


def assert_openai_error(body: Any) -> dict:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}, message and type non-empty."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    return err


def metric_value(server: Server, sample: str, **labels: str) -> float | None:
    """One sample of the server's /metrics (Prometheus text), or None when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = server.call("GET", "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return s.value
    return None


def until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()``'s first truthy result, asked every 0.1 s; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


def jsonl_records(path: Path) -> list[dict]:
    """The records of a JSONL event log (none while it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def module_server(name: str, **settings: Any):
    """A module-scoped ``server`` fixture: one ``mullama serve`` with ``base_settings(**settings)``, e.g.
    ``server = module_server("tools", n_parallel=2)`` at a test module's top level."""
    import pytest

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        srv = Server(tmp_path_factory.mktemp(name), base_settings(**settings))
        yield srv
        srv.stop()

    return server


def openai_client(server: Server):
    """The ``openai`` SDK pointed at ``server`` (no retries: a test sees every error)."""
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
