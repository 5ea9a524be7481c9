"""One benchmark run: every configuration × phase × repetition, the memory profile, the outputs.

Configurations (a server, and for mullama optionally a scheduling policy) take turns phase by
phase, in ABBA order over repetitions, so that a shared machine's noise hits all of them alike.
Outputs in ``out``: ``requests.jsonl`` (one record per request), ``summary.json``, ``summary.md``,
``throughput.png``, ``ttft_cdf.png``, ``timeline*.png`` (mullama targets), ``memory.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mullama.bench import client, exact, history, machine, memory, plots, report
from mullama.bench.servers import LlamaServer, Target
from mullama.bench.trace import Phase, RequestSpec, words
from mullama.bench.workload import Workload


@dataclass
class Config:
    label: str
    target: Target
    policy: str | None = None


@dataclass
class Options:
    out: Path
    reps: int = 1
    warmup: bool = True
    timeout_s: float = 600.0
    profile: bool = True
    memory: bool = False
    memory_concurrency: int = 4
    memory_tokens: int = 128
    describe: Callable[[str], None] = lambda s: None
    advance: Callable[[dict], None] = lambda r: None
    conditions: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    records: list[dict]
    summaries: dict[str, dict[str, dict]]
    memory: dict[str, dict] | None
    markdown: str
    files: list[Path]


def models_of(phases: list[Phase]) -> list[str]:
    """The models the phases ask for, in the order they first appear (the warm-up order)."""
    seen: list[str] = []
    for ph in phases:
        for r in ph.requests:
            if r.model not in seen:
                seen.append(r.model)
    return seen


def _probe(model: str, max_tokens: int = 8, i: int = -1) -> RequestSpec:
    import random

    text = words(random.Random(i), 48)
    return RequestSpec(
        index=i,
        arrival_s=0.0,
        model=model,
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        ignore_eos=True,
        temperature=0.0,
        prompt_words=48,
    )


async def memory_profile(
    target: Target, models: list[str], session, concurrency: int, timeout_s: float, tokens: int = 128
) -> dict[str, dict]:
    """RSS/VRAM per process: start (mullama: supervisor up, nothing loaded; llama-server loads its model
    at start, so it has none), after load, peak during one request, peak during ``concurrency`` requests."""
    out: dict[str, dict] = {}
    if isinstance(target, LlamaServer):
        await asyncio.to_thread(target.wait_ready)
    else:
        out["start"] = memory.reading(target.pids())
        for m in models:
            await asyncio.to_thread(target.load, m)
    out["after load"] = memory.reading(target.pids())
    kw = {"profile": target.mullama, "extensions": target.extensions, "timeout_s": timeout_s}
    out["one request"] = await memory.peak_during(
        target.pids, client.send(session, target.url, _probe(models[0], tokens), **kw)
    )
    out["concurrent"] = await memory.peak_during(
        target.pids,
        asyncio.gather(
            *(
                client.send(session, target.url, _probe(models[0], tokens, i), **kw)
                for i in range(concurrency)
            )
        ),
    )
    return out


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}


async def run(workload: Workload, phases: list[Phase], configs: list[Config], opts: Options) -> Result:
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    models = models_of(phases)
    targets = list({id(c.target): c.target for c in configs}.values())
    records: list[dict] = []
    segments: list[tuple[str, float, float]] = []
    walls: dict[tuple[str, str], float] = {}
    deltas: dict[tuple[str, str], dict[str, float]] = {}
    mem: dict[str, dict] | None = {} if opts.memory else None
    t_start = time.time()
    async with client.session() as session:
        for t in targets:
            if mem is not None:
                opts.describe(f"memory profile: {t.name}")
                mem[t.name] = await memory_profile(
                    t, models, session, opts.memory_concurrency, opts.timeout_s, opts.memory_tokens
                )
            elif isinstance(t, LlamaServer):
                await asyncio.to_thread(t.wait_ready)
        original = {id(t): (t.internal("/internal/scheduler") or {}).get("policy") for t in targets}
        roots = [pid for t in targets for pid in t.pids().values()]  # runners are found as their children
        sampler = machine.CpuSampler(lambda: roots)
        sampler.start()
        histories = {t.name: history.ModelHistory(t) for t in targets if t.mullama}
        for h in histories.values():
            h.start()
        try:
            if opts.warmup:
                for t in targets:
                    opts.describe(f"warm-up: {t.name}")
                    for i, m in enumerate(models):
                        await client.send(
                            session,
                            t.url,
                            _probe(m, 8, -1 - i),
                            profile=False,
                            extensions=t.extensions,
                            timeout_s=opts.timeout_s,
                        )
            if any(ph.mode == "trace" for ph in phases):
                opts.describe("fitting the trace's prompts to their token counts")
                try:
                    phases = await exact.fit(session, targets[0].url, phases, opts.timeout_s)
                    opts.conditions["trace prompts"] = f"exact token counts ({targets[0].name}'s tokenizer)"
                except exact.FitError as exc:
                    opts.conditions["trace prompts"] = f"about one token per word (no exact fit: {exc})"
            for rep in range(opts.reps):
                for pi, phase in enumerate(phases):
                    order = configs if (rep + pi) % 2 == 0 else configs[::-1]
                    for cfg in order:
                        if cfg.policy:
                            cfg.target.set_policy(cfg.policy)
                        opts.describe(
                            f"{cfg.label} · {phase.label}" + (f" · rep {rep + 1}" if opts.reps > 1 else "")
                        )
                        before = cfg.target.counters() if cfg.target.mullama else {}
                        seg_start = time.time()

                        def done(rec: dict, cfg=cfg, phase=phase, rep=rep) -> None:
                            rec.update(config=cfg.label, target=cfg.target.name, phase=phase.label, rep=rep)
                            opts.advance(rec)

                        recs, wall = await client.run_phase(
                            session,
                            cfg.target.url,
                            phase,
                            on_done=done,
                            profile=opts.profile and cfg.target.mullama,
                            extensions=cfg.target.extensions,
                            timeout_s=opts.timeout_s,
                        )
                        after = cfg.target.counters() if cfg.target.mullama else {}
                        segments.append((f"{cfg.label} · {phase.label}" + (f" · {rep + 1}" if opts.reps > 1 else ""),
                                         seg_start, time.time()))
                        key = (cfg.label, phase.label)
                        walls[key] = walls.get(key, 0.0) + wall
                        d = _delta(before, after)
                        deltas[key] = {k: deltas.get(key, {}).get(k, 0) + v for k, v in d.items()}
                        records += sorted(recs, key=lambda r: r["index"])
        finally:
            await sampler.stop()
            views = {name: await h.stop() for name, h in histories.items()}
            for t in targets:
                if original[id(t)]:
                    t.set_policy(original[id(t)])
        t_end = time.time()

    if "load average" in opts.conditions:
        opts.conditions["load average at the end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cpu = sampler.summary()
    if cpu["samples"]:
        opts.conditions["other processes' CPU during the run (p50 / p95 / max)"] = \
            f"{cpu['other_p50']:.0f} / {cpu['other_p95']:.0f} / {cpu['other_max']:.0f} %"
    summaries: dict[str, dict[str, dict]] = {}
    for cfg in configs:
        summaries[cfg.label] = {}
        for phase in phases:
            key = (cfg.label, phase.label)
            rs = [r for r in records if r["config"] == cfg.label and r["phase"] == phase.label]
            summaries[cfg.label][phase.label] = report.summarize(
                rs, walls.get(key, 0.0), deltas.get(key) if cfg.target.mullama else None
            )
    files = write(workload, phases, configs, opts, records, summaries, mem, views, t_start, t_end,
                  segments=segments, load=sampler.samples)
    md = (out / "summary.md").read_text()
    return Result(records, summaries, mem, md, files)


def write(workload, phases, configs, opts, records, summaries, mem, views, t0, t1, *,
          segments=(), load=()) -> list[Path]:
    """Every output file of a run (real or simulated); ``segments`` and ``load`` go on the timeline."""
    out = opts.out
    files = [out / "requests.jsonl", out / "summary.json", out / "summary.md"]
    with (out / "requests.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    swept = {ph.label: (ph.mode, ph.concurrency if ph.mode == "closed" else ph.rate if ph.mode == "poisson" else None)
             for ph in phases}
    files.append(plots.throughput(summaries, swept, out / "throughput.png"))
    files.append(plots.ttft_cdf(records, out / "ttft_cdf.png"))
    for name, view in views.items():
        rs = [r for r in records if r["target"] == name]
        fname = "timeline.png" if len(views) == 1 else f"timeline-{name}.png"
        files.append(plots.timeline(rs, view, t0, t1, out / fname, segments, load))
    if views:  # each model's state history (what the timeline draws), for a closer look or a simulator check
        (out / "models.json").write_text(json.dumps(
            {name: [{"name": m.get("name"), "history": m.get("history"), "loads": m.get("loads")}
                    for m in (view or {}).get("models", [])] for name, view in views.items()}, indent=1))
        files.append(out / "models.json")
    if mem is not None:
        (out / "memory.json").write_text(json.dumps(mem, indent=1))
        files.append(out / "memory.json")
    meta = {
        "workload": msgspec.to_builtins(workload),
        "phases": [ph.label for ph in phases],
        "configs": [
            {"label": c.label, "target": c.target.name, "url": c.target.url, "policy": c.policy}
            for c in configs
        ],
        "reps": opts.reps,
        "trace": next((ph.source for ph in phases if ph.source), None),
        "conditions": opts.conditions,
        "machine_load": list(load),
        "python": platform.python_version(),
        "started": t0,
        "ended": t1,
    }
    (out / "summary.json").write_text(
        json.dumps({"meta": meta, "summaries": summaries, "memory": mem}, indent=1)
    )
    (out / "summary.md").write_text(markdown(workload, configs, summaries, mem, opts, phases, records))
    return files


def markdown(
    workload: Workload, configs: list[Config], summaries: dict, mem: dict | None, opts: Options,
    phases: list[Phase] = (), records: list[dict] = (),
) -> str:
    parts = [
        f"### Workload `{workload.name}`" + (f": {workload.description}" if workload.description else ""),
        "",
    ]
    if opts.conditions:
        parts += ["Conditions: " + "; ".join(f"{k} {v}" for k, v in opts.conditions.items()) + ".", ""]
    parts += [report.markdown(summaries)]
    classes = report.class_table(summaries)
    if classes:
        parts += ["By request class:", "", classes]
    baseline = next((c.label for c in configs if not c.target.mullama), None)
    if baseline is None and len(configs) > 1:
        baseline = configs[0].label
    ratios = report.ratio_table(summaries, baseline) if baseline else ""
    if ratios:
        parts += [f"Side by side, against `{baseline}`:", "", ratios]
    if mem:
        parts += ["Memory by phase (RSS; peaks for the request phases):", "", memory.table(mem)]
    source = next((ph.source for ph in phases if ph.source), None)
    if source:
        first = configs[0].label
        parts += [f"The trace as replayed (cut and scaled) and what `{first}` counted:", "",
                  report.trace_table(source, [r for r in records if r.get("config") == first])]
    return "\n".join(parts)
