#!/usr/bin/env python3
"""Validate `mullama sim` against real runs: calibrate, replay each workload for real under every built-in
policy, simulate the same, and report the simulator's error (docs/benchmarks.md, "The simulator against
real runs").

Workloads: ``azure_mixed`` (a minute of Azure's conversation trace, two SmolLM2 variants by hash with one
loaded at a time: swaps) and ``priority_mix`` (Poisson 3/s, interactive vs batch vs impatient clients on 2
slots: queueing and preemption). The Q8_0 variant is made once with the engine's quantize.

    python benchmarks/sim_validation.py [--profile FILE] [--out DIR] [--workloads azure_mixed,priority_mix]

With ``--profile`` the calibration is skipped; with ``--real DIR`` (a previous run's output) the real runs are
too, and only the simulation and its error are redone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from supervisor_harness import q8_variant  # noqa: E402

POLICIES = "fifo,round_robin,priority,preemptive"
MODELS = ("smollm2:q4_1", "smollm2:q8_0")


def mullama(*args: str) -> None:
    cmd = [sys.executable, "-m", "mullama.cli", *args]
    print("$ mullama " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", type=Path, help="an existing profile (default: calibrate one now)")
    ap.add_argument("--real", type=Path, help="the output directory of an earlier run: reuse its real runs")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / f"sim-validation-{time.strftime('%Y%m%d-%H%M%S')}")
    ap.add_argument("--workloads", default="azure_mixed,priority_mix")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    models_dir = str(q8_variant().parent.parent)
    args.out.mkdir(parents=True, exist_ok=True)
    profile = args.profile or args.out / "profile.json"
    if args.profile is None:
        mullama("sim", "calibrate", *(a for m in MODELS for a in ("--model", m)), "--models-dir", models_dir,
                "--threads", str(args.threads), "--out", str(profile))
    tables = []
    for w in args.workloads.split(","):
        real = (args.real or args.out) / f"real-{w}"
        if args.real is None:
            mullama("bench", w, "--models-dir", models_dir, "--threads", str(args.threads),
                    "--compare-schedulers", POLICIES, "--out", str(real), "--quiet")
        mullama("sim", "run", w, "--profile", str(profile), "--compare-schedulers", POLICIES,
                "--out", str(args.out / f"sim-{w}"), "--against", str(real), "--quiet")
        tables.append(f"#### `{w}`\n\n" + (args.out / f"sim-{w}" / "validation.md").read_text())
    (args.out / "validation.md").write_text("\n".join(tables))
    print("\n".join(tables))
    print(f"wrote {args.out / 'validation.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
