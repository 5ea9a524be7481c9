"""`mullama bench`: replay a seeded workload file against mullama or any OpenAI-compatible URL.

The harness lives in ``mullama/bench/`` (format: docs/bench.md); this module is its command line:
arguments, the servers it starts itself when no ``--url`` is given, the progress bar, and the
optional update of a marked section of a markdown file (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from mullama.core.errors import MullamaError
from mullama.core.units import parse_size
from mullama.serving.policies import POLICIES

DOC_START = "<!-- mullama bench: start -->"
DOC_END = "<!-- mullama bench: end -->"
POLICY_NAMES = tuple(POLICIES)  # the built-in scheduling policies


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark workload (docs/bench.md)",
        description="Replay the seeded trace of WORKLOAD (TOML, docs/bench.md) against --url, or against a "
        "`mullama serve` it starts itself; write per-request JSONL, a summary, plots and markdown.",
    )
    from mullama.bench.workload import built_in

    p.add_argument("workload", metavar="WORKLOAD",
                   help=f"a workload file, or a built-in one by name: {', '.join(built_in())}")
    p.add_argument(
        "--url",
        help="a running server (mullama or any OpenAI-compatible one); "
        "default: start `mullama serve` for the run",
    )
    p.add_argument("--out", type=Path, help="output directory (default: results/bench/<workload>-<time>)")
    p.add_argument("--seed", type=int, help="override the workload's seed")
    p.add_argument("--reps", type=int, default=1, help="repetitions of every phase (ABBA order)")
    p.add_argument(
        "--compare-schedulers",
        metavar="LIST",
        help="replay the trace under each policy, e.g. fifo,round_robin,priority,preemptive",
    )
    p.add_argument(
        "--baseline",
        choices=["llama-server"],
        help="also run the workload against llama-server built from third_party/llama.cpp",
    )
    p.add_argument(
        "--baseline-model", metavar="GGUF", help="llama-server's model (default: the bundled SmolLM2)"
    )
    p.add_argument("--memory", action="store_true", help="measure the memory phase profile of each server")
    p.add_argument(
        "--memory-tokens",
        type=int,
        default=128,
        metavar="N",
        help="max_tokens of the memory profile's requests (default 128)",
    )
    p.add_argument("--threads", type=int, default=2, help="threads of the servers it starts (default 2)")
    p.add_argument(
        "--parallel", type=int, help="slots per model of the servers it starts (default: workload, 4)"
    )
    p.add_argument(
        "--ctx", type=int, help="context per server of the servers it starts (default: workload, 4096)"
    )
    p.add_argument("--flash-attn", choices=["on", "off", "auto"], help="(default: workload, on)")
    p.add_argument(
        "--models-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="models dir of the `mullama serve` it starts (repeatable)",
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per request before it counts as an error"
    )
    p.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="no unmeasured request per model first"
    )
    p.add_argument("--no-profile", dest="profile", action="store_false", help="do not send X-Profile")
    p.add_argument(
        "--update-doc",
        type=Path,
        metavar="MD",
        help=f"replace the text between {DOC_START!r} and {DOC_END!r} in MD with the summary",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_trace_options(p)
    p.set_defaults(func=_cmd_bench)


def add_trace_options(p: argparse.ArgumentParser) -> None:
    """The options that cut and scale a replayed trace (shared with `mullama sim run`)."""
    t = p.add_argument_group("replaying a trace (WORKLOAD a trace .csv, or a workload with a [trace] table)")
    t.add_argument("--model", default="smollm2", help="the model a trace file's requests go to (default smollm2)")
    t.add_argument("--trace-window", metavar="START:DURATION", help="seconds of the trace to replay, e.g. 600:300")
    t.add_argument("--speed", type=float, help="replay this many times as fast (0.1: ten times slower)")
    t.add_argument("--sample", type=float, help="keep each request with this probability (seeded)")
    t.add_argument("--token-scale", type=float, help="multiply the trace's token counts")
    t.add_argument("--max-prompt-tokens", type=int, help="cap the prompt tokens (a small model's context)")
    t.add_argument("--max-output-tokens", type=int, help="cap the output tokens")
    t.add_argument("--requests", type=int, help="send at most this many requests (any workload)")


def with_trace_options(w, args: argparse.Namespace):
    """A trace file becomes a workload; the trace options override its [trace] table."""
    import msgspec

    from mullama.bench import workload

    if args.requests is not None and args.requests < 1:
        raise MullamaError("--requests must be at least 1")
    if w.trace is None:
        if any(getattr(args, k) is not None for k in ("trace_window", "speed", "sample", "token_scale",
                                                      "max_prompt_tokens", "max_output_tokens")):
            raise MullamaError(f"the trace options need a trace: {args.workload} has no [trace] table")
        return msgspec.structs.replace(w, requests=args.requests or w.requests)
    over: dict = {k: getattr(args, k) for k in ("speed", "sample", "token_scale", "max_prompt_tokens",
                                                 "max_output_tokens") if getattr(args, k) is not None}
    if args.trace_window:
        start, _, duration = args.trace_window.partition(":")
        try:
            over["start_s"] = float(start or 0)
            over["duration_s"] = float(duration) if duration else None
        except ValueError:
            raise MullamaError(f"--trace-window: START:DURATION in seconds, got {args.trace_window!r}") from None
    try:
        tr = msgspec.convert({**msgspec.to_builtins(w.trace), **over}, workload.Trace)
    except msgspec.ValidationError as exc:
        raise MullamaError(f"trace options: {exc}") from None
    return msgspec.structs.replace(w, trace=tr, requests=args.requests or w.requests)


def policies(text: str | None, flag: str = "--compare-schedulers") -> list[str]:
    if not text:
        return []
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise MullamaError(f"{flag}: give one or more policies, e.g. fifo,priority")
    if len(set(names)) != len(names):
        raise MullamaError(f"{flag}: a policy is named twice in {text!r}")
    unknown = [n for n in names if n not in POLICY_NAMES and ":" not in n]  # module:Class is the server's call
    if unknown:
        raise MullamaError(f"{flag}: unknown policy {unknown[0]!r}; the built-in ones are "
                           f"{', '.join(POLICY_NAMES)} (or a configured module:Class)")
    return names


def _server_settings(args: argparse.Namespace, workload) -> dict[str, Any]:
    s: dict[str, Any] = {
        "n_parallel": 4,
        "n_ctx": 4096,
        "flash_attn": "on",
        "keep_alive": -1,
        "log_level": "warning",
        "log_format": "json",
    }
    s.update(workload.server)
    s.update(threads=args.threads, threads_batch=args.threads)
    for flag, key in (("parallel", "n_parallel"), ("ctx", "n_ctx"), ("flash_attn", "flash_attn")):
        if getattr(args, flag) is not None:
            s[key] = getattr(args, flag)
    if args.models_dir:
        s["models_dirs"] = [str(Path(d).resolve()) for d in args.models_dir] + list(s.get("models_dirs", []))
    return s


def _cache_ram(settings: dict[str, Any]) -> int:
    """The workload's ``cache_ram`` in bytes (mullama's default when it sets none), for llama-server too."""
    from mullama.config import Settings

    try:
        return parse_size(settings.get("cache_ram", Settings().cache_ram))
    except ValueError as exc:
        raise MullamaError(f"the workload's server.cache_ram: {exc}") from None


def _conditions(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    import psutil

    from mullama.bench.baselines import cpu_model, llama_cpp_commit

    c: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if not args.url:
        c.update(
            threads=settings["threads"],
            n_parallel=settings["n_parallel"],
            n_ctx=settings["n_ctx"],
            flash_attn=settings["flash_attn"],
        )
    if args.baseline:
        c["llama.cpp"] = llama_cpp_commit()
    return c




def update_doc(path: Path, text: str) -> None:
    """Replace the marked section of ``path`` with ``text`` (markers kept); append it when unmarked."""
    doc = path.read_text() if path.exists() else ""
    block = f"{DOC_START}\n{text.rstrip()}\n{DOC_END}"
    if DOC_START in doc and DOC_END in doc:
        doc = re.sub(
            re.escape(DOC_START) + r".*?" + re.escape(DOC_END), lambda _: block, doc, flags=re.DOTALL
        )
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)


def _cmd_bench(args: argparse.Namespace) -> int:
    from mullama.bench import run as runmod
    from mullama.bench import servers, trace, workload

    if args.workload.endswith(".csv"):
        w = workload.from_trace(args.workload, args.model)
    else:
        w = workload.load(workload.resolve(args.workload))
    w = with_trace_options(w, args)
    if args.reps < 1:
        raise MullamaError("--reps must be at least 1")
    names = policies(args.compare_schedulers)
    phases = trace.phases(w, args.seed)
    settings = _server_settings(args, w)
    out = args.out or Path("results") / "bench" / f"{w.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    started: list[servers.Target] = []
    try:
        if args.url:
            target: servers.Target = servers.External(args.url)
            if names and not target.mullama:
                raise MullamaError(f"--compare-schedulers needs a mullama server; {args.url} is not one")
        else:
            target = servers.MullamaServe(settings)
            started.append(target)
        configs = (
            [runmod.Config(p, target, p) for p in names]
            if names
            else [runmod.Config(target.name, target)]
        )
        if args.baseline:
            from mullama.bench.baselines import build_tools
            from mullama.models.assets import default_model_path

            exe = build_tools(["llama-server"])["llama-server"]
            model = Path(args.baseline_model) if args.baseline_model else default_model_path()
            ls = servers.LlamaServer(
                exe,
                model,
                threads=args.threads,
                parallel=settings["n_parallel"],
                ctx=settings["n_ctx"],
                flash_attn=str(settings["flash_attn"]),
                cache_ram_mib=_cache_ram(settings) >> 20,  # prefix caches in host memory, as mullama's
            )
            started.append(ls)
            configs.append(runmod.Config("llama-server", ls))
        result = _run_with_progress(args, w, phases, configs, out, _conditions(args, settings))
    finally:
        for t in started:
            t.stop()
    print(result.markdown)
    print(f"wrote {', '.join(str(f) for f in result.files)}", file=sys.stderr)
    if args.update_doc:
        update_doc(args.update_doc, _doc_section(args, result.markdown))
        print(f"updated {args.update_doc}", file=sys.stderr)
    return 1 if all(s["ok"] == 0 for ph in result.summaries.values() for s in ph.values()) else 0


def _doc_section(args: argparse.Namespace, md: str) -> str:
    argv = " ".join(a if re.fullmatch(r"[\w./:,=+-]+", a) else repr(a) for a in sys.argv[1:])
    return f"Generated by `mullama {argv}`.\n\n{md}"


def _run_with_progress(args, w, phases, configs, out, conditions):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mullama.bench import run as runmod

    total = sum(len(ph.requests) for ph in phases) * len(configs) * args.reps
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        console=console,
        disable=args.quiet,
    )
    task = progress.add_task("starting", total=total, errors=0)
    errors = 0

    def advance(rec: dict) -> None:
        nonlocal errors
        errors += bool(rec["error"])
        progress.update(task, advance=1, errors=errors)

    opts = runmod.Options(
        out=out,
        reps=args.reps,
        warmup=args.warmup,
        timeout_s=args.timeout,
        profile=args.profile,
        memory=args.memory,
        memory_concurrency=int(conditions.get("n_parallel", 4)),
        memory_tokens=args.memory_tokens,
        describe=lambda s: progress.update(task, description=s),
        advance=advance,
        conditions=conditions,
    )
    with progress:
        return asyncio.run(runmod.run(w, phases, configs, opts))
