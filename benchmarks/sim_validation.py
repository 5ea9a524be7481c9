#!/usr/bin/env python3
"""Validate `mullama sim` against real runs: calibrate, replay each workload for real under every built-in
policy, simulate the same, and report the simulator's error (docs/benchmarks.md, "The simulator against
real runs").

Workloads: ``azure_mixed`` (a minute of Azure's conversation trace, two SmolLM2 variants by hash with one
loaded at a time: swaps), ``priority_mix`` (Poisson 3/s, interactive vs batch vs impatient clients on 2
slots: queueing and preemption) and ``benchmarks/sim_swaps.toml`` (swaps one at a time). The Q8_0 variant is
made once with the engine's quantize.

    python benchmarks/sim_validation.py [--profile FILE] [--out DIR] [--workloads azure_mixed,priority_mix]
                                        [--real-runs 2]

With ``--profile`` the calibration is skipped; with ``--real DIR`` (a previous run's output) the real runs are
too, and only the simulation and its error are redone. With ``--real-runs 2`` each workload runs twice for
real, and the second run is compared with the first as the simulation is: the machine's own run-to-run
error, the floor the simulator's error should be read against.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from supervisor_harness import q8_variant

POLICIES = "fifo,round_robin,priority,preemptive"
MODELS = ("smollm2:q4_1", "smollm2:q8_0")


def mullama(*args: str) -> None:
    cmd = [sys.executable, "-m", "mullama.cli", *args]
    print("$ mullama " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def noise(first: Path, second: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from mullama.sim import validate

    def load(p: Path) -> dict:
        return json.loads((p / "summary.json").read_text())["summaries"]
    return validate.markdown(validate.compare(load(first), load(second)), "First real run", "second")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", type=Path, help="an existing profile (default: calibrate one now)")
    ap.add_argument("--real", type=Path, help="the output directory of an earlier run: reuse its real runs")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / f"sim-validation-{time.strftime('%Y%m%d-%H%M%S')}")
    ap.add_argument("--workloads", default="azure_mixed,priority_mix,benchmarks/sim_swaps.toml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--real-runs", type=int, default=1, choices=(1, 2))
    args = ap.parse_args()
    models_dir = str(q8_variant().parent.parent)
    args.out.mkdir(parents=True, exist_ok=True)
    profile = args.profile or args.out / "profile.json"
    if args.profile is None:
        mullama("sim", "calibrate", *(a for m in MODELS for a in ("--model", m)), "--models-dir", models_dir,
                "--threads", str(args.threads), "--out", str(profile))
    tables = []
    for w in args.workloads.split(","):
        name = Path(w).stem
        real = (args.real or args.out) / f"real-{name}"
        runs = [real] + [real.with_name(f"real-{name}-{i + 1}") for i in range(1, args.real_runs)]
        if args.real is None:
            for out in runs:
                mullama("bench", w, "--models-dir", models_dir, "--threads", str(args.threads),
                        "--compare-schedulers", POLICIES, "--out", str(out), "--quiet")
        mullama("sim", "run", w, "--profile", str(profile), "--compare-schedulers", POLICIES,
                "--out", str(args.out / f"sim-{name}"), "--against", str(real), "--quiet")
        tables.append(f"#### `{name}`\n\n" + (args.out / f"sim-{name}" / "validation.md").read_text())
        if len(runs) > 1 and runs[1].exists():
            tables.append("The second real run against the first (the machine's own error):\n\n"
                          + noise(runs[0], runs[1]))
    (args.out / "validation.md").write_text("\n".join(tables))
    print("\n".join(tables))
    print(f"wrote {args.out / 'validation.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
