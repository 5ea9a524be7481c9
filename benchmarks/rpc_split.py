#!/usr/bin/env python3
"""The cost of spreading a model over RPC workers: ``mullama bench`` against SmolLM2 on one host and
spread over this machine and two ``mullama rpc-worker``s in network namespaces (veth pairs), with
0, 1 and 5 ms of added one-way latency to the first worker. One run, the servers alternating.

The split is forced the way the tests force it (``ram_budget`` here, ``--mem`` on the workers): the
host keeps the input layer and 11 of 30 layers, the workers the rest and the output head. Every
device is a CPU of this 2-core machine (workers get one thread each), so the numbers show the
protocol's and the network's cost, not extra compute. Latency: ``tc netem`` on the veth when the
kernel has it, else ``mullama.bench.netns.DelayRelay`` (every chunk held the given time each way).

    sudo .venv/bin/python benchmarks/rpc_split.py [--reps 2] [--out results/bench/rpc_split]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from supervisor_harness import Server, base_settings

from mullama.bench import run as runmod
from mullama.bench import servers, trace, workload
from mullama.bench.netns import DelayRelay, Namespaces, netem_available, start_worker, stop_worker

SPLIT = {"n_ctx": 2048, "n_parallel": 2, "n_batch": 256, "n_ubatch": 256, "threads": 1, "threads_batch": 1,
         "log_level": "warning"}


class Setup:
    """One server of the comparison and what it needs (workers, a relay, a netem qdisc)."""

    def __init__(self, label: str, spaces, delay_ms: float | None, tmp: Path) -> None:
        self.label, self.procs, self.relay, self.qdisc = label, [], None, None
        settings = {**SPLIT, "ram_budget": "1GiB"}
        if delay_ms is not None:
            self.procs = [start_worker(s, mem="160MiB") for s in spaces]
            first = f"{spaces[0].there}:50052"
            if delay_ms and netem_available(spaces[0]):  # a reason it cannot: relay instead
                self.relay = DelayRelay(first, delay_ms / 1000)
                first = self.relay.endpoint
            elif delay_ms:
                self.qdisc = spaces[0].veth
                subprocess.run(["tc", "qdisc", "add", "dev", self.qdisc, "root", "netem", "delay",
                                f"{delay_ms}ms"], check=True)
            settings.update(ram_budget="120MiB", rpc_workers=[first, f"{spaces[1].there}:50052"])
        self.server = Server(tmp / label.replace(" ", "_"), base_settings(**settings))
        self.target = servers.External(self.server.url, label)

    def stop(self) -> None:
        for p in self.procs:
            stop_worker(p)
        self.server.kill()
        if self.relay:
            self.relay.close()
        if self.qdisc:
            subprocess.run(["tc", "qdisc", "del", "dev", self.qdisc, "root"], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "rpc_split")
    args = ap.parse_args()
    why = Namespaces.unavailable()
    if why:
        sys.exit(f"rpc_split: {why}")
    ns = Namespaces(6)  # a worker serves one runner at a time: each split server gets its own pair
    tmp = args.out / "servers"
    setups: list[Setup] = []
    try:
        netem = netem_available(ns.spaces[0])
        print(f"latency: {'tc netem' if not netem else 'a delaying relay (' + netem + ')'}", file=sys.stderr)
        pairs = iter([ns.spaces[0:2], ns.spaces[2:4], ns.spaces[4:6]])
        for label, delay in (("one host", None), ("split", 0.0), ("split +1 ms", 1.0), ("split +5 ms", 5.0)):
            setups.append(Setup(label, next(pairs) if delay is not None else [], delay, tmp))
        w = workload.load(ROOT / "benchmarks" / "rpc_split.toml")
        phases = trace.phases(w, None)
        configs = [runmod.Config(s.label, s.target) for s in setups]
        opts = runmod.Options(out=args.out, reps=args.reps, conditions={"threads": 1, "n_parallel": 2,
                                                                        "rpc": "2 workers in netns"})
        result = asyncio.run(runmod.run(w, phases, configs, opts))
        print(result.markdown)
        placements = {s.label: s.server.call("GET", "/internal/models")[1]["models"][0]["placement"]["processor"]
                      for s in setups}
        (args.out / "placements.json").write_text(json.dumps(placements, indent=1))
        print(json.dumps(placements), file=sys.stderr)
    finally:
        for s in setups:
            s.stop()
        ns.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
