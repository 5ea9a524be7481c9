"""The ``mullama`` command line.

``serve`` runs the supervisor; ``generate`` runs the C++ engine in-process.
Every other verb (``ps``, ``stop``, ``list``, ``show``, ``run``, ``create``) is a thin HTTP
client of a running server (``cli_client.py``; ``MULLAMA_HOST`` or ``--host``
picks it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from mullama import __version__
from mullama.cli import parsing
from mullama.core.errors import MullamaError


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
    p.add_argument("--temperature", "--temp", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", "-s", type=int, default=-1, help="-1: random")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--grammar", help="GBNF grammar constraining the output")
    p.add_argument("--json-schema", help="JSON schema (text) constraining the output")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-sequence tokens")
    p.add_argument("--threads", "-t", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--ctx-size", "-c", type=int, default=4096)
    p.add_argument("--n-gpu-layers", "-ngl", type=int, default=-1, help="layers to offload (-1: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the text and timings")
    p.add_argument("--log-level", default="error", help="llama.cpp log level (debug, info, warning, error)")
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args: argparse.Namespace) -> int:
    from mullama import engine
    from mullama.core import logs
    from mullama.models import assets

    logs.configure(args.log_level)
    engine.follow_log_level(args.log_level)
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


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the server (OpenAI-compatible API on 127.0.0.1:8080)",
        description="Serve the GGUF models of the models dirs (and the bundled SmolLM2) over an "
                    "OpenAI-compatible API. Settings: defaults <- TOML file (--config / MULLAMA_CONFIG) "
                    "<- MULLAMA_* environment <- these flags (docs/configuration.md).")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--host", dest="bind_host", metavar="ADDR", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int)
    p.add_argument("--models-dir", dest="models_dirs", action="append", metavar="DIR",
                   help="directory searched for *.gguf (repeatable)")
    p.add_argument("--default-model", metavar="NAME")
    p.add_argument("--model", "-m", dest="pull_model", metavar="ORG/REPO[:QUANT]",
                   help="pull this Hugging Face repository first if it is not there yet (like 'mullama "
                        "pull'), then serve it as the default model; a name without '/' is just the default "
                        "model")
    p.add_argument("--quant", metavar="QUANT",
                   help="with --model ORG/REPO: the quantisation to pull (e.g. Q4_K_M)")
    p.add_argument("--no-bundled-model", dest="bundled_model", action="store_const", const=False,
                   help="do not serve the bundled SmolLM2")
    p.add_argument("--ctx-size", "-c", dest="n_ctx", type=int, help="context per runner, shared by its slots")
    p.add_argument("--parallel", "-np", dest="n_parallel", type=int, help="slots (concurrent requests) per model")
    p.add_argument("--threads", "-t", type=int)
    p.add_argument("--threads-batch", type=int)
    p.add_argument("--cpu-allotment", choices=["spread", "off"],
                   help="spread: each runner its own cores and threads to match (default); off: every runner all")
    p.add_argument("--n-gpu-layers", "-ngl", type=int, help="-1: placement decides")
    p.add_argument("--cache-type-k", "-ctk")
    p.add_argument("--cache-type-v", "-ctv")
    p.add_argument("--flash-attn", "-fa", choices=["auto", "on", "off"])
    p.add_argument("--keep-alive", metavar="DURATION", help="idle time before a model unloads (5m, -1 forever, 0)")
    p.add_argument("--max-loaded-models", type=int)
    p.add_argument("--memory-budget", metavar="SIZE", help="bytes all loaded models may use (e.g. 8GiB)")
    p.add_argument("--ram-budget", metavar="SIZE", help="host memory one model may take; the rest goes to GPUs, "
                   "then RPC workers")
    p.add_argument("--rpc-worker", dest="rpc_workers", action="append", metavar="HOST:PORT",
                   help="an RPC worker (`mullama rpc-worker`) models may spread over (repeatable)")
    p.add_argument("--load-timeout", metavar="DURATION", help="a load with no progress this long is stalled")
    p.add_argument("--drain-timeout", metavar="DURATION")
    p.add_argument("--scheduler", help="fifo, round_robin, priority, preemptive or module:Class")
    p.add_argument("--api-key", dest="api_keys", action="append", metavar="KEY", help="require this key (repeatable)")
    p.add_argument("--allow-public", action="store_const", const=True,
                   help="allow a non-loopback address without API keys")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["console", "json"])
    p.set_defaults(func=_cmd_serve)


_SERVE_FLAGS = ("port", "models_dirs", "default_model", "bundled_model", "n_ctx", "n_parallel", "threads",
                "threads_batch", "cpu_allotment", "n_gpu_layers", "cache_type_k", "cache_type_v", "flash_attn", "keep_alive",
                "max_loaded_models", "memory_budget", "ram_budget", "rpc_workers", "load_timeout", "drain_timeout", "scheduler", "api_keys",
                "allow_public", "log_level", "log_format")


def _cmd_serve(args: argparse.Namespace) -> int:
    import msgspec

    from mullama import config
    from mullama.core import logs
    from mullama.core.errors import InvalidArgument
    from mullama.http import app

    flags = {name: getattr(args, name) for name in _SERVE_FLAGS}
    flags["host"] = args.bind_host
    model, quant = args.pull_model, args.quant
    if quant and not model:
        raise InvalidArgument("--quant needs --model ORG/REPO")
    if model and "/" not in model:
        if quant:
            raise InvalidArgument(f"--quant applies to a Hugging Face repository (--model ORG/REPO), not "
                                  f"{model!r}")
        flags["default_model"] = model
    settings = config.load_settings(flags, config_path=args.config)
    logs.configure(settings.log_level, settings.log_format)
    from mullama.cli import first_run

    first_run.models_dir_ready(settings)
    if settings.bundled_model:
        first_run.fetch_bundled()
    if model and "/" in model:
        from mullama.cli.store import pull_model

        if quant:
            if ":" in model:
                raise InvalidArgument(f"give the quantisation once: either {model!r} or --quant {quant}")
            model = f"{model}:{quant}"
        try:
            _, served = pull_model(settings, model)
        except KeyboardInterrupt:
            print("mullama serve: pull cancelled; the partial download is kept", file=sys.stderr)
            return 130
        print(f"mullama: serving {model} as {served} (the default model)", file=sys.stderr, flush=True)
        settings = msgspec.structs.replace(settings, default_model=served)
    return app.main_serve(settings)


class _Version(argparse.Action):
    """``--version``: mullama's and llama.cpp's versions and the CPU backend this machine runs (bug reports
    want all three); the engine is imported only when asked."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"mullama {__version__}")
        try:
            from mullama import engine

            cpu = engine.cpu_backend()
        except (ImportError, MullamaError) as exc:
            print(f"engine: not available ({exc})")
        else:
            isa = " ".join(k for k, v in cpu["features"].items() if v == "1" and k.isupper())
            print(f"llama.cpp {engine.LLAMA_CPP_COMMIT}; CPU backend {cpu['variant']} ({isa or 'baseline x86-64'})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mullama", description="A transparent local LLM server over llama.cpp.",
                                     epilog="Pages named docs/NAME.md in the help: `mullama docs NAME`.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the versions and the CPU backend, and exit")
    parsing.add_client_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(sub)
    _add_generate(sub)
    from mullama.cli import bench as cli_bench
    from mullama.cli import client as cli_client
    from mullama.cli import docs as cli_docs
    from mullama.cli import evaluate as cli_eval
    from mullama.cli import sim as cli_sim
    from mullama.cli import import_args as cli_import
    from mullama.cli import quantize as cli_quantize
    from mullama.cli import rpc_worker as cli_rpc
    from mullama.cli import store as cli_store

    for add in (cli_client.add_ps, cli_client.add_stop, cli_client.add_list, cli_client.add_show, cli_client.add_run,
                cli_client.add_create, cli_store.add_pull, cli_store.add_rm, cli_bench.add_bench,
                cli_import.add_import_args, cli_docs.add_docs, cli_quantize.add_quantize,
                cli_eval.add_eval, cli_sim.add_sim, cli_rpc.add_rpc_worker):
        add(sub)
    for verb in parsing.CLIENT_VERBS:
        parsing.add_client_options(sub.choices[verb])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args = parsing.parse(parser, sub, argv)
    try:
        return args.func(args)
    except MullamaError as exc:
        print(f"mullama: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mullama docs | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
