"""RPC workers behind their own network stacks on one machine: Linux network namespaces, veth pairs,
and added latency, for the scale-out tests and ``benchmarks/rpc_split.py``.

``Namespaces(n)`` makes n namespaces, each joined to this one by a veth pair on its own /24
(``10.<k>.<i>.1`` here, ``10.<k>.<i>.2`` there, k from the pid so that two runs do not collide) and
removes them on ``close()``. It needs root (``CAP_NET_ADMIN``); ``Namespaces.unavailable()`` says why
not when it cannot. ``start_worker`` runs ``mullama rpc-worker`` inside one. Latency: ``tc netem`` on the
veth when the kernel has it (``netem_available``), else ``DelayRelay``, a TCP relay on loopback that holds
every chunk for a fixed time in each direction (what netem's ``delay`` does to each packet).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WORKER_PORT = 50052


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


@dataclass(frozen=True)
class Space:
    name: str
    veth: str      # this side's interface
    here: str      # this side's address
    there: str     # the namespace's address


class Namespaces:
    def __init__(self, n: int) -> None:
        tag = os.getpid() % 10_000
        octet = 100 + os.getpid() % 100
        self.spaces: list[Space] = []
        try:
            for i in range(1, n + 1):
                name, veth, peer = f"mlw{tag}x{i}", f"mlv{tag}x{i}", f"mlp{tag}x{i}"
                _ip("netns", "add", name)
                self.spaces.append(Space(name, veth, f"10.{octet}.{i}.1", f"10.{octet}.{i}.2"))
                _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
                _ip("link", "set", peer, "netns", name)
                _ip("addr", "add", f"10.{octet}.{i}.1/24", "dev", veth)
                _ip("link", "set", veth, "up")
                _ip("netns", "exec", name, "ip", "addr", "add", f"10.{octet}.{i}.2/24", "dev", peer)
                _ip("netns", "exec", name, "ip", "link", "set", peer, "up")
                _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def unavailable() -> str:
        """'' when namespaces can be made here, else why not."""
        if shutil.which("ip") is None:
            return "the `ip` tool (iproute2) is not installed"
        if os.geteuid() != 0:
            return "network namespaces need root (CAP_NET_ADMIN)"
        name = f"mlprobe{os.getpid() % 100_000}"
        made = _ip("netns", "add", name, check=False)
        if made.returncode != 0:
            return f"`ip netns add` failed: {made.stderr.strip()}"
        _ip("netns", "del", name, check=False)
        return ""

    def close(self) -> None:
        for s in self.spaces:
            _ip("link", "del", s.veth, check=False)  # removes its peer too
            _ip("netns", "del", s.name, check=False)
        self.spaces = []


def netem_available(space: Space) -> str:
    """'' when ``tc netem`` works on this kernel (tried on the space's veth and removed), else why not."""
    if shutil.which("tc") is None:
        return "the `tc` tool is not installed"
    tried = subprocess.run(["tc", "qdisc", "add", "dev", space.veth, "root", "netem", "delay", "1ms"],
                           capture_output=True, text=True, timeout=10, check=False)
    if tried.returncode != 0:
        return f"tc netem: {tried.stderr.strip() or 'failed'} (this kernel lacks sch_netem)"
    subprocess.run(["tc", "qdisc", "del", "dev", space.veth, "root"], capture_output=True, timeout=10, check=False)
    return ""


def start_worker(space: Space, *, mem: str = "", threads: int = 1, port: int = WORKER_PORT,
                 log: Path | None = None, timeout: float = 30.0) -> subprocess.Popen:
    """``mullama rpc-worker`` inside ``space`` on ``space.there:port``; returns once it answers a probe."""
    from mullama.hardware.workers import probe

    repo = Path(__file__).resolve().parents[2]
    cmd = ["ip", "netns", "exec", space.name, sys.executable, "-m", "mullama.cli", "rpc-worker", "--host",
           space.there, "--port", str(port), "--threads", str(threads)] + (["--mem", mem] if mem else [])
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(repo)}, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rpc-worker in {space.name} exited with {proc.returncode}")
        if asyncio.run(probe(f"{space.there}:{port}", 1.0)).ok:
            return proc
        time.sleep(0.2)
    stop_worker(proc)
    raise RuntimeError(f"rpc-worker in {space.name} did not answer within {timeout:g} s")


def stop_worker(proc: subprocess.Popen) -> None:
    """SIGKILL to the worker's process group: `ip netns exec` may run it as a child of its own."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class DelayRelay:
    """127.0.0.1:port -> target, every chunk held ``delay_s`` in each direction (a one-way latency).

    Runs its own event loop on a thread; ``close()`` stops it. Order and throughput are kept: chunks
    queue with their arrival time and leave ``delay_s`` later.
    """

    def __init__(self, target: str, delay_s: float) -> None:
        self.target, self.delay = target, delay_s
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.port = 0
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = self.target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while (item := await queue.get()) is not None:
                at, data = item
                await asyncio.sleep(max(0.0, at + self.delay - time.monotonic()))
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(send())
        try:
            while data := await reader.read(1 << 16):
                queue.put_nowait((time.monotonic(), data))
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
