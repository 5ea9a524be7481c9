"""The HTTP half of the CLI client: where the server is (``Server``, ``parse_host``) and how to talk
to it (``Client``), with every failure as one ``ClientError`` line.

Plain stdlib ``http.client``: one request per connection, Server-Sent Events read line by line so
tokens print as they arrive, and closing the connection is how an answer is stopped (the server
cancels on disconnect). No argparse and no printing here: the verbs in ``cli_client.py`` build on
this and re-export its names.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_PORT = 8080
CONNECT_TIMEOUT_S = 10.0
_UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # a listen-anywhere address means "this machine"
_NET_ERRORS = (OSError, http.client.HTTPException)


class ClientError(Exception):
    """Why a verb failed, as one line (without the ``mullama:`` prefix)."""


# ---------------------------------------------------------------------- server address


@dataclass(frozen=True)
class Server:
    scheme: str         # "http" | "https"
    host: str           # IPv6 without brackets
    port: int
    prefix: str = ""    # the path the API lives under: "" or e.g. "/proxy/mullama"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"


def parse_host(value: str | None) -> Server:
    """``MULLAMA_HOST`` / ``--host``, read as Ollama reads ``OLLAMA_HOST``: "host", "host:port",
    "[::1]:8080", "http://host[:port][/path]", "https://..."; without a scheme http on port 8080,
    with one its usual port (80/443). "0.0.0.0" and "::" mean this machine."""
    text = (value or "").strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, default_port = "http", text, DEFAULT_PORT
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ClientError(f"invalid server address {value!r}: the scheme must be http or https")
        default_port = 80 if scheme == "http" else 443
    hostport, _, path = rest.partition("/")
    host, port_text = _split_hostport(hostport, value)
    host = _UNSPECIFIED.get(host, host) or "127.0.0.1"
    if port_text is None:
        port = default_port
    elif port_text.isascii() and port_text.isdigit() and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ClientError(f"invalid server address {value!r}: the port must be a number from 1 to 65535")
    path = path.strip("/")
    return Server(scheme, host, port, f"/{path}" if path else "")


def _split_hostport(hostport: str, value: str | None) -> tuple[str, str | None]:
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ClientError(f"invalid server address {value!r}: unbalanced '[' in an IPv6 address")
        return host, after[1:] if after else None
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, None   # a name, an IPv4 address, or a bare IPv6 address such as "::1"


# ---------------------------------------------------------------------- HTTP


def _error_line(status: int, reason: str, raw: bytes) -> str:
    """An OpenAI-shaped error body as ``<message> (HTTP 404 model_not_found)``; anything else as it comes."""
    try:
        err = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace").strip().splitlines()
        return f"HTTP {status} {reason}" + (f": {text[0][:200]}" if text else "")
    if isinstance(err, dict):
        kind = err.get("code") or err.get("type")
        return f"{err.get('message') or reason} (HTTP {status}{f' {kind}' if kind else ''})"
    return f"{err} (HTTP {status})"


def _event(payload: bytes) -> dict[str, Any]:
    """One SSE data payload; an ``{"error": ...}`` event (the server failed mid-answer) raises."""
    try:
        obj = json.loads(payload)
    except ValueError:
        raise ClientError("the server sent an event that is not JSON") from None
    if isinstance(obj, dict) and "error" in obj:
        err = obj["error"]
        if isinstance(err, dict):
            kind = err.get("code") or err.get("type")
            raise ClientError(f"{err.get('message', 'error')}{f' ({kind})' if kind else ''}")
        raise ClientError(str(err))
    return obj if isinstance(obj, dict) else {}


class Client:
    """One server; every call opens its own connection (a CLI makes few calls)."""

    def __init__(self, server: Server, api_key: str | None = None) -> None:
        self.server = server
        self.api_key = api_key

    def _connect(self) -> http.client.HTTPConnection:
        https = self.server.scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        conn = kind(self.server.host, self.server.port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            if isinstance(exc, ConnectionRefusedError):
                reason = "connection refused"
            elif isinstance(exc, TimeoutError):
                reason = "timed out"
            else:
                reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
            raise ClientError(f"cannot reach the server at {self.server.url} ({reason}) "
                              "— start it with 'mullama serve'") from None
        conn.sock.settimeout(None)  # a load or a long answer may take minutes; Ctrl-C interrupts
        return conn

    def _lost(self, exc: BaseException) -> ClientError:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return ClientError(f"lost the connection to the server at {self.server.url} ({why})")

    def _send(self, method: str, path: str, body: Any, accept: str
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        headers = {"Accept": accept, "User-Agent": "mullama-cli"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        conn = self._connect()
        try:
            conn.request(method, self.server.prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            if resp.status >= 400:
                raise ClientError(_error_line(resp.status, resp.reason, resp.read()))
        except _NET_ERRORS as exc:
            conn.close()
            raise self._lost(exc) from None
        except BaseException:
            conn.close()
            raise
        return conn, resp

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One JSON request; the decoded JSON object."""
        conn, resp = self._send(method, path, body, "application/json")
        try:
            raw = resp.read()
        except _NET_ERRORS as exc:
            raise self._lost(exc) from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ClientError(f"the server at {self.server.url} answered {path} with something unexpected "
                              "(not a JSON object)")
        return answer

    def lines(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """POST and yield each NDJSON line's object (Ollama's streams) until the answer ends; an ``{"error":
        ...}`` line raises. Closing the generator closes the connection."""
        conn, resp = self._send("POST", path, body, "application/x-ndjson")
        try:
            while True:
                try:
                    line = resp.readline()
                except _NET_ERRORS as exc:
                    raise self._lost(exc) from None
                if not line:
                    return
                if line.strip():
                    yield _event(line)
        finally:
            conn.close()

    def events(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """POST and yield each Server-Sent Event's JSON until ``[DONE]``; an ``error`` event raises.
        Closing the generator (or Ctrl-C while it waits) closes the connection."""
        conn, resp = self._send("POST", path, body, "text/event-stream")
        try:
            data: list[bytes] = []
            while True:
                try:
                    line = resp.readline()
                except _NET_ERRORS as exc:
                    raise self._lost(exc) from None
                if not line:
                    raise ClientError("the server ended the answer early (the stream stopped without [DONE])")
                line = line.rstrip(b"\r\n")
                if line:
                    field, _, value = line.partition(b":")
                    if field == b"data":
                        data.append(value[1:] if value.startswith(b" ") else value)
                    continue
                if data:                        # a blank line ends an event
                    payload, data = b"\n".join(data), []
                    if payload.strip() == b"[DONE]":
                        return
                    yield _event(payload)
        finally:
            conn.close()

