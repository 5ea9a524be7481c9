#!/usr/bin/env python3
"""Speculative decoding, measured: mullama with and without it, and llama-server with the same
speculative settings, on a workload where drafts help (continuing a document that starts over: the answer
repeats its context) and one where they do not (short creative answers). Same pinned llama.cpp, same
threads, one slot, greedy, streamed; the servers take turns request by request, who goes first rotating.

Reported per server and workload: decode tok/s (completion tokens / (last token - first token)), time to
first token, and the drafted / accepted tokens mullama reports (X-Profile). llama-server's acceptance is
in its log, not its responses, so it is not shown.

    python benchmarks/speculative.py [--reps 3] [--types ngram-map-k] [--n-max 16] [--threads 2]
    python benchmarks/speculative.py --draft-model [--n-max 4]   # SmolLM2 Q4_1 drafting for an F16 target

With ``--draft-model`` the target is SmolLM2 in F16 (made once from the Q8_0 test variant with the
engine's quantize; 2.6x the bytes of the Q4_1 draft per token on this memory-bound CPU) and the draft is
the bundled Q4_1: a draft model only pays when it is much cheaper than its target, and SmolLM2 is the only
real model here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from supervisor_harness import Server, base_settings, models_cache_dir, q8_variant

from mullama.bench.baselines import build_tools
from mullama.bench.servers import LlamaServer
from mullama.models.assets import default_model_path

DOCS = [(ROOT / "docs" / name).read_text()[:1400] for name in ("scale-out.md", "bench.md", "scheduling.md")]
REPEAT = [f"{d}\n\n{d[:250]}" for d in DOCS]  # the document starts over: the model copies it
STORY = ["Once upon a time, in a village by the sea,",
         "The three most important inventions of the last century were", "Dear diary, today I learned that"]
MAX_TOKENS = 128


def f16_target() -> Path:
    """SmolLM2 in F16, from the Q8_0 variant (made once, atomically)."""
    from mullama import engine

    # not under the test models' directory: the test servers list what is there
    target = models_cache_dir().parent / "bench-models" / "SmolLM2-135M-Instruct.F16.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        engine.quantize(str(q8_variant()), str(tmp), engine.QuantizeParams(type="F16", allow_requantize=True))
        tmp.replace(target)
    return target


def stream(url: str, prompt: str, model: str | None) -> dict:
    body = {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **({"model": model} if model else {})}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "X-Profile": "1"})
    t0 = time.perf_counter()
    times, profile, text, usage = [], None, "", {}
    with urllib.request.urlopen(req, timeout=600) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                times.append(time.perf_counter())
                text += chunk["choices"][0]["text"]
            profile = chunk.get("profile") or profile
            usage = chunk.get("usage") or usage
    # a chunk may carry several tokens (mullama coalesces what one wake-up finds; a verified draft is several):
    # tokens from the usage, time from the first chunk to the last
    n = int(usage.get("completion_tokens") or len(times))
    first_tokens = 1  # the first chunk's tokens are not counted in the rate (they come with the first-token time)
    return {"ttft_ms": (times[0] - t0) * 1000 if times else 0.0,
            "tok_s": (n - first_tokens) / (times[-1] - times[0]) if len(times) > 1 else 0.0, "chunks": len(times),
            "total_s": (times[-1] - t0) if times else 0.0,
            "tokens": n, "text": text,
            "drafted": (profile or {}).get("draft_tokens", 0), "accepted": (profile or {}).get("draft_accepted", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--types", default="ngram-map-k")
    ap.add_argument("--n-max", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--draft-model", action="store_true", help="draft-simple: Q4_1 drafts for an F16 target")
    ap.add_argument("--out", type=Path, default=None, help="default results/bench/speculative[-draft].json")
    args = ap.parse_args()
    args.out = args.out or ROOT / "results" / "bench" / f"speculative{'-draft' if args.draft_model else ''}.json"
    types = ["draft-simple"] if args.draft_model else [t for t in args.types.split(",") if t]
    common = {"n_parallel": 1, "n_ctx": 4096, "threads": args.threads, "threads_batch": args.threads,
              "log_level": "warning"}
    spec: dict = {"types": types, "n_max": args.n_max}
    model = default_model_path()
    extra = ["--spec-type", ",".join(types), "--spec-draft-n-max", str(args.n_max)]
    if args.draft_model:
        model = f16_target()
        spec["draft_model"] = str(default_model_path())
        extra += ["--model-draft", str(default_model_path()), "--spec-draft-ngl", "0"]
    name = "target" if args.draft_model else "smollm2"  # a name of its own: not the test models' smollm2 family
    models = {name: {"path": str(model)} if args.draft_model else {}}
    tmp = ROOT / "results" / "bench" / "speculative-servers"
    exe = build_tools(["llama-server"])["llama-server"]
    servers: dict[str, tuple[str, str | None]] = {}
    started = []
    try:
        on = Server(tmp / "on", base_settings(**common, models={name: {**models[name], "speculative": spec}}))
        off = Server(tmp / "off", base_settings(**common, models=models))
        started += [on, off]
        ls = LlamaServer(exe, model, threads=args.threads, parallel=1, ctx=4096, flash_attn="auto", extra=tuple(extra))
        started.append(ls)
        ls.wait_ready()
        servers = {"mullama, speculative": (on.url, name), "mullama, no speculation": (off.url, name),
                   "llama-server, speculative": (ls.url, None)}
        results: dict[str, dict[str, list[dict]]] = {w: {s: [] for s in servers} for w in ("repeat", "story")}
        for workload, prompts in (("repeat", REPEAT), ("story", STORY)):
            for name, (url, model) in servers.items():  # warm-up: load, first request
                stream(url, prompts[0], model)
            order = list(servers)
            for _rep in range(args.reps):
                for prompt in prompts:
                    for name in order:  # who goes first rotates: a server right after another one's request
                        url, model = servers[name]  # finds its decode threads still spinning (2 cores)
                        results[workload][name].append(stream(url, prompt, model))
                    order = order[1:] + order[:1]
        rows = []
        for workload, by_server in results.items():
            base = statistics.median(r["tok_s"] for r in by_server["mullama, no speculation"])
            for name, runs in by_server.items():
                tok_s = statistics.median(r["tok_s"] for r in runs)
                drafted, accepted = sum(r["drafted"] for r in runs), sum(r["accepted"] for r in runs)
                rows.append(f"| {workload} | {name} | {tok_s:.1f} | {tok_s / base:.2f}x | "
                            f"{statistics.median(r['ttft_ms'] for r in runs):.0f} | "
                            f"{statistics.median(r['total_s'] for r in runs):.2f} | "
                            + (f"{accepted}/{drafted} ({accepted / drafted:.0%})" if drafted else "-") + " |")
        table = ("| workload | server | decode tok/s (median) | vs mullama without | TTFT p50 ms | request s p50 | "
                 "accepted/drafted |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
        print(table)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"table": table, "results": results, "types": types, "n_max": args.n_max,
                                        "threads": args.threads, "target": str(model)}, indent=1))
    finally:
        for s in started:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
