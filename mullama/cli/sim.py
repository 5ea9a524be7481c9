"""`mullama sim`: run a workload on simulated servers (``run``), measure the cost model they run on
(``calibrate``); docs/research.md. The simulator itself is ``mullama/sim/``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from mullama.core.errors import ConfigError, MullamaError

DEFAULT_PROFILE = Path("results") / "sim" / "profile.json"


def add_sim(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="simulate a workload with the server's own policies (docs/research.md)",
                       description="Discrete-event simulation of `mullama serve`: the same scheduling policies, "
                       "dispatch decisions and eviction as the server, on a calibrated cost model.")
    verbs = p.add_subparsers(dest="sim_command", metavar="VERB", required=True)
    _add_run(verbs)
    _add_calibrate(verbs)


def _add_run(verbs: argparse._SubParsersAction) -> None:
    from mullama.cli.bench import add_trace_options

    r = verbs.add_parser("run", help="replay a workload or trace on simulated servers",
                         description="Replay WORKLOAD (as `mullama bench` takes it) on simulated servers and write "
                         "the same JSONL, summary and plots as a real run.")
    r.add_argument("workload", metavar="WORKLOAD", help="a workload file, a built-in one, or a trace .csv")
    r.add_argument("--profile", type=Path, default=DEFAULT_PROFILE,
                   help=f"the cost model (`mullama sim calibrate`; default {DEFAULT_PROFILE})")
    r.add_argument("--out", type=Path, help="output directory (default: results/sim/<workload>-<time>)")
    r.add_argument("--seed", type=int, help="override the workload's seed")
    r.add_argument("--scheduler", default="fifo", help="the policy when not comparing (default fifo)")
    r.add_argument("--compare-schedulers", metavar="LIST", help="simulate under each policy, e.g. fifo,priority")
    r.add_argument("--replicas", type=int, default=1, help="servers behind a model-aware least-loaded router")
    r.add_argument("--parallel", type=int, help="slots per model (default: workload, 4)")
    r.add_argument("--max-loaded-models", type=int, help="per server (default: workload, 0: no limit)")
    r.add_argument("--memory-budget", help="per server, e.g. 80GiB (default: workload, none)")
    r.add_argument("--keep-alive", help="idle time before a model unloads, e.g. 5m (default: workload, forever)")
    r.add_argument("--prefetch", help="the prefetch predictor, or none (default: workload, markov)")
    r.add_argument("--against", type=Path, metavar="RUN_DIR",
                   help="a real `mullama bench` run of the same workload: print and write the simulator's error")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    add_trace_options(r)
    r.set_defaults(func=_cmd_run)


def _add_calibrate(verbs: argparse._SubParsersAction) -> None:
    c = verbs.add_parser("calibrate", help="measure the cost model on this machine",
                         description="Start `mullama serve` and measure each model's step times, first-token "
                         "overhead, load and unload times and memory; save them as a simulator profile.")
    c.add_argument("--model", action="append", metavar="NAME", help="a model to measure (repeatable; default smollm2)")
    c.add_argument("--out", type=Path, default=DEFAULT_PROFILE, help=f"where to save it (default {DEFAULT_PROFILE})")
    c.add_argument("--name", help="the profile's name (default: this machine's CPU and thread count)")
    c.add_argument("--rounds", type=int, default=3, help="repetitions of every probe (default 3)")
    c.add_argument("--threads", type=int, default=2, help="threads of the server it starts (default 2)")
    c.add_argument("--parallel", type=int, default=4, help="slots per model (default 4)")
    c.add_argument("--ctx", type=int, default=4096, help="context per model (default 4096)")
    c.add_argument("--models-dir", action="append", default=[], metavar="DIR", help="models dir (repeatable)")
    c.set_defaults(func=_cmd_calibrate)


def _settings(args: argparse.Namespace, workload):
    from mullama.core.units import parse_keep_alive, parse_size
    from mullama.sim.server import SimSettings

    server = dict(workload.server)
    for flag, key in (("parallel", "n_parallel"), ("max_loaded_models", "max_loaded_models"),
                      ("memory_budget", "memory_budget"), ("keep_alive", "keep_alive"), ("prefetch", "prefetch")):
        if getattr(args, flag) is not None:
            server[key] = getattr(args, flag)
    if args.replicas < 1:
        raise MullamaError("--replicas must be at least 1")
    from mullama.serving.prefetch import make_predictor

    try:
        make_predictor(str(server.get("prefetch", "markov")))  # a bad predictor: refused before anything runs
        return SimSettings(
            n_parallel=int(server.get("n_parallel", 4)), n_batch=int(server.get("n_batch", 2048)),
            max_loaded_models=int(server.get("max_loaded_models", 0)),
            memory_budget=parse_size(server["memory_budget"]) if server.get("memory_budget") is not None else None,
            keep_alive=parse_keep_alive(server.get("keep_alive", -1)),
            prefetch=str(server.get("prefetch", "markov")),
            prefetch_idle=float(server.get("prefetch_idle", 0.5)),
            prefetch_min_confidence=float(server.get("prefetch_min_confidence", 0.6)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"simulated server settings: {exc}") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from mullama.bench import run as benchrun
    from mullama.bench import trace, workload
    from mullama.cli.bench import policies, with_trace_options
    from mullama.serving.policies import make_policy
    from mullama.sim import profile as profmod
    from mullama.sim import run as simrun
    from mullama.sim import validate

    w = workload.from_trace(args.workload, args.model) if args.workload.endswith(".csv") \
        else workload.load(workload.resolve(args.workload))
    w = with_trace_options(w, args)
    prof = profmod.load(args.profile)
    real = _summaries(args.against) if args.against else None
    settings = _settings(args, w)
    names = policies(args.compare_schedulers) or policies(args.scheduler, "--scheduler")
    configs = [simrun.SimConfig(n, n, args.replicas, settings) for n in names]
    for c in configs:  # an unknown policy or a model the profile lacks: refused before anything runs
        make_policy(c.policy)
    phases = trace.phases(w, args.seed)
    for m in {q.model for ph in phases for q in ph.requests}:
        prof.cost(m)
    out = args.out or Path("results") / "sim" / f"{w.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    conditions = {"profile": f"{args.profile} ({prof.name})", "replicas": args.replicas,
                  "n_parallel": settings.n_parallel}
    t = time.perf_counter()
    result = simrun.run(w, phases, prof, configs, benchrun.Options(out=out, describe=say, conditions=conditions))
    print(result.markdown)
    if real is not None:
        table = validate.markdown(validate.compare(real, result.summaries))
        (out / "validation.md").write_text(f"Simulated `{w.name}` against the real run in {args.against}:\n\n{table}")
        print(f"Against the real run in {args.against}:\n\n{table}")
    print(f"simulated in {time.perf_counter() - t:.1f} s; wrote {', '.join(str(f) for f in result.files)}",
          file=sys.stderr)
    return 0


def _summaries(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    try:
        return json.loads(path.read_text())["summaries"]
    except FileNotFoundError:
        raise MullamaError(f"--against: no summary.json in {run_dir} (a `mullama bench --out` directory)") from None
    except (ValueError, KeyError) as exc:
        raise MullamaError(f"--against: {path} is not a `mullama bench` summary ({exc})") from None


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import msgspec

    from mullama.bench import servers
    from mullama.bench.baselines import cpu_model
    from mullama.sim import calibrate
    from mullama.sim import profile as profmod

    if args.rounds < 1 or args.parallel < 1 or args.threads < 1:
        raise MullamaError("--rounds, --parallel and --threads must be at least 1")
    models = args.model or ["smollm2"]
    settings = {"n_parallel": args.parallel, "n_ctx": args.ctx, "flash_attn": "on", "keep_alive": -1,
                "log_level": "warning", "log_format": "json", "threads": args.threads,
                "threads_batch": args.threads, "max_loaded_models": 1, "prefetch": "none"}
    if args.models_dir:
        settings["models_dirs"] = [str(Path(d).resolve()) for d in args.models_dir]
    target = servers.MullamaServe(settings)
    costs = {}
    try:
        for m in models:
            costs[m] = asyncio.run(calibrate.measure(target, m, n_parallel=args.parallel, rounds=args.rounds,
                                                     describe=lambda s: print(s, file=sys.stderr)))
            servers.http_json(target.url + "/api/unload", "POST", {"model": m})
        if len(models) > 1:
            print("swaps: loading each model while another is loaded", file=sys.stderr)
            extra = calibrate.swap_extra(target, models, {m: c.load_s for m, c in costs.items()}, args.rounds)
            costs = {m: msgspec.structs.replace(c, swap_extra_s=extra[m]) for m, c in costs.items()}
    finally:
        target.stop()
    machine = f"{cpu_model()}, {args.threads} threads"
    prof = profmod.Profile(name=args.name or machine, machine=machine, threads=args.threads,
                           notes=f"mullama sim calibrate, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                                 f"n_parallel {args.parallel}, n_ctx {args.ctx}",
                           models=costs, default=models[0])
    print(f"wrote {profmod.save(prof, args.out)}")
    for m, c in costs.items():
        pts = ", ".join(f"{n}: {ms:g}" for n, ms in c.step_ms)
        print(f"{m}: step ms by batch tokens {{{pts}}}; +{c.ctx_ms_per_token * 1000:.2f} µs per context token; "
              f"first token +{c.first_token_ms:g} ms; load {c.load_s:g} s (+{c.swap_extra_s:g} s evicting another)")
    return 0
