#!/usr/bin/env python3
"""Draft-free speculative decoding, measured: mullama with and without it, and llama-server with the same
speculative settings, on a workload where drafts help (continuing a document that starts over: the answer
repeats its context) and one where they do not (short creative answers). Same pinned llama.cpp, same
threads, one slot, greedy, streamed; the servers take turns request by request, who goes first rotating.

Reported per server and workload: decode tok/s (completion tokens / (last token - first token)), time to
first token, and the drafted / accepted tokens mullama reports (X-Profile). llama-server's acceptance is
in its log, not its responses, so it is not shown.

    python benchmarks/speculative.py [--reps 3] [--types ngram-map-k] [--n-max 16] [--threads 2]
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

from supervisor_harness import Server, base_settings

from mullama.bench.baselines import build_tools
from mullama.bench.servers import LlamaServer
from mullama.models.assets import default_model_path

DOCS = [(ROOT / "docs" / name).read_text()[:1400] for name in ("scale-out.md", "bench.md", "scheduling.md")]
REPEAT = [f"{d}\n\n{d[:250]}" for d in DOCS]  # the document starts over: the model copies it
STORY = ["Once upon a time, in a village by the sea,",
         "The three most important inventions of the last century were", "Dear diary, today I learned that"]
MAX_TOKENS = 128


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
            "tokens": n, "text": text,
            "drafted": (profile or {}).get("draft_tokens", 0), "accepted": (profile or {}).get("draft_accepted", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--types", default="ngram-map-k")
    ap.add_argument("--n-max", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "speculative.json")
    args = ap.parse_args()
    types = [t for t in args.types.split(",") if t]
    common = {"n_parallel": 1, "n_ctx": 4096, "threads": args.threads, "threads_batch": args.threads,
              "log_level": "warning"}
    spec = {"types": types, "n_max": args.n_max}
    tmp = ROOT / "results" / "bench" / "speculative-servers"
    exe = build_tools(["llama-server"])["llama-server"]
    servers: dict[str, tuple[str, str | None]] = {}
    started = []
    try:
        on = Server(tmp / "on", base_settings(**common, models={"smollm2": {"speculative": spec}}))
        off = Server(tmp / "off", base_settings(**common))
        started += [on, off]
        ls = LlamaServer(exe, default_model_path(), threads=args.threads, parallel=1, ctx=4096, flash_attn="auto",
                         extra=("--spec-type", ",".join(types), "--spec-draft-n-max", str(args.n_max)))
        started.append(ls)
        ls.wait_ready()
        servers = {"mullama, speculative": (on.url, "smollm2"), "mullama, no speculation": (off.url, "smollm2"),
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
                            + (f"{accepted}/{drafted} ({accepted / drafted:.0%})" if drafted else "-") + " |")
        table = ("| workload | server | decode tok/s (median) | vs mullama without | TTFT p50 ms | accepted/drafted |\n"
                 "|---|---|---|---|---|---|\n" + "\n".join(rows))
        print(table)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"table": table, "results": results, "types": types, "n_max": args.n_max,
                                        "threads": args.threads}, indent=1))
    finally:
        for s in started:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
