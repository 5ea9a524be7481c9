#!/usr/bin/env python3
"""mullama's engine against llama.cpp's own llama-bench: pp512 and tg128, same source, same flags.

    python benchmarks/engine_vs_llama_bench.py --threads 2 [--reps 5] [--model PATH] [--out FILE.md] [--json FILE]

llama-bench is built from the pinned llama.cpp by ``benchmarks/baselines.py``
(build/baseline, the extension's code-generation flags; upstream's OpenMP
threads by default, ``--baseline-openmp off`` for ggml's thread pool as in the
engine, build/baseline-noomp). Both sides use the
same model, threads, n_batch 2048, n_ubatch 512, f16 KV cache and one explicit
flash-attention setting (``--flash-attn``, default ``on``: what ``auto``
resolves to on the CPU backend).

What is measured, mirroring tools/llama-bench/llama-bench.cpp:

* llama-bench ``-p 512 -n 0`` (pp512) and ``-p 0 -n 128`` (tg128), ``-r INNER``,
  ``-o json``; its own warmup (one full prompt for pp, one token for tg), KV
  cleared before every repetition, random tokens, no sampling; a sample is
  n_tokens / wall time of the whole repetition.
* engine, through the public mullama API, same warmups, KV cleared before every
  repetition, random tokens, fresh Context per test:
  - low-level (the target): pp512 = one ``Context.decode`` of a 512-token
    ``Batch`` (logits for the last entry only); tg128 = 128 single-token
    ``Context.decode`` calls, each followed by a greedy ``Sampler.sample`` whose
    token is fed back, timed from after the first sampled token.
    Also tg128 *decode-only*: the next token is random instead of sampled,
    exactly llama-bench's loop (isolates the sampler's cost).
  - high-level ``Context.generate`` (greedy, ignore_eos): pp512 from
    ``prompt_ms`` of a 512-token prompt (includes sampling the first token);
    tg128 from ``decode_ms`` of a 1-token prompt with max_tokens=129 (128
    decode+sample+detokenize steps after the first token).

The machine is assumed shared and noisy: every round runs llama-bench and the
engine back to back for each test (ABBA order across rounds to cancel drift),
and the table reports medians over all repetitions and ratios engine/llama-bench.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402
from engine_vs_llama_report import ROWS, TARGET, markdown, med, summarize
from machine_load import OtherLoad, cpu_pressure, loadavg, wait_quiet

N_PROMPT = 512
N_GEN = 128


# ---------------------------------------------------------------- machine

cpu_model = baselines.cpu_model


# ---------------------------------------------------------------- llama-bench

def run_llama_bench(exe: Path, model: Path, *, threads: int, n_prompt: int, n_gen: int, reps: int,
                    flash_attn: str, n_batch: int, n_ubatch: int) -> dict:
    cmd = [str(exe), "-m", str(model), "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen),
           "-r", str(reps), "-fa", flash_attn, "-b", str(n_batch), "-ub", str(n_ubatch),
           "-ctk", "f16", "-ctv", "f16", "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    records = json.loads(proc.stdout)
    if len(records) != 1:
        raise RuntimeError(f"expected one llama-bench test, got {len(records)}")
    rec = records[0]
    rec["_cmd"] = cmd
    return rec


# ---------------------------------------------------------------- engine

class EngineBench:
    def __init__(self, model_path: Path, *, threads: int, flash_attn: str, n_batch: int, n_ubatch: int,
                 n_ctx: int, seed: int) -> None:
        from mullama import engine

        self.engine = engine
        self.model = engine.Model(str(model_path), engine.ModelParams(n_gpu_layers=0))
        info = self.model.info
        self.n_vocab = info.n_vocab
        self.first = info.bos if info.add_bos and info.bos >= 0 else None
        self.cparams = engine.ContextParams(n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch, n_seq_max=1,
                                            n_threads=threads, n_threads_batch=threads, flash_attn=flash_attn,
                                            type_k="f16", type_v="f16")
        self.greedy = engine.SamplingParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, seed=seed)
        self.rng = random.Random(seed)

    def tokens(self, n: int) -> list[int]:
        """Random tokens like llama-bench (std::rand() % n_vocab; BOS first when the model adds one)."""
        toks = [self.rng.randrange(self.n_vocab) for _ in range(n)]
        if self.first is not None:
            toks[0] = self.first
        return toks

    def context(self):
        return self.engine.Context(self.model, self.cparams)

    # --- pp

    def _pp_decode(self, ctx, batch, toks: list[int]) -> float:
        ctx.kv_clear()
        t0 = time.perf_counter()
        batch.clear()
        last = len(toks) - 1
        for i, t in enumerate(toks):
            batch.add(t, i, 0, i == last)
        ctx.decode(batch)
        return time.perf_counter() - t0

    def pp_block(self, n_prompt: int, reps: int) -> dict[str, list[float]]:
        E = self.engine
        out: dict[str, list[float]] = {"decode": [], "generate": [], "generate_wall": []}
        gp = E.GenerateParams(max_tokens=1, ignore_eos=True, sampling=self.greedy)
        with self.context() as ctx:
            batch = E.Batch(max(n_prompt, 1), 1)
            self._pp_decode(ctx, batch, self.tokens(n_prompt))  # warmup, as llama-bench
            for _ in range(reps):
                out["decode"].append(n_prompt / self._pp_decode(ctx, batch, self.tokens(n_prompt)))
                toks = self.tokens(n_prompt)
                ctx.kv_clear()
                t0 = time.perf_counter()
                r = ctx.generate(self.model, [toks], [gp])[0]
                wall = time.perf_counter() - t0
                out["generate"].append(n_prompt / (r.prompt_ms / 1e3))
                out["generate_wall"].append(n_prompt / wall)
        return out

    # --- tg

    def _tg_decode_only(self, ctx, batch, n_gen: int) -> float:
        """llama-bench's test_gen: n_gen single-token decodes from an empty cache, random next tokens."""
        ctx.kv_clear()
        nxt = self.tokens(n_gen + 1)
        tok = self.first if self.first is not None else nxt[0]
        t0 = time.perf_counter()
        for i in range(n_gen):
            batch.clear()
            batch.add(tok, i, 0, True)
            ctx.decode(batch)
            tok = nxt[i + 1]
        return time.perf_counter() - t0

    def _tg_sampled(self, ctx, batch, sampler, n_gen: int) -> float:
        """Greedy generation: decode the first token, sample; then time n_gen decode+sample steps."""
        ctx.kv_clear()
        sampler.reset()
        batch.clear()
        batch.add(self.tokens(1)[0] if self.first is None else self.first, 0, 0, True)
        ctx.decode(batch)
        tok = sampler.sample(ctx, 0)
        t0 = time.perf_counter()
        for i in range(1, n_gen + 1):
            batch.clear()
            batch.add(tok, i, 0, True)
            ctx.decode(batch)
            tok = sampler.sample(ctx, 0)
        return time.perf_counter() - t0

    def tg_block(self, n_gen: int, reps: int) -> dict[str, list[float]]:
        E = self.engine
        out: dict[str, list[float]] = {"decode_only": [], "decode_sample": [], "generate": []}
        gp = E.GenerateParams(max_tokens=n_gen + 1, ignore_eos=True, sampling=self.greedy)
        with self.context() as ctx:
            batch = E.Batch(1, 1)
            sampler = E.Sampler(self.model, self.greedy)
            self._tg_decode_only(ctx, batch, 1)  # warmup, as llama-bench (one token)
            for _ in range(reps):
                out["decode_only"].append(n_gen / self._tg_decode_only(ctx, batch, n_gen))
                out["decode_sample"].append(n_gen / self._tg_sampled(ctx, batch, sampler, n_gen))
                ctx.kv_clear()
                r = ctx.generate(self.model, [self.tokens(1)], [gp])[0]
                if r.completion_tokens != n_gen + 1:
                    raise RuntimeError(f"generate produced {r.completion_tokens} tokens, wanted {n_gen + 1} "
                                       f"({r.finish_reason})")
                out["generate"].append((r.completion_tokens - 1) / (r.decode_ms / 1e3))
        return out

    def close(self) -> None:
        self.model.close()


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--inner", type=int, default=3,
                    help="repetitions per side per round (llama-bench -r; default 3)")
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: the bundled SmolLM2-135M Q4_1)")
    ap.add_argument("--flash-attn", choices=["on", "off", "auto"], default="on")
    ap.add_argument("--n-batch", type=int, default=2048)
    ap.add_argument("--n-ubatch", type=int, default=512)
    ap.add_argument("--n-ctx", type=int, default=1024, help="engine context size (>= 1024 recommended)")
    ap.add_argument("--llama-bench", type=Path, default=None, help="use this binary instead of building one")
    ap.add_argument("--baseline-openmp", choices=["on", "off"], default=None,
                    help="thread backend of the llama-bench build: on = upstream's default, OpenMP "
                         "(build/baseline); off = ggml's thread pool like the engine (build/baseline-noomp). "
                         "Default: $MULLAMA_BASELINE_OPENMP, else on")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    ap.add_argument("--quiet-below", type=float, default=0.0, metavar="PCT",
                    help="before each round and test, wait until the machine is at most PCT %% busy "
                         "(0: don't wait; e.g. 20 on a shared machine)")
    ap.add_argument("--quiet-timeout", type=float, default=120.0,
                    help="longest wait for --quiet-below per round and test, in seconds (default 120)")
    ap.add_argument("--max-other", type=float, default=10.0, metavar="PCT",
                    help="discard and redo a round's test when other processes used more than PCT %% of the "
                         "CPU while either side ran (default 10; 0 or 100: keep every round)")
    ap.add_argument("--retries", type=int, default=3,
                    help="redos per round and test for --max-other before keeping a noisy one (default 3)")
    ap.add_argument("--strict", action="store_true", help=f"exit 1 when a target ratio is below {TARGET}")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.inner < 1:
        ap.error("--reps and --inner must be >= 1")

    baseline_openmp = (baselines.default_openmp() if args.baseline_openmp is None
                       else args.baseline_openmp == "on")
    exe = args.llama_bench or baselines.build_tool("llama-bench", openmp=baseline_openmp)
    if args.model is None:
        from mullama.models.assets import default_model_path
        args.model = default_model_path()
    model = Path(args.model).resolve()
    n_ctx = max(args.n_ctx, N_PROMPT + N_GEN)

    from mullama import engine as E
    eb = EngineBench(model, threads=args.threads, flash_attn=args.flash_attn, n_batch=args.n_batch,
                     n_ubatch=args.n_ubatch, n_ctx=n_ctx, seed=args.seed)

    raw: dict = {"llama_bench": {"pp": [], "tg": []}, "llama_bench_records": {"pp": [], "tg": []},
                 "engine": {k: [] for k, *_ in ROWS}, "order": [],
                 "other_load_pct": {"llama-bench": [], "engine": []}, "busy_before_pct": []}
    engine_map = {"pp": {"pp_decode": "decode", "pp_generate": "generate", "pp_generate_wall": "generate_wall"},
                  "tg": {"tg_decode_only": "decode_only", "tg_decode_sample": "decode_sample",
                         "tg_generate": "generate"}}
    raw["engine"]["pp_generate_wall"] = []
    lb_kw = dict(threads=args.threads, reps=args.inner, flash_attn=args.flash_attn, n_batch=args.n_batch,
                 n_ubatch=args.n_ubatch)

    t_start = time.time()
    load0 = loadavg()
    print(f"llama-bench: {exe}\nmodel: {model}\nthreads {args.threads}, flash_attn {args.flash_attn}, "
          f"{args.reps} rounds x {args.inner} reps; load average {load0}", file=sys.stderr)
    raw["discarded"] = []
    reject = 0 < args.max_other < 100
    for rnd in range(args.reps):
        for test in ("pp", "tg"):
            engine_first = (rnd % 2 == 1)
            sides = ["engine", "llama-bench"] if engine_first else ["llama-bench", "engine"]
            for attempt in range(args.retries + 1):
                if args.quiet_below > 0:
                    raw["busy_before_pct"].append(wait_quiet(args.quiet_below, args.quiet_timeout))
                got: dict = {}
                other: dict = {}
                for side in sides:
                    meter = OtherLoad()
                    meter.start()
                    if side == "llama-bench":
                        got["lb"] = run_llama_bench(exe, model, n_prompt=N_PROMPT if test == "pp" else 0,
                                                    n_gen=N_GEN if test == "tg" else 0, **lb_kw)
                    else:
                        got["en"] = eb.pp_block(N_PROMPT, args.inner) if test == "pp" else eb.tg_block(N_GEN, args.inner)
                    other[side] = meter.stop()
                lb_samples = [float(x) for x in got["lb"]["samples_ts"]]
                en_key = "pp_decode" if test == "pp" else "tg_decode_sample"
                en_samples = got["en"][engine_map[test][en_key]]
                lb_last, en_last = statistics.mean(lb_samples), statistics.mean(en_samples)
                noisy = reject and max(other.values()) > args.max_other
                keep = not noisy or attempt == args.retries
                print(f"round {rnd + 1}/{args.reps} {test}: llama-bench {lb_last:8.1f} t/s  engine {en_last:8.1f} t/s "
                      f"({en_last / lb_last:.3f})  other processes {other['llama-bench']:.0f}%/{other['engine']:.0f}% "
                      f"of the CPU{'' if not noisy else (' - kept anyway' if keep else ' - discarded, redo')}",
                      file=sys.stderr, flush=True)
                if not keep:
                    raw["discarded"].append({"round": rnd, "test": test, "other_load_pct": other,
                                             "llama_bench": lb_samples, "engine": got["en"]})
                    continue
                raw["order"].append(f"{rnd}:{test}:{'E' if engine_first else 'L'}{':noisy' if noisy else ''}")
                raw["llama_bench"][test].append(lb_samples)
                raw["llama_bench_records"][test].append(got["lb"])
                for key, sub in engine_map[test].items():
                    raw["engine"][key].append(got["en"][sub])
                for side in sides:
                    raw["other_load_pct"][side].append(other[side])
                break
    load1 = loadavg()
    elapsed = time.time() - t_start

    all_other = raw["other_load_pct"]["llama-bench"] + raw["other_load_pct"]["engine"]
    other_pct = med(all_other)
    other_max = max(all_other) if all_other else float("nan")

    first_rec = raw["llama_bench_records"]["pp"][0]
    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "platform": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "threads": args.threads, "rounds": args.reps, "inner_reps": args.inner,
        "llama_cpp_commit": baselines.llama_cpp_commit(), "engine_commit": E.LLAMA_CPP_COMMIT,
        "llama_bench_commit": first_rec.get("build_commit", "?"),
        "llama_bench_threading": ("as built" if args.llama_bench else
                                  "OpenMP" if baseline_openmp else "ggml thread pool"),
        "engine_threading": "OpenMP" if "OPENMP = 1" in E.system_info() else "ggml thread pool",
        "system_info": E.system_info().replace("CPU : ", "").replace(" = 1", "").strip(" |").replace(" | ", ", "),
        "model": model.name, "model_desc": f"{first_rec.get('model_type', '?')}, "
                                            f"{first_rec.get('model_n_params', 0) / 1e6:.0f} M params",
        "n_batch": args.n_batch, "n_ubatch": args.n_ubatch, "flash_attn": args.flash_attn, "n_ctx": n_ctx,
        "load_before": load0, "load_after": load1, "other_cpu_pct": other_pct, "other_cpu_max_pct": other_max,
        "quiet_below": args.quiet_below, "max_other": args.max_other, "discarded": len(raw["discarded"]),
        "cpu_pressure_after": cpu_pressure(), "elapsed_s": elapsed, "llama_bench": str(exe),
    }
    eb.close()

    rows = summarize(raw)
    md = markdown(rows, meta)
    print()
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "raw": raw}, indent=1, default=str))
    failed = [r for r in rows if r["target"] and not r["ratio"] >= TARGET]
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
