#!/usr/bin/env python3
"""Issue 14's bar in one command: the engine's ceiling, llama-server and the full mullama stack, one run.

- Ceiling, from the same pinned build: ``llama-bench`` tg128 for one stream; ``llama-batched-bench``
  aggregate decode (``speed_tg``) at 8 and 16 sequences.
- Servers (8 slots, the same threads, flash attention on, unified KV, idle slots' caches moved to host memory:
  both servers' defaults, ``cache_ram`` 8 GiB and ``--cache-ram 8192``): ``mullama serve`` and ``llama-server``,
  driven by ``mullama bench`` (``benchmarks/headline.toml``: closed loop at 1, 8, 16 streams, 128 tokens,
  ``ignore_eos``), alternating config by config and rep by rep.

Prints and writes (``--out``/headline.md) each server's tok/s, its efficiency (÷ the ceiling at the same
parallelism, as the issue's table has it), TTFT p50, mullama ÷ llama-server, and each server's decode
rate alone (from TPOT p50: its slots × 1000 / TPOT) ÷ the ceiling, which shows how much of the gap to the
ceiling is the prompts' prefill.

    python benchmarks/headline.py [--threads 2] [--reps 2] [--out results/bench/headline]

On a GPU box (scripts/gpu_check.sh): ``--tools-dir`` takes llama-server, llama-bench and
llama-batched-bench from that CUDA build instead of building the CPU baselines, ``--model`` serves
another GGUF, and ``--n-gpu-layers`` offloads it in all three (``-ngl``; mullama's ``n_gpu_layers``).
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

from mullama.bench import run as runmod
from mullama.bench import servers, trace, workload
from mullama.bench.baselines import build_tools
from mullama.models.assets import default_model_path

STREAMS = (1, 8, 16)


def ceiling(tools: dict[str, Path], model: Path, threads: int, ngl: int) -> dict[int, float]:
    bench = subprocess.run([str(tools["llama-bench"]), "-m", str(model), "-t", str(threads), "-p", "0", "-n", "128",
                            "-r", "3", "-fa", "1", "-ngl", str(ngl), "-o", "json"],
                           capture_output=True, text=True, check=True)
    out = {1: float(json.loads(bench.stdout)[0]["avg_ts"])}
    batched = subprocess.run([str(tools["llama-batched-bench"]), "-m", str(model), "-c", "8192", "-b", "2048",
                              "-ub", "512", "-npp", "48", "-ntg", "128", "-npl", "8,16", "-t", str(threads), "-tb",
                              str(threads), "-fa", "on", "-kvu", "-ngl", str(ngl), "--output-format", "jsonl"],
                             capture_output=True, text=True, check=True)
    for line in (batched.stdout + batched.stderr).splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            rec = json.loads(line)
            out[int(rec["pl"])] = float(rec["speed_tg"])
    return out


def decode_rate(summary: dict, streams: int, slots: int = 8) -> float:
    """Aggregate decode tok/s from time per output token (p50): tok/s without the prompts' prefill, which
    the ceiling (llama-bench, llama-batched-bench decode) leaves out and a server's wall time holds."""
    return min(streams, slots) * 1000.0 / summary["tpot_ms_p50"] if summary.get("tpot_ms_p50") else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "headline")
    ap.add_argument("--tools-dir", type=Path, help="llama-server, llama-bench, llama-batched-bench already built here")
    ap.add_argument("--model", type=Path, help="the GGUF to serve (default: the bundled SmolLM2)")
    ap.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to GPUs, for every server")
    ap.add_argument("--fresh-prompts", action="store_true",
                    help="no prompt twice: each level and rep draws its own (else the reps and levels repeat one "
                         "set, which both servers' prompt caches then serve)")
    args = ap.parse_args()
    model = args.model or default_model_path()
    names = ["llama-bench", "llama-batched-bench", "llama-server"]
    tools = {n: args.tools_dir / n for n in names} if args.tools_dir else build_tools(names)
    roof = ceiling(tools, model, args.threads, args.n_gpu_layers)
    print(f"ceiling tok/s: {roof}", file=sys.stderr)
    settings = {"threads": args.threads, "threads_batch": args.threads, "n_parallel": 8, "n_ctx": 8192,
                "flash_attn": "on", "log_level": "warning", "n_gpu_layers": args.n_gpu_layers}
    if args.model:  # a name of its own: the bundled model's family keeps its files
        settings |= {"default_model": "target", "models": {"target": {"path": str(model)}}}
    started: list[servers.Target] = []
    try:
        ours = servers.MullamaServe(settings)
        started.append(ours)
        theirs = servers.LlamaServer(tools["llama-server"], model, threads=args.threads, parallel=8, ctx=8192,
                                     flash_attn="on", cache_ram_mib=8192, extra=("-ngl", str(args.n_gpu_layers)))
        started.append(theirs)
        theirs.wait_ready()
        w = workload.load(ROOT / "benchmarks" / "headline.toml")
        configs = [runmod.Config("mullama", ours), runmod.Config("llama-server", theirs)]
        phases, reps = trace.phases(w), args.reps
        if args.fresh_prompts:  # phases of one label are summarised together: the reps, each with its prompts
            phases = [trace.phases(w, w.seed + 100 * rep + i)[i] for rep in range(reps) for i in range(len(STREAMS))]
            reps = 1
        result = asyncio.run(runmod.run(w, phases, configs, runmod.Options(
            out=args.out, reps=reps, conditions={"threads": args.threads, "n_parallel": 8,
                                                      "n_gpu_layers": args.n_gpu_layers, "model": str(model)})))
    finally:
        for t in started:
            t.stop()
    rows = [("| streams | ceiling tok/s | llama-server tok/s (÷ ceiling) | mullama tok/s (÷ ceiling) | "
             "mullama ÷ llama-server | TTFT p50 mullama vs llama-server | decode ÷ ceiling, llama-server / mullama |"),
            "|---|---|---|---|---|---|---|"]
    for n in STREAMS:
        phase = f"c={n}"
        m, ls = result.summaries["mullama"][phase], result.summaries["llama-server"][phase]
        for name, s in (("mullama", m), ("llama-server", ls)):
            if not s.get("tok_s"):
                sys.exit(f"{name} answered no request at {phase}: see {args.out / 'requests.jsonl'}")
        top = roof[n]
        rows.append(f"| {n} | {top:.1f} | {ls['tok_s']:.1f} ({ls['tok_s'] / top:.2f}) | {m['tok_s']:.1f} "
                    f"({m['tok_s'] / top:.2f}) | **{m['tok_s'] / ls['tok_s']:.3f}×** | "
                    f"{m['ttft_ms_p50']:.0f} vs {ls['ttft_ms_p50']:.0f} ms | "
                    f"{decode_rate(ls, n) / top:.2f} / {decode_rate(m, n) / top:.2f} |")
    table = "\n".join(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "headline.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
