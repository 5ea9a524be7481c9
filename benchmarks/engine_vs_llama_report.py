"""Statistics and the markdown report of ``engine_vs_llama_bench.py``: the rows compared,
medians, ratios and the table with its notes.

Import with ``benchmarks/`` on sys.path.
"""

from __future__ import annotations

import statistics

TARGET = 0.97


ROWS = [
    # key, test, llama-bench test, description, is target
    ("pp_decode", "pp512", "pp", "engine low-level: `Batch` + `Context.decode`", True),
    ("pp_generate", "pp512", "pp", "engine high-level: `Context.generate` `prompt_ms`", False),
    ("tg_decode_sample", "tg128", "tg", "engine low-level: `Context.decode` + greedy `Sampler.sample`", True),
    ("tg_decode_only", "tg128", "tg", "engine low-level: `Context.decode` only, random next token "
                                      "(llama-bench's loop)", False),
    ("tg_generate", "tg128", "tg", "engine high-level: `Context.generate` `decode_ms`", False),
]


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarize(raw: dict) -> list[dict]:
    rows = []
    for key, test, lb_key, desc, target in ROWS:
        lb_rounds = raw["llama_bench"][lb_key]          # list of per-round sample lists
        en_rounds = raw["engine"][key]
        lb_all = [x for r in lb_rounds for x in r]
        en_all = [x for r in en_rounds for x in r]
        paired = [statistics.mean(e) / statistics.mean(b) for e, b in zip(en_rounds, lb_rounds) if e and b]
        lb_med, en_med = med(lb_all), med(en_all)
        rows.append({
            "key": key, "test": test, "description": desc, "target": target,
            "llama_bench_median": lb_med, "llama_bench_stdev": sd(lb_all),
            "engine_median": en_med, "engine_stdev": sd(en_all),
            "ratio": en_med / lb_med if lb_med else float("nan"),
            "paired_ratio_median": med(paired),
            "llama_bench_best": max(lb_all, default=float("nan")), "engine_best": max(en_all, default=float("nan")),
            "best_ratio": max(en_all, default=float("nan")) / max(lb_all, default=float("nan")),
            "paired_ratios": paired,
            "n_samples": [len(lb_all), len(en_all)],
        })
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    out = []
    out.append(f"| test | path | llama-bench tok/s | mullama tok/s | ratio | paired ratio | best-of ratio | target ≥ {TARGET} |")
    out.append("|---|---|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        verdict = ("pass" if r["ratio"] >= TARGET else "**fail**") if r["target"] else "(info)"
        out.append(
            f"| {r['test']} | {r['description']} | {r['llama_bench_median']:.1f} ± {r['llama_bench_stdev']:.1f} "
            f"| {r['engine_median']:.1f} ± {r['engine_stdev']:.1f} | {r['ratio']:.3f} "
            f"| {r['paired_ratio_median']:.3f} | {r['best_ratio']:.3f} | {verdict} |")
    m = meta
    out.append("")
    out.append(f"Medians over {m['rounds']} interleaved rounds × {m['inner_reps']} repetitions per side "
               f"(± is the standard deviation of all repetitions). *ratio* = mullama median / llama-bench "
               f"median; *paired ratio* = median over rounds of the per-round ratio of means "
               f"(llama-bench and the engine ran back to back, order alternating between rounds); "
               f"*best-of ratio* = fastest engine repetition / fastest llama-bench repetition (least "
               f"disturbed by other processes). The target applies to the *ratio* of the low-level rows.")
    out.append("")
    out.append(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']:.0f} GiB; threads used: {m['threads']}; "
               f"{m['platform']}")
    out.append(f"- llama.cpp {m['llama_cpp_commit']} (engine `{m['engine_commit']}`, llama-bench build "
               f"`{m['llama_bench_commit']}`), Release, GGML_NATIVE=ON, static; threads: llama-bench "
               f"{m['llama_bench_threading']}, engine {m['engine_threading']}; engine CPU features: "
               f"{m['system_info']}")
    out.append(f"- Model: {m['model']} ({m['model_desc']})")
    out.append(f"- Settings on both sides: n_batch {m['n_batch']}, n_ubatch {m['n_ubatch']}, flash_attn "
               f"`{m['flash_attn']}`, KV f16, mmap, repack default; llama-bench n_ctx = test size (padded to 256), "
               f"engine n_ctx {m['n_ctx']} (same attended KV length: llama.cpp pads n_kv to 256).")
    out.append(f"- Greedy sampling = temperature 0, top_k 1. Date: {m['date']}. Load average before/after: "
               f"{m['load_before']} / {m['load_after']}; other processes used a median {m['other_cpu_pct']:.0f}% "
               f"(max {m['other_cpu_max_pct']:.0f}%) of the machine's CPU time during the measurements"
               + (f"; each round waited for < {m['quiet_below']:.0f}% busy" if m['quiet_below'] else "")
               + (f"; {m['discarded']} round(s) redone because others used > {m['max_other']:g}%"
                  if m['discarded'] else "") + ".")
    return "\n".join(out) + "\n"
