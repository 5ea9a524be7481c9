"""`mullama sim run`: a workload on simulated servers, its files, its comparison with a real run, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mullama.cli.main import main
from mullama.sim import profile as profmod
from mullama.sim import validate
from mullama.sim.profile import ModelCost, Profile

COST = ModelCost(step_ms=[(1, 12.0), (4, 30.0), (64, 200.0), (512, 2700.0)], ctx_ms_per_token=0.01,
                 first_token_ms=7.0, template_tokens=30, load_s=0.7, unload_s=0.1, memory_bytes=300 << 20)


@pytest.fixture()
def prof(tmp_path: Path) -> Path:
    return profmod.save(Profile(name="unit", models={"smollm2:q4_1": COST, "smollm2:q8_0": COST},
                                default="smollm2:q4_1"), tmp_path / "profile.json")


def test_sim_run_writes_what_bench_writes(tmp_path: Path, prof: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["sim", "run", "priority_mix", "--profile", str(prof), "--out", str(out), "--quiet",
               "--compare-schedulers", "fifo,preemptive"])
    assert rc == 0
    for name in ("requests.jsonl", "summary.json", "summary.md", "throughput.png", "ttft_cdf.png", "timeline.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summaries"]) == {"fifo", "preemptive"}
    assert summary["summaries"]["preemptive"]["poisson 3/s"]["preemptions"] > 0
    assert "| fifo | poisson 3/s |" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert {r["config"] for r in records} == {"fifo", "preemptive"} and all(r["e2e_ms"] for r in records)


def test_sim_run_against_a_real_run_reports_its_error(tmp_path: Path, prof: Path, capsys) -> None:
    main(["sim", "run", "azure_mixed", "--profile", str(prof), "--out", str(tmp_path / "a"), "--quiet"])
    capsys.readouterr()
    rc = main(["sim", "run", "azure_mixed", "--profile", str(prof), "--out", str(tmp_path / "b"), "--quiet",
               "--against", str(tmp_path / "a")])
    assert rc == 0
    text = (tmp_path / "b" / "validation.md").read_text()
    assert "| fifo | trace x1 |" in text and "(+0%)" in text  # the same simulation: no error
    assert "Median absolute error over the rows: TTFT p50 0%" in text


def test_fleets_and_overrides(tmp_path: Path, prof: Path) -> None:
    assert main(["sim", "run", "azure_mixed", "--profile", str(prof), "--out", str(tmp_path / "f"), "--quiet",
                 "--replicas", "3", "--max-loaded-models", "2", "--speed", "4"]) == 0
    s = json.loads((tmp_path / "f" / "summary.json").read_text())["summaries"]["fifo"]["trace x4"]
    assert s["ok"] == s["requests"] > 0


@pytest.mark.parametrize("argv,message", [
    (["--profile", "/nonexistent.json"], "no simulator profile"),
    (["--scheduler", "fastest"], "unknown policy 'fastest'"),
    (["--replicas", "0"], "--replicas must be at least 1"),
    (["--memory-budget", "lots"], "simulated server settings"),
    (["--prefetch", "psychic"], "unknown predictor 'psychic'"),
    (["--against", "/nonexistent"], "no summary.json"),
])  # each refused before anything runs: no output directory
def test_bad_input_is_a_clear_error(tmp_path: Path, prof: Path, capsys, argv, message) -> None:
    args = ["sim", "run", "priority_mix", "--profile", str(prof), "--out", str(tmp_path / "x"), "--quiet", *argv]
    assert main(args) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_model_the_profile_lacks_is_refused_before_running(tmp_path: Path, capsys) -> None:
    only = profmod.save(Profile(name="one", models={"other": COST}), tmp_path / "p.json")
    assert main(["sim", "run", "priority_mix", "--profile", str(only), "--out", str(tmp_path / "x"), "--quiet"]) != 0
    assert "has no cost for model '(the default)'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_validation_errors() -> None:
    real = {"fifo": {"p": {"ttft_ms_p50": 100.0, "tok_s": 10.0, "swaps": 4, "classes": {"hi": {"ttft_ms_p50": 50.0}}}}}
    sim = {"fifo": {"p": {"ttft_ms_p50": 110.0, "tok_s": 9.0, "swaps": 5, "classes": {"hi": {"ttft_ms_p50": 40.0}}}},
           "other": {"p": {}}}
    rows = validate.compare(real, sim)
    assert len(rows) == 1 and rows[0]["ttft_ms_p50"] == (100.0, 110.0, pytest.approx(0.1))
    assert rows[0]["swaps"] == (4, 5, None) and rows[0]["class hi TTFT p50"][2] == pytest.approx(-0.2)
    md = validate.markdown(rows)
    assert "100 → 110 (+10%)" in md and "4 → 5" in md and "TTFT p50 10%" in md
    assert validate.compare({"mullama": {"p": {"tok_s": 1.0}}}, {"fifo": {"p": {"tok_s": 2.0}}})[0]["config"] == \
        "mullama ↔ fifo"  # one configuration each: paired whatever their names
    assert validate.error(0.0, 1.0) is None and validate.markdown([]).startswith("No configuration")
