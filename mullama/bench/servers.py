"""The servers a benchmark runs against: a running URL, or one ``mullama bench`` starts and stops itself.

* ``External(url)``: any OpenAI-compatible server; ``mullama`` is True when it answers
  ``GET /internal/scheduler`` like mullama does (then profiles, policy switches, swaps and
  preemptions are read from it).
* ``MullamaServe(settings)``: ``python -m mullama.cli serve --config TMP --port 0``.
* ``LlamaServer(exe, model, settings)``: llama.cpp's server from the pinned source
  (``baselines.build_tools``) with the same threads, slots, context and flash-attention setting.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from mullama.core.errors import MullamaError

_PORT_LINE = re.compile(r"mullama serving on http://[^:]+:(\d+)")
START_TIMEOUT = 120.0


class BenchError(MullamaError):
    """A benchmark could not run (a server did not start, a target is unreachable, ...)."""


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 300.0) -> tuple[int, Any]:
    """A blocking JSON call (management routes): (status, body or text); status 0: unreachable."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Target:
    """A server under test."""

    name: str = "target"
    url: str = ""
    mullama: bool = False
    extensions: bool = True  # send mullama's priority / deadline_ms fields

    def pids(self) -> dict[str, int]:
        """Processes to measure: label → pid (empty when unknown)."""
        return {}

    def stop(self) -> None:
        pass

    # mullama's management routes -------------------------------------------------------------
    def internal(self, path: str, method: str = "GET", body: Any = None) -> Any:
        if not self.mullama:
            return None
        status, data = http_json(self.url + path, method, body)
        return data if status == 200 else None

    def set_policy(self, policy: str) -> None:
        status, data = http_json(self.url + "/internal/scheduler", "POST", {"policy": policy})
        if status != 200:
            raise BenchError(f"{self.name}: cannot switch the scheduler to {policy!r}: {data}")

    def counters(self) -> dict[str, float]:
        """Scheduler + lifecycle counters (preemptions, swaps, loads, evictions, ...)."""
        out: dict[str, float] = {}
        sched = self.internal("/internal/scheduler") or {}
        out.update({f"scheduler.{k}": v for k, v in (sched.get("counters") or {}).items()})
        models = self.internal("/internal/models") or {}
        out.update({f"models.{k}": v for k, v in (models.get("counters") or {}).items()})
        return out

    def load(self, model: str) -> None:
        if self.mullama:
            status, data = http_json(self.url + "/api/load", "POST", {"model": model})
            if status != 200:
                raise BenchError(f"{self.name}: loading {model!r} failed: {data}")


class External(Target):
    def __init__(self, url: str, name: str | None = None) -> None:
        self.url = url.rstrip("/")
        if not re.match(r"^https?://", self.url):
            raise BenchError(f"--url must start with http:// or https://, got {url!r}")
        status, data = http_json(self.url + "/internal/scheduler", timeout=10)
        if status == 0:
            status, data = http_json(self.url + "/v1/models", timeout=10)
            if status == 0:
                raise BenchError(f"cannot reach {self.url}: {data}")
        self.mullama = status == 200 and isinstance(data, dict) and "policy" in data
        self.name = name or ("mullama" if self.mullama else "server")
        self.extensions = self.mullama

    def pids(self) -> dict[str, int]:
        """The local process listening on the URL's port, and its children (mullama's runners)."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            return {}
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            for c in psutil.net_connections("tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                    return _tree(c.pid, self.name)
        return {}


def _tree(pid: int, name: str) -> dict[str, int]:
    out = {name: pid}
    with contextlib.suppress(psutil.Error):
        for i, child in enumerate(psutil.Process(pid).children(recursive=True)):
            out[f"runner {i + 1}"] = child.pid
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v: Any) -> str:
    """A TOML value for a config file: booleans, strings, numbers, lists and inline tables."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


class MullamaServe(Target):
    """A ``mullama serve`` subprocess with ``settings`` as its TOML config (own process group)."""

    mullama = True

    def __init__(self, settings: dict[str, Any], name: str = "mullama") -> None:
        self.name = name
        self.dir = tempfile.TemporaryDirectory(prefix="mullama-bench-")
        cfg = Path(self.dir.name) / "config.toml"
        cfg.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in settings.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MULLAMA_")}
        self.lines: list[str] = []
        self._seen = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mullama.cli", "serve", "--config", str(cfg), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._seen.wait(START_TIMEOUT) or not self.url:
            self.stop()
            raise BenchError("mullama serve did not start:\n" + "\n".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines = self.lines[-200:] + [line]
            m = _PORT_LINE.search(line)
            if m and not self._seen.is_set():
                self.url = f"http://127.0.0.1:{m.group(1)}"
                self._seen.set()
        self._seen.set()

    def pids(self) -> dict[str, int]:
        out = {"supervisor": self.proc.pid}
        models = self.internal("/internal/models") or {}
        for m in models.get("models", []):
            if m.get("pid"):
                out[f"runner {m['name']}"] = m["pid"]
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.dir.cleanup()


class LlamaServer(Target):
    """llama.cpp's ``llama-server`` over one GGUF file (the ``model`` field of requests is ignored)."""

    extensions = False

    def __init__(
        self,
        exe: Path,
        model: Path,
        *,
        threads: int,
        parallel: int,
        ctx: int,
        flash_attn: str,
        cache_ram_mib: int = 0,
        name: str = "llama-server",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [
            str(exe),
            "-m",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-t",
            str(threads),
            "-tb",
            str(threads),
            "-np",
            str(parallel),
            "-c",
            str(ctx),
            "-fa",
            flash_attn,
            "-kvu",
            "--no-webui",
            "-cram",  # 0: idle slots stay in the KV cache; llama-server's default 8192 moves them to host memory
            str(cache_ram_mib),
            *extra,
        ]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                tail = self.log.read().decode(errors="replace").splitlines()[-20:]
                raise BenchError("llama-server exited during start-up:\n" + "\n".join(tail))
            status, _ = http_json(self.url + "/health", timeout=5)
            if status == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"llama-server did not become ready in {timeout:g} s")

    def pids(self) -> dict[str, int]:
        return {"llama-server": self.proc.pid}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
