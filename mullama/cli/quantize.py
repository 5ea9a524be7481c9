"""``mullama quantize SRC TYPE [OUT]``: a quantised copy of a model, by the engine (llama.cpp's
``llama_model_quantize``), so that a family gains a variant for hot-swap in one command.

SRC is a GGUF file or a model of the catalog (``smollm2``, ``qwen2.5:f16``). OUT defaults to SRC's
family directory, the file named for TYPE (``SmolLM2-135M-Instruct.Q8_0.gguf``), so the server lists
it as ``family:type`` on its next scan. The file is written beside its final name and renamed when
complete: an interrupted run leaves no half model behind.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from mullama.cli import local_models
from mullama.core.errors import InvalidArgument, OperationAborted

QUANT_SUFFIX = re.compile(r"[._-](?:I?Q\d\w*|BF16|F16|F32|MXFP4\w*|TQ\d\w*)$", re.IGNORECASE)


def add_quantize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="write a quantised copy of a model (a new variant of its family)",
                       description="Quantise SRC (a GGUF file or a catalog model) to TYPE with the engine. "
                       "Prefer an F16/BF16/F32 source: requantising an already quantised model loses quality "
                       "twice (--allow-requantize).")
    p.add_argument("source", metavar="SRC", help="a GGUF file, or a model name (e.g. smollm2, qwen2.5:f16)")
    p.add_argument("type", metavar="TYPE", help="target type, e.g. Q8_0, Q4_K_M, Q5_K_S (any case)")
    p.add_argument("output", nargs="?", metavar="OUT", type=Path,
                   help="default: SRC's family directory, named for TYPE")
    p.add_argument("--threads", "-t", type=int, default=0, help="0: all cores")
    p.add_argument("--allow-requantize", action="store_true", help="accept an already quantised SRC")
    p.add_argument("--leave-output-tensor", action="store_true", help="keep output.weight unquantised")
    p.add_argument("--pure", action="store_true", help="TYPE for every tensor (no mixes of k-quants)")
    p.add_argument("--imatrix", metavar="FILE", type=Path,
                   help="an importance matrix (llama-imatrix's .gguf or legacy .dat) to weigh the rounding by; "
                   "the IQ1/IQ2 types need one")
    p.add_argument("--force", "-f", action="store_true", help="replace OUT if it exists")
    p.add_argument("--config", metavar="FILE", help="TOML settings file (for the models directories)")
    p.set_defaults(func=_cmd_quantize)


def default_output(src: Path, qtype: str, models_dirs: list[Path], family: str | None) -> Path:
    """SRC's directory when it sits in a models directory, else ``<first models dir>/<family>``; the
    stem with its quantisation suffix (if any) replaced by TYPE."""
    base = QUANT_SUFFIX.sub("", src.name.removesuffix(".gguf"))
    name = f"{base}.{qtype.upper()}.gguf"
    src_dir = src.resolve().parent
    if any(d.resolve() in (src_dir, *src_dir.parents) for d in models_dirs if d.exists()) or not models_dirs:
        return src_dir / name
    return models_dirs[0] / (family or base.lower()) / name


def _cmd_quantize(args: argparse.Namespace) -> int:
    from mullama import engine

    src, family, dirs = local_models.resolve(args.source, args.config)
    out = (args.output or default_output(src, args.type, dirs, family)).expanduser()
    if out.resolve() == src.resolve():
        raise InvalidArgument(f"OUT is SRC ({src}): write the quantised copy elsewhere")
    if out.exists() and not args.force:
        raise InvalidArgument(f"{out} exists; --force replaces it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    params = engine.QuantizeParams(type=args.type, n_threads=args.threads, allow_requantize=args.allow_requantize,
                                   quantize_output=not args.leave_output_tensor, pure=args.pure,
                                   imatrix=args.imatrix.expanduser() if args.imatrix else None)
    if args.imatrix and not args.imatrix.expanduser().is_file():
        raise InvalidArgument(f"--imatrix: no file {args.imatrix}")
    print(f"mullama: quantising {src} to {args.type.upper()} -> {out}"
          + (f" with the importance matrix {args.imatrix}" if args.imatrix else ""), file=sys.stderr, flush=True)
    try:
        with _progress() as step:
            engine.quantize(src, tmp, params, progress=step)
        os.replace(tmp, out)
    except (OperationAborted, KeyboardInterrupt):
        print("mullama quantize: cancelled; nothing was written", file=sys.stderr)
        return 130
    finally:
        tmp.unlink(missing_ok=True)
    size = out.stat().st_size
    print(f"mullama: wrote {out} ({size / 2**20:.1f} MiB, was {src.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return 0


class _progress:
    """A rich bar on a terminal, a line per tenth otherwise."""

    def __enter__(self):
        self.shown = -1
        self.bar = None
        if sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("quantising", total=1.0)
        return self.step

    def step(self, fraction: float) -> bool:
        if self.bar is not None:
            self.bar.update(self.task, completed=fraction)
        elif int(fraction * 10) > self.shown:
            self.shown = int(fraction * 10)
            print(f"quantize: {self.shown * 10}%", file=sys.stderr, flush=True)
        return True

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
