"""``mullama eval MODEL... [--reference MODEL]``: what each model or quantisation costs in quality and gives
in speed, one row per model: file size, memory, prefill and decode tok/s, perplexity over a text, and
against the reference its mean KL divergence and top-1 agreement (bench/quality.py, computed as
llama.cpp's perplexity tool does). Runs the engine in-process; every model is loaded at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mullama.bench import quality
from mullama.cli import local_models
from mullama.core.errors import InvalidArgument


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="perplexity, KL divergence and speed of models or quantisations",
                       description="Score MODELs (GGUF files or catalog names) on a text: perplexity, and against "
                       "--reference (default: the first MODEL when there are several) mean KL divergence and "
                       "top-1 agreement of their next-token distributions; with file size, memory and speed.")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--reference", metavar="MODEL", help="the distributions the others are compared with")
    p.add_argument("--text", default="shakespeare",
                   help="a text file, or a text that ships with mullama by name (default: shakespeare, 40 KB "
                        "of Tiny Shakespeare)")
    p.add_argument("--ctx", "-c", type=int, default=512, help="tokens per chunk (default 512, as llama-perplexity)")
    p.add_argument("--chunks", type=int, help="score at most this many chunks (default: all the text has)")
    p.add_argument("--threads", "-t", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip the 32-token decode timing")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--config", metavar="FILE", help="TOML settings file (for the models directories)")
    p.set_defaults(func=_cmd_eval)


def evaluate(paths: list[Path], reference: Path | None, text: str, n_ctx: int, limit: int | None, threads: int,
             speed: bool = True, progress=None) -> list[dict]:
    from mullama import engine

    order = list(dict.fromkeys([*([reference] if reference else []), *paths]))
    loaded = []
    try:
        for p in order:
            model = engine.Model(str(p), engine.ModelParams())  # all layers on a GPU when there is one
            loaded.append((p, model))
            ctx = engine.Context(model, engine.ContextParams(n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=min(512, n_ctx),
                                                             n_threads=threads))
            loaded[-1] = (p, model, ctx)
        first = loaded[0][1]
        tokens = first.tokenize(text, True, False)
        for p, model, _ in loaded[1:]:
            if model.tokenize(text, True, False) != tokens:
                raise InvalidArgument(f"{p} tokenises the text differently from {loaded[0][0]}: the models must "
                                      "share a vocabulary to be compared")
        parts = quality.chunks(tokens, n_ctx, limit, first.info.bos if first.info.add_bos else None)
        if not parts:
            raise InvalidArgument(f"the text has {len(tokens)} tokens: fewer than one chunk of {n_ctx}")
        rows = quality.scored(n_ctx)
        scores = {p: quality.Score() for p, *_ in loaded}
        prefill = {p: 0.0 for p, *_ in loaded}
        batch = engine.Batch(n_ctx, 1)
        for ci, chunk in enumerate(parts):
            targets = np.asarray(chunk[rows.start + 1:rows.stop + 1])
            ref_logp = None
            for p, model, ctx in loaded:
                ctx.kv_clear()
                batch.clear()
                for j, t in enumerate(chunk):
                    batch.add(t, j, 0, j in rows)
                t0 = time.perf_counter()
                ctx.decode(batch)
                prefill[p] += time.perf_counter() - t0
                logp = quality.log_softmax(np.stack([ctx.logits(j) for j in rows]))
                if reference is not None and p == reference:
                    ref_logp = logp
                scores[p].add(logp, targets, ref_logp)
            if progress:
                progress(ci + 1, len(parts))
        out = []
        for p, model, ctx in loaded:
            mem = ctx.memory()
            row = {"model": str(p), "quantization": model.info.quantization, "file_bytes": model.info.file_size,
                   "memory_bytes": sum(d.model + d.context + d.compute for d in mem),
                   "prefill_tok_s": len(parts) * n_ctx / prefill[p] if prefill[p] else None,
                   "reference": reference is not None and p == reference, **scores[p].result()}
            if speed:
                ctx.kv_clear()
                r = engine.generate_text(ctx, model, "Once upon a time", engine.GenerateParams(
                    max_tokens=33, ignore_eos=True, sampling=engine.SamplingParams(temperature=0)))
                row["decode_tok_s"] = (r.completion_tokens - 1) / (r.decode_ms / 1000) if r.decode_ms else None
            out.append(row)
        return [r for r in out if Path(r["model"]) in paths or r["reference"]]
    finally:
        for _, model, *rest in loaded:
            for ctx in rest:
                ctx.close()
            model.close()


def table(rows: list[dict], n_ctx: int, chunks: int) -> str:
    def f(v, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    head = (f"| model | type | file MiB | memory MiB | prefill tok/s | decode tok/s | PPL (n_ctx {n_ctx}, "
            f"{chunks} chunk{'' if chunks == 1 else 's'}) | mean KLD | top-1 agreement |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = Path(r["model"]).name + (" (reference)" if r["reference"] else "")
        lines.append(f"| {name} | {r['quantization']} | {r['file_bytes'] / 2**20:.1f} | {r['memory_bytes'] / 2**20:.1f} "
                     f"| {f(r['prefill_tok_s'], '.1f')} | {f(r.get('decode_tok_s'), '.1f')} "
                     f"| {r['ppl']:.4f} ± {r['ppl_err']:.4f} | {f(r.get('kld'), '.6f')} "
                     f"| {f(r.get('top1') and 100 * r['top1'], '.2f')}{'%' if 'top1' in r else ''} |")
    return "\n".join(lines)


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.ctx < 4:
        raise InvalidArgument(f"--ctx must be at least 4 tokens, got {args.ctx}")
    if args.chunks is not None and args.chunks < 1:
        raise InvalidArgument(f"--chunks must be at least 1, got {args.chunks}")
    paths = [local_models.resolve(m, args.config)[0] for m in args.models]
    reference = (local_models.resolve(args.reference, args.config)[0] if args.reference
                 else paths[0] if len(paths) > 1 else None)
    try:
        text = quality.text_path(args.text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read the text {args.text!r}: {exc}") from None

    def progress(done: int, total: int) -> None:
        print(f"eval: chunk {done}/{total}", file=sys.stderr, flush=True)

    rows = evaluate(paths, reference, text, args.ctx, args.chunks, args.threads, args.speed, progress)
    n_chunks = rows[0]["tokens"] // (args.ctx - 1 - args.ctx // 2)
    print(json.dumps(rows, indent=1) if args.json else table(rows, args.ctx, n_chunks))
    return 0
