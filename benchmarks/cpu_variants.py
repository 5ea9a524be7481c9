#!/usr/bin/env python3
"""A distributable wheel's CPU variants against this checkout's static build, alternating.

    python benchmarks/cpu_variants.py --wheel-python VENV/bin/python [--variants auto,haswell,x64]
                                      [--rounds 10] [--threads 2] [--prompt-words 225] [--tokens 128]

VENV is a virtualenv with the wheel of ``scripts/build_wheel.sh`` installed. Each round runs
``mullama generate --json`` (SmolLM2 Q4_1, greedy, ``--ignore-eos``) once with the checkout's static
build (one x86 level, linked in) and once per variant of the wheel (``auto``: the one the wheel picks;
any other name is forced with ``MULLAMA_CPU_VARIANT``), in that order, from a directory outside the
checkout (so each Python imports its own mullama). It prints prefill and decode tok/s medians and the
median of the per-round ratios against the static build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(python: str, variant: str | None, args: argparse.Namespace, model: str, prompt: str, cwd: str,
        pythonpath: str | None) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("MULLAMA_CPU_VARIANT", "PYTHONPATH")}
    if variant and variant != "auto":
        env["MULLAMA_CPU_VARIANT"] = variant
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([python, "-m", "mullama.cli", "generate", model, "-p", prompt, "-n", str(args.tokens),
                          "--ignore-eos", "--temp", "0", "-t", str(args.threads), "-c", "1024", "--json"],
                         cwd=cwd, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    return result["prompt_tok_s"], result["decode_tok_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel-python", required=True, help="python of a venv with the distributable wheel")
    parser.add_argument("--variants", default="auto,haswell,x64")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-words", type=int, default=225)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    from mullama.models import assets

    model = str(assets.default_model_path())
    prompt = " ".join(("The quick brown fox jumps over the lazy dog. " * args.prompt_words).split()[:args.prompt_words])
    sides = [("static", str(REPO / ".venv" / "bin" / "python"), None, str(REPO))]
    sides += [(v, args.wheel_python, v, None) for v in args.variants.split(",")]
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in sides}
    with tempfile.TemporaryDirectory() as cwd:
        for r in range(args.rounds):
            for name, python, variant, pythonpath in sides:
                samples[name].append(run(python, variant, args, model, prompt, cwd, pythonpath))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {s[-1][1]:.1f}" for n, s in samples.items()),
                  file=sys.stderr)
    base = samples["static"]
    print(f"| build | prefill tok/s | decode tok/s | prefill ÷ static | decode ÷ static |  ({args.rounds} rounds, "
          f"{args.threads} threads, medians; ratios: median of per-round ratios)")
    print("|---|---|---|---|---|")
    for name, s in samples.items():
        pre = statistics.median(a[0] / b[0] for a, b in zip(s, base, strict=True))
        dec = statistics.median(a[1] / b[1] for a, b in zip(s, base, strict=True))
        print(f"| {name} | {statistics.median(x[0] for x in s):.1f} | {statistics.median(x[1] for x in s):.1f} "
              f"| {pre:.2f} | {dec:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
