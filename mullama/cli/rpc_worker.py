"""``mullama rpc-worker``: lend this host's CPU or GPUs to a ``mullama serve`` elsewhere (llama.cpp's RPC server).

The server is the pinned llama.cpp's own (``ggml_backend_rpc_start_server``), built into this package, so
a worker and the server that uses it speak the same protocol when they run the same mullama version.
The RPC protocol has no authentication and no encryption: whoever reaches the port can allocate memory
and run graphs on this host. Hence loopback by default, a private address with a warning, and an
all-interfaces or public address only with ``--allow-public``. docs/scale-out.md says how to fence it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import stat
import sys
import threading
from pathlib import Path

from mullama.core.errors import InvalidArgument
from mullama.core.units import parse_size

WARNING = ("mullama rpc-worker: the RPC protocol has no authentication or encryption; anyone who can reach "
           "{where} can use this host's memory and compute. Keep it on a trusted network and let only the "
           "server's address in (a firewall rule, e.g. nft/iptables accepting port {port} from that host alone).")


def add_rpc_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rpc-worker", help="serve this host's devices to a mullama server elsewhere (llama.cpp RPC)",
                       description="Run llama.cpp's RPC server on this host so that `mullama serve` with "
                       "rpc_workers = [\"HOST:PORT\"] spreads a model's layers onto it. One server at a time "
                       "uses a worker.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; ggml's RPC is "
                   "IPv4 only)")
    p.add_argument("--port", "-p", type=int, default=50052, help="port (default 50052)")
    p.add_argument("--device", "-d", action="append", default=[], metavar="NAME",
                   help="a device to offer (CPU, CUDA0, ...; repeat or comma-separate); default: the GPUs, "
                   "else the CPU")
    p.add_argument("--mem", metavar="SIZE", help="report at most SIZE free per device (e.g. 8GiB): what the "
                   "server may plan to put here")
    p.add_argument("--threads", "-t", type=int, default=0, help="CPU threads for a CPU device (0: all cores)")
    p.add_argument("--cache", action="store_true", help="keep received tensors in a local file cache "
                   "(~/.cache/mullama/rpc): a second load of the same model sends hashes, not weights")
    p.add_argument("--allow-public", action="store_true",
                   help="allow listening on all interfaces or a public address")
    p.set_defaults(func=_cmd_rpc_worker)


def check_bind(host: str, allow_public: bool) -> str:
    """'' for loopback, 'private' for a private/link-local address; raises unless public binds are allowed."""
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        raise InvalidArgument(f"--host {host!r} is not an IPv4 address or a name that resolves to one") from None
    if address.is_loopback:
        return ""
    if address.is_unspecified or not (address.is_private or address.is_link_local):
        if not allow_public:
            raise InvalidArgument(f"--host {host} listens on {'every interface' if address.is_unspecified else 'a public address'}; "
                                  "the RPC protocol has no authentication, so pass --allow-public if a firewall "
                                  "fences the port (docs/scale-out.md)")
        return "public"
    return "private"


KEEPALIVE = (10, 2, 3)  # idle s, interval s, probes: a client gone without a word is dropped after ~16 s


def keep_alive_sockets() -> None:
    """TCP keepalive on this process's TCP sockets (the RPC server's listening socket, whose clients
    inherit it, and those clients: they live in C++, out of reach otherwise). Cheap and idempotent.

    ggml's server serves one client at a time and waits in ``recv`` while that client is quiet. A
    client whose host vanished (a partition, a power cut) sends no FIN, so without keepalive the
    worker would wait for it forever and refuse every other client; with it the wait ends in ~16 s.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.family != socket.AF_INET:
                    continue
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                idle, interval, count = KEEPALIVE
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
            except OSError:
                continue


def _cmd_rpc_worker(args: argparse.Namespace) -> int:
    from mullama import engine

    if not 0 < args.port < 65536:
        raise InvalidArgument(f"--port must be in 1..65535, got {args.port}")
    try:
        limit = parse_size(args.mem) if args.mem else 0
    except ValueError as exc:
        raise InvalidArgument(f"--mem: {exc}") from None
    exposure = check_bind(args.host, args.allow_public)
    if exposure:
        print(WARNING.format(where=f"{args.host}:{args.port}", port=args.port), file=sys.stderr, flush=True)
    if not engine.rpc_supported():
        raise InvalidArgument("this build has no RPC backend (it was built with MULLAMA_RPC=OFF)")
    devices = [d.strip() for spec in args.device for d in spec.split(",") if d.strip()]
    cache = ""
    if args.cache:
        cache = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mullama" / "rpc")
        Path(cache).mkdir(parents=True, exist_ok=True)
    threads = args.threads or len(os.sched_getaffinity(0))
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            engine.rpc_serve(f"{args.host}:{args.port}", devices=devices, memory_limit=limit, threads=threads,
                             cache_dir=cache)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failed.append(exc)

    # the server blocks in C++ without the GIL; a thread keeps Ctrl-C (SIGINT) working in the main one
    worker = threading.Thread(target=serve, name="rpc-server", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
            keep_alive_sockets()
    except KeyboardInterrupt:
        return 130
    if failed:
        raise failed[0]
    return 1
