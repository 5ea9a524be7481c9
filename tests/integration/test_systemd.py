"""docs/mullama.service: its ExecStart starts a real server that speaks sd_notify (READY=1, STOPPING=1)."""

from __future__ import annotations

import configparser
import shlex
import socket
import sys
from pathlib import Path

import pytest

from supervisor_harness import REPO_ROOT, Server, base_settings, write_config

UNIT = REPO_ROOT / "docs" / "mullama.service"


def exec_start() -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return shlex.split(parser["Service"]["ExecStart"])


def test_unit_is_a_notify_service_that_restarts_and_drains():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    service = parser["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    argv = exec_start()
    assert argv[0].endswith("/mullama") and argv[1] == "serve" and "--config" in argv


def test_exec_start_serves_and_notifies(tmp_path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    argv = exec_start()
    mullama = Path(sys.executable).with_name("mullama")
    if not mullama.exists():
        pytest.skip("the mullama console script is not installed in this environment")
    argv[0] = str(mullama)
    argv[argv.index("--config") + 1] = str(write_config(tmp_path / "unit.toml", **base_settings(port=0)))
    server = None
    try:
        server = Server(tmp_path, {}, env={"NOTIFY_SOCKET": str(sock_path)}, argv=argv)
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        ready = next(m for m in messages if "READY=1" in m)
        assert f"MAINPID={server.proc.pid}" in ready
        status, body = server.call("GET", "/health")
        assert status == 200 and body == {"status": "ok"}
        assert server.stop(60) == 0
        stopping = sock.recv(4096).decode()
        assert "STOPPING=1" in stopping
    finally:
        sock.close()
        if server is not None:
            server.kill()
