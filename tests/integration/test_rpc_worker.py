"""``mullama rpc-worker`` on loopback and the supervisor's probe of it (``hardware.workers``): no root needed."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mullama.core.errors import InvalidArgument
from mullama.hardware import workers
from mullama.cli.rpc_worker import check_bind

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def worker():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mullama.cli", "rpc-worker", "--port", str(port), "--mem",
                             "64MiB", "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=REPO)
    endpoint = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not asyncio.run(workers.probe(endpoint, 0.5)).ok:
        assert proc.poll() is None and time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.1)
    yield endpoint
    proc.kill()
    proc.wait(10)


def test_the_probe_reads_the_protocol_version_devices_and_the_capped_memory(worker):
    w = asyncio.run(workers.probe(worker))
    assert w.ok and w.version.startswith(f"{workers.PROTO_MAJOR}.") and w.rtt_ms > 0
    assert [(d.index, d.free, d.total) for d in w.devices] == [(0, 64 << 20, 64 << 20)]


def test_a_worker_serving_another_client_is_busy_not_hung(worker):
    host, port = worker.split(":")
    with socket.create_connection((host, int(port))) as held:  # a client that said HELLO and stays
        held.sendall(struct.pack("<BQ", 14, 24) + bytes(24))
        held.recv(64)
        start = time.monotonic()
        w = asyncio.run(workers.probe(worker, timeout=0.5))
        assert w.state == "busy" and time.monotonic() - start < 2
    assert asyncio.run(workers.probe(worker)).ok  # free again once that client left


def test_nothing_listening_is_unreachable_at_once():
    w = asyncio.run(workers.probe(f"127.0.0.1:{free_port()}", timeout=2))
    assert w.state == "unreachable" and "refused" in w.error


def test_a_server_that_is_not_a_worker_is_not_taken_for_one():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        async def go():
            return await workers.probe(f"127.0.0.1:{srv.getsockname()[1]}", timeout=0.3)

        assert not asyncio.run(go()).ok


def test_the_probe_speaks_the_pinned_protocol_version():
    header = (REPO / "third_party/llama.cpp/ggml/include/ggml-rpc.h")
    if not header.exists():
        pytest.skip("third_party/llama.cpp is not fetched")
    major = re.search(r"#define RPC_PROTO_MAJOR_VERSION\s+(\d+)", header.read_text()).group(1)
    assert int(major) == workers.PROTO_MAJOR


def test_the_engine_refuses_an_unreachable_worker_instead_of_aborting():
    from mullama import engine

    with pytest.raises(InvalidArgument, match=r"RPC worker 127\.0\.0\.1:\d+ cannot be reached"):
        engine.rpc_add_servers([f"127.0.0.1:{free_port()}"], connect_timeout=1.0)


@pytest.mark.parametrize("host, exposure", [("127.0.0.1", ""), ("localhost", ""), ("10.1.2.3", "private"),
                                            ("192.168.1.5", "private")])
def test_loopback_and_private_binds_are_allowed(host, exposure):
    assert check_bind(host, allow_public=False) == exposure


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8"])
def test_all_interfaces_or_a_public_address_needs_allow_public(host):
    with pytest.raises(InvalidArgument, match="--allow-public"):
        check_bind(host, allow_public=False)
    assert check_bind(host, allow_public=True) == "public"


def test_the_cli_refuses_a_public_bind_and_says_why():
    done = subprocess.run([sys.executable, "-m", "mullama.cli", "rpc-worker", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 1 and "no authentication" in done.stderr and "--allow-public" in done.stderr


def test_the_worker_keeps_its_sockets_alive_so_a_vanished_client_cannot_hold_it_for_good():
    from mullama.cli.rpc_worker import KEEPALIVE, keep_alive_sockets

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        keep_alive_sockets()
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert (listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)) == KEEPALIVE
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:  # Linux: an accepted socket inherits the listener's keepalive
                assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
