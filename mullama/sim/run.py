"""A simulated benchmark: the workload's phases under each configuration, written as `mullama bench` writes.

Each configuration (a policy, the server settings, a number of replicas) replays each phase on fresh
simulated servers: open-loop requests at their arrival offsets, closed-loop ones by ``concurrency``
clients that send the next request when theirs ends. The records, ``summary.json``, ``summary.md`` and
plots are those of a real run (``bench.run._write``), so a simulated run and a real one compare side by
side; phases follow each other on one time axis, as in a real run, so the timeline reads the same.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from mullama.bench import report
from mullama.bench import run as benchrun
from mullama.bench.client import new_record
from mullama.bench.trace import Phase, RequestSpec
from mullama.bench.workload import Workload
from mullama.serving.policies import make_policy
from mullama.sim.loop import Loop
from mullama.sim.profile import Profile
from mullama.sim.runner import SimJob
from mullama.sim.server import SimServer, SimSettings

GAP_S = 1.0  # simulated seconds between phases on the common time axis


@dataclass(frozen=True)
class SimTarget:
    """What ``bench.run`` needs to know of a target, for a simulated one."""

    name: str = "sim"
    url: str = "(simulated)"
    mullama: bool = True
    extensions: bool = True


@dataclass(frozen=True)
class SimConfig:
    label: str
    policy: str = "fifo"
    replicas: int = 1
    settings: SimSettings = field(default_factory=SimSettings)


@dataclass
class PhaseRun:
    records: list[dict]
    wall_s: float
    counters: dict[str, float]
    models: list[dict]   # /internal/models-shaped history of every simulated model
    events: int
    loaded: list[str]    # what the first server has loaded at the end, least recently used first


def route(servers: list[SimServer], spec: RequestSpec) -> SimServer:
    """A model-aware least-loaded router: a replica that has the model (ready or loading) first, then the
    one with the fewest requests queued and running, then the lowest index."""
    def key(i: int) -> tuple[bool, int, int]:
        m = servers[i].models.get(servers[i].profile.resolve(spec.model))
        return (m is None or m.state not in ("ready", "loading"), servers[i].load(), i)
    return servers[min(range(len(servers)), key=key)]


def simulate(phase: Phase, profile: Profile, cfg: SimConfig, start: float = 0.0,
             warm: list[str] = ()) -> PhaseRun:
    """One phase on fresh servers from simulated second ``start``, each with the models ``warm`` loaded (least
    recently used first); records in completion order."""
    loop = Loop()
    loop.now = start
    records: list[dict] = []
    pending = list(reversed(phase.requests))

    def ended(job: SimJob) -> None:
        rec = job.record
        rec["end_s"] = round(loop.now - start, 4)
        records.append(rec)
        if phase.concurrency is not None and pending:
            spec = pending.pop()
            loop.at(loop.now, lambda: send(spec))

    servers = [SimServer(loop, profile, cfg.settings, make_policy(cfg.policy), on_end=ended,
                         name=f"r{i}" if cfg.replicas > 1 else "sim") for i in range(cfg.replicas)]

    def send(spec: RequestSpec) -> None:
        rec = new_record(spec)
        rec.update(start_wall=loop.now, sent_s=round(loop.now - start, 4), scheduled_s=round(spec.arrival_s, 4))
        route(servers, spec).submit(spec, rec, exact=phase.mode == "trace")

    for s in servers:
        s.preload(list(warm))
    if phase.concurrency is not None:
        for _ in range(min(phase.concurrency, len(pending))):
            spec = pending.pop()
            loop.at(start, lambda spec=spec: send(spec))
    else:
        for spec in phase.requests:
            loop.at(start + spec.arrival_s, lambda spec=spec: send(spec))
    loop.run()
    counters: collections.Counter = collections.Counter()
    models = []
    for s in servers:
        counters.update(s.counters)
        for m in s.models.values():
            name = m.name if cfg.replicas == 1 else f"{m.name}@{s.name}"
            models.append({"name": name, "history": m.history, "steps": m.steps, "step_tokens": m.step_tokens})
    if cfg.replicas > 1:
        for r in records:
            if r.get("profile"):
                r["profile"]["model"] = f"{r['profile']['model']}@{r['profile']['replica']}"
    wall = max((r["start_wall"] + r["e2e_ms"] / 1000 for r in records), default=start) - start
    return PhaseRun(records, wall, dict(counters), models, loop.events, servers[0].loaded())


def run(workload: Workload, phases: list[Phase], profile: Profile, configs: list[SimConfig],
        opts: benchrun.Options) -> benchrun.Result:
    """Every configuration × phase (× ``opts.reps``, identical: the simulation is deterministic, so one)."""
    opts.out.mkdir(parents=True, exist_ok=True)
    target = SimTarget()
    records: list[dict] = []
    summaries: dict[str, dict[str, dict]] = {}
    history: dict[str, list[dict]] = collections.defaultdict(list)
    clock = 0.0
    events = 0
    segments: list[tuple[str, float, float]] = []
    warm = benchrun.models_of(phases)  # a real run's warm-up sends one request to each model, in order
    for cfg in configs:
        summaries[cfg.label] = {}
        for phase in phases:
            opts.describe(f"{cfg.label} · {phase.label}")
            pr = simulate(phase, profile, cfg, start=clock, warm=warm)
            warm = pr.loaded  # a real run's next configuration finds the server as this one left it
            for rec in sorted(pr.records, key=lambda r: r["index"]):
                rec.update(config=cfg.label, target=target.name, phase=phase.label, rep=0)
                opts.advance(rec)
                records.append(rec)
            summaries[cfg.label][phase.label] = report.summarize(pr.records, pr.wall_s, _bench_counters(pr.counters))
            for m in pr.models:
                history[m["name"]] += m["history"]
            segments.append((f"{cfg.label} · {phase.label}", clock, clock + pr.wall_s))
            clock += pr.wall_s + GAP_S
            events += pr.events
    opts.conditions.setdefault("simulated", f"{events} events, profile {profile.name!r}")
    view: dict[str, Any] = {"models": [{"name": n, "history": h} for n, h in history.items()], "swaps": []}
    bench_configs = [benchrun.Config(c.label, target, c.policy) for c in configs]  # type: ignore[arg-type]
    files = benchrun.write(workload, phases, bench_configs, opts, records, summaries, None,
                           {target.name: view}, 0.0, clock, segments=segments)
    return benchrun.Result(records, summaries, None, (opts.out / "summary.md").read_text(), files)


def _bench_counters(c: dict[str, float]) -> dict[str, float]:
    """The counter names ``report.summarize`` reads from a real server's deltas."""
    return {"scheduler.preemptions": c.get("scheduler.preemptions", 0), "models.swaps": 0,
            "models.loads": c.get("models.loads", 0), "models.evictions": c.get("models.evictions", 0),
            "scheduler.deadline_expired": c.get("scheduler.deadline_expired", 0)}
