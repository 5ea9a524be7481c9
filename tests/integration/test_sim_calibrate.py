"""`mullama sim calibrate` against a real `mullama serve`, then the simulator against a real run of one workload."""

from __future__ import annotations

import json

from mullama.cli import main as cli
from mullama.sim import profile as profmod

WORKLOAD = """
name = "small"
seed = 2
requests = 6
[arrival]
mode = "poisson"
rate = 2.0
[prompt]
tokens = 24
[output]
max_tokens = 8
"""


def test_calibrate_then_simulate_a_real_run(tmp_path, capsys, smollm_path) -> None:
    prof_path = tmp_path / "profile.json"
    rc = cli.main(["sim", "calibrate", "--rounds", "1", "--parallel", "2", "--threads", "1", "--ctx", "1024",
                   "--out", str(prof_path)])
    assert rc == 0
    prof = profmod.load(prof_path)
    cost = prof.cost("smollm2")
    tokens = [n for n, _ in cost.step_ms]
    ms = [m for _, m in cost.step_ms]
    assert tokens[:2] == [1, 2] and max(tokens) > 500  # decode points, then the prefill probes
    assert ms == sorted(ms) and ms[0] > 0  # made non-decreasing
    assert cost.first_token_ms > 0 and cost.load_s > 0 and cost.memory_bytes > 50 << 20
    assert cost.template_tokens > 0 and prof.default == "smollm2" and prof.threads == 1
    assert "smollm2: step ms by batch tokens" in capsys.readouterr().out

    wl = tmp_path / "small.toml"
    wl.write_text(WORKLOAD)
    real, sim = tmp_path / "real", tmp_path / "sim"
    assert cli.main(["bench", str(wl), "--out", str(real), "--quiet", "--threads", "1", "--parallel", "2",
                     "--ctx", "1024"]) == 0
    meta = json.loads((real / "summary.json").read_text())["meta"]
    assert isinstance(meta["machine_load"], list)
    assert "other processes' CPU during the run" in (real / "summary.md").read_text() or not meta["machine_load"]
    capsys.readouterr()
    assert cli.main(["sim", "run", str(wl), "--profile", str(prof_path), "--parallel", "2", "--out", str(sim),
                     "--quiet", "--against", str(real)]) == 0
    text = (sim / "validation.md").read_text()
    assert "| mullama ↔ fifo | poisson 2/s |" in text  # one configuration each: compared whatever their names
    assert "Median absolute error over the rows: TTFT p50" in text
