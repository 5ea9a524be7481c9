"""One runner subprocess: spawn, port, secret, log capture, exit watch, SIGTERM -> SIGKILL.

``python -m mullama.runner`` prints ``{"port": N, "pid": P}`` as its first
stdout line; we wait for it (bounded), then talk HTTP to 127.0.0.1:N with a
fresh per-spawn bearer token. The runner's stderr is JSON log lines: each is
re-emitted through structlog under ``mullama.runner`` with the model's name;
lines that are not JSON (llama.cpp's own direct prints) are wrapped, never
passed raw. The last lines are kept for crash reports.

The runner dies with us: it sets PR_SET_PDEATHSIG at start and watches its
parent, so a SIGKILLed supervisor leaves no runner behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("mullama.runner_process")
runner_log = structlog.get_logger("mullama.runner")

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_DROP = ("event", "level", "logger", "timestamp")
#: Fields the relay sets itself; a runner record's own values for them are renamed, not passed twice.
_OURS = ("model", "pid")


@dataclass(frozen=True)
class RunnerSpec:
    """How to start runners; the same for every model of one supervisor."""

    python: str = sys.executable
    log_level: str = "info"
    max_queue: int = 256
    repeat_limit: int = 64
    stream_interval_ms: float = 20.0
    reasoning_format: str = "auto"
    drain_timeout: float = 30.0
    start_timeout: float = 60.0
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return [self.python, "-m", "mullama.runner", "--host", "127.0.0.1", "--port", "0",
                "--max-queue", str(self.max_queue), "--repeat-limit", str(self.repeat_limit),
                "--stream-interval-ms", str(self.stream_interval_ms), "--drain-timeout", str(self.drain_timeout),
                "--reasoning-format", self.reasoning_format,
                "--log-level", self.log_level, "--log-format", "json", *self.extra_args]


class RunnerStartError(RuntimeError):
    """The runner exited or said nothing before reporting its port."""


class RunnerProcess:
    """A started runner. ``exited`` resolves with the exit code whenever it ends."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, port: int, token: str,
                 on_exit: Callable[[RunnerProcess, int], None] | None) -> None:
        self.name, self.port, self.token = name, port, token
        self.pid = proc.pid
        self._proc = proc
        self._on_exit = on_exit
        self._stopping = False
        self.stalled = ""                    # why the lifecycle killed it (a stalled load, a frozen runner); "": it did not
        self.client: object | None = None    # the RunnerClient the launcher attaches
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._pump_stderr()), asyncio.create_task(self._pump_stdout()),
                       asyncio.create_task(self._watch())]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self._proc.returncode is None

    @property
    def stopping(self) -> bool:
        """True once stop()/kill() was asked for: its exit is not a crash."""
        return self._stopping

    @classmethod
    async def start(cls, name: str, spec: RunnerSpec,
                    on_exit: Callable[[RunnerProcess, int], None] | None = None) -> RunnerProcess:
        token = secrets.token_urlsafe(32)
        # PCI bus order: NVML (placement) and CUDA (llama.cpp) then number the GPUs the same way.
        env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", **os.environ, **spec.env, "MULLAMA_RUNNER_TOKEN": token,
               "GGML_NO_BACKTRACE": "1"}
        proc = await asyncio.create_subprocess_exec(
            *spec.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=False)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), spec.start_timeout)
            first = json.loads(line)
            port = int(first["port"])
        except (TimeoutError, ValueError, KeyError, TypeError) as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            err = await _read_rest(proc.stderr)
            await proc.wait()
            reason = "no port line in time" if isinstance(exc, TimeoutError) else f"bad port line {line[:200]!r}"
            raise RunnerStartError(f"runner for {name} did not start ({reason}, exit {proc.returncode}): "
                                   f"{err[-1500:]}") from None
        runner = cls(name, proc, port, token, on_exit)
        log.info("runner_started", model=name, pid=proc.pid, port=port)
        return runner

    async def _pump_stdout(self) -> None:
        while await self._proc.stdout.readline():
            pass  # nothing is expected after the port line; keep the pipe from filling

    async def _pump_stderr(self) -> None:
        stream = self._proc.stderr
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the stream limit: skip it
                continue
            if not raw:
                return
            text = raw.decode(errors="replace").rstrip()
            if not text:
                continue
            self.tail.append(text[:500])
            try:
                self._relay(text)
            except Exception:  # one odd line must never stop the reader (the runner would block on stderr)
                log.exception("runner_log_relay_failed", model=self.name, pid=self.pid)

    def _relay(self, text: str) -> None:
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            runner_log.info("runner_stderr", model=self.name, pid=self.pid, line=text[:2000])
            return
        level = _LEVELS.get(str(record.get("level", "info")).lower(), 20)
        event = str(record.get("event", "runner_log"))
        fields = {k: v for k, v in record.items() if k not in _DROP}
        for ours in _OURS:  # the runner's own field of that name is kept as runner_<name>
            if ours in fields:
                fields[f"runner_{ours}"] = fields.pop(ours)
        fields.setdefault("source", record.get("logger", "mullama.runner"))
        runner_log.log(level, event, model=self.name, pid=self.pid, **fields)

    async def _watch(self) -> None:
        code = await self._proc.wait()
        await asyncio.gather(*self._tasks[:2], return_exceptions=True)  # the last stderr lines first
        if not self.exited.done():
            self.exited.set_result(code)
        if self._stopping:
            log.info("runner_exited", model=self.name, pid=self.pid, code=code)
        else:
            log.warning("runner_crashed", model=self.name, pid=self.pid, code=code, stderr_tail=list(self.tail)[-5:])
        if self._on_exit is not None:
            self._on_exit(self, code)

    async def stop(self, drain_timeout: float) -> int:
        """SIGTERM (the runner drains its requests), then SIGKILL after ``drain_timeout`` + 5 s."""
        self._stopping = True
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), drain_timeout + 5.0)
        except TimeoutError:
            log.warning("runner_kill_after_drain", model=self.name, pid=self.pid)
            return await self.kill()

    async def kill(self) -> int:
        self._stopping = True
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        return await asyncio.shield(self.exited)


async def _read_rest(stream: asyncio.StreamReader | None, limit: float = 2.0) -> str:
    if stream is None:
        return ""
    with contextlib.suppress(TimeoutError, ValueError):
        data = await asyncio.wait_for(stream.read(64 << 10), limit)
        return data.decode(errors="replace")
    return ""

