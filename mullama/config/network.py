"""Network addresses in settings: loopback or not (``host``), RPC workers (``rpc_workers``: ``host:port``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mullama.core.errors import ConfigError


def check_workers(endpoints: Sequence[str] | None, label: str) -> None:
    """Each entry is IPv4-or-name ``host:port`` (ggml's RPC client speaks IPv4 only), none twice."""
    for i, endpoint in enumerate(endpoints or ()):
        host, colon, port = endpoint.rpartition(":")
        if not colon or not host or any(ch.isspace() or ch in "[]/" for ch in host) or not port.isdigit() \
                or not 0 < int(port) < 65536:
            raise ConfigError(f"{label}[{i}]: expected 'host:port' (an IPv4 address or a name, and a port in "
                              f"1..65535), got {endpoint!r}")
    if endpoints and len(set(endpoints)) != len(endpoints):
        raise ConfigError(f"{label}: a worker is listed twice in {list(endpoints)}")


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x.y.z)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)
