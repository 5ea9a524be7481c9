"""The ``mullama`` command line.

Verbs so far: ``generate`` (in-process generation with the C++ engine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from mullama.errors import MullamaError


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="load a GGUF model in-process and generate text",
        description="Load MODEL_PATH (default: the bundled SmolLM2-135M-Instruct) and stream a completion.",
    )
    p.add_argument("model", nargs="?", metavar="MODEL_PATH", help="GGUF file (default: bundled SmolLM2)")
    p.add_argument("--prompt", "-p", required=True, help="prompt text ('-' reads standard input)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user message in the model's chat template")
    p.add_argument("--system", help="system message (with --chat)")
    p.add_argument("--max-tokens", "-n", type=int, default=128)
    p.add_argument("--temperature", "-t", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=-1, help="-1: random")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--grammar", help="GBNF grammar constraining the output")
    p.add_argument("--json-schema", help="JSON schema (text) constraining the output")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-sequence tokens")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--ctx-size", type=int, default=4096)
    p.add_argument("--n-gpu-layers", type=int, default=-1, help="layers to offload (-1: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the text and timings")
    p.add_argument("--log-level", default="error", help="llama.cpp log level (debug, info, warning, error)")
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args: argparse.Namespace) -> int:
    from mullama import assets, engine, logs

    logs.configure(args.log_level)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    path = args.model or str(assets.default_model_path())

    t0 = time.perf_counter()
    model = engine.Model(path, engine.ModelParams(n_gpu_layers=args.n_gpu_layers))
    try:
        ctx = engine.Context(model, engine.ContextParams(n_ctx=args.ctx_size, n_threads=args.threads))
        load_ms = (time.perf_counter() - t0) * 1000
        if args.chat:
            messages = ([{"role": "system", "content": args.system}] if args.system else [])
            messages.append({"role": "user", "content": prompt})
            prompt = model.apply_chat_template(messages, True)
        params = engine.GenerateParams(
            max_tokens=args.max_tokens,
            stop=args.stop,
            ignore_eos=args.ignore_eos,
            sampling=engine.SamplingParams(
                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repeat_penalty=args.repeat_penalty, seed=args.seed, grammar=args.grammar or "",
                json_schema=args.json_schema or "",
            ),
        )

        def stream(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        result = engine.generate_text(ctx, model, prompt, params, on_text=None if args.json else stream)
        ctx.close()
    finally:
        model.close()

    if args.json:
        decoded = max(result.completion_tokens - 1, 0)  # the first token comes from the prompt's logits
        print(json.dumps({
            "model": path,
            "text": result.text,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "load_ms": round(load_ms, 3),
            "prompt_ms": round(result.prompt_ms, 3),
            "decode_ms": round(result.decode_ms, 3),
            "prompt_tok_s": round(result.prompt_tokens / result.prompt_ms * 1000, 2) if result.prompt_ms else None,
            "decode_tok_s": round(decoded / result.decode_ms * 1000, 2) if result.decode_ms and decoded else None,
        }))
    else:
        sys.stdout.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mullama", description="A transparent local LLM server over llama.cpp.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_generate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MullamaError as exc:
        print(f"mullama: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
