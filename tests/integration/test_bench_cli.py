"""`mullama bench` end to end against a real `mullama serve` (and, slow-marked, llama-server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from supervisor_harness import Server, base_settings

from mullama.cli import main as cli

PNG = b"\x89PNG\r\n\x1a\n"

TINY = """
name = "tiny"
seed = 3
requests = 4
[arrival]
concurrency = [1, 2]
[prompt]
tokens = {dist = "uniform", min = 8, max = 24}
[output]
max_tokens = 6
[[classes]]
name = "hi"
priority = 5
user = "alice"
[[classes]]
name = "lo"
weight = 2
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, smollm_path):
    srv = Server(
        tmp_path_factory.mktemp("bench-srv"),
        base_settings(threads=1, threads_batch=1, n_parallel=2, n_ctx=1024, keep_alive=-1),
    )
    yield srv
    srv.stop()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bench_against_a_running_mullama(server, tmp_path, capsys) -> None:
    wl = tmp_path / "tiny.toml"
    wl.write_text(TINY)
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "bench",
                str(wl),
                "--url",
                server.url,
                "--out",
                str(out),
                "--quiet",
                "--memory",
                "--memory-tokens",
                "8",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "### Workload `tiny`" in printed and "| mullama | c=1 |" in printed

    records = _jsonl(out / "requests.jsonl")
    assert len(records) == 8 and {r["phase"] for r in records} == {"c=1", "c=2"}
    for r in records:
        assert r["ok"], r
        assert r["ttft_ms"] > 0 and r["e2e_ms"] >= r["ttft_ms"] and r["completion_tokens"] == 6
        p = r["profile"]
        assert p["model"] == "smollm2:q4_1" and p["completion_tokens"] == 6
        assert p["kv_cache_hit"] + p["kv_cache_miss"] == p["prompt_tokens"] == r["prompt_tokens"]
        assert r["cached_tokens"] == p["kv_cache_hit"]
    assert {r["class"] for r in records} == {"hi", "lo"}
    assert all(r["user"] == "alice" and r["priority"] == 5 for r in records if r["class"] == "hi")

    summary = json.loads((out / "summary.json").read_text())
    s = summary["summaries"]["mullama"]["c=2"]
    assert s["ok"] == 4 and s["errors"] == 0 and s["completion_tokens"] == 24 and s["tok_s"] > 0
    assert s["ttft_ms_p50"] <= s["ttft_ms_p95"] <= s["ttft_ms_p99"]
    assert s["preemptions"] == 0 and s["swaps"] == 0 and s["profiled"] == 4
    assert 0 <= s["prefix_hit_rate"] <= 1
    assert set(s["classes"]) == {"hi", "lo"}
    mem = summary["memory"]["mullama"]
    assert set(mem) == {"start", "after load", "one request", "concurrent"}
    assert mem["after load"]["mullama"]["rss"] > 0
    assert any(label.startswith("runner") for label in mem["after load"])
    md = (out / "summary.md").read_text()
    assert "| mullama | c=2 |" in md and "Memory by phase" in md and "By request class" in md
    for png in ("throughput.png", "ttft_cdf.png", "timeline.png"):
        assert (out / png).read_bytes()[:8] == PNG


def test_compare_schedulers_with_its_own_server(tmp_path, capsys, smollm_path) -> None:
    """No --url: bench starts `mullama serve` itself; one trace under fifo and priority, side by side."""
    wl = tmp_path / "mix.toml"
    wl.write_text(TINY.replace("concurrency = [1, 2]", "concurrency = 3"))
    out = tmp_path / "cmp"
    rc = cli.main(
        [
            "bench",
            str(wl),
            "--out",
            str(out),
            "--quiet",
            "--threads",
            "1",
            "--parallel",
            "1",
            "--ctx",
            "1024",
            "--compare-schedulers",
            "fifo,priority",
            "--no-warmup",
        ]
    )
    assert rc == 0
    records = _jsonl(out / "requests.jsonl")
    assert sorted({r["config"] for r in records}) == ["fifo", "priority"]
    for policy in ("fifo", "priority"):
        rs = [r for r in records if r["config"] == policy]
        assert len(rs) == 4 and all(r["ok"] for r in rs)
        assert {r["profile"]["scheduler"] for r in rs} == {policy}
    md = (out / "summary.md").read_text()
    assert "| fifo | c=3 |" in md and "| priority | c=3 |" in md
    assert "Side by side, against `fifo`:" in md and "priority vs fifo" in md
    assert "| priority | c=3 | hi |" in md


def test_bad_input_is_a_clear_error(tmp_path, capsys, server) -> None:
    wl = tmp_path / "bad.toml"
    wl.write_text("[arrival]\nrate = 0\n")
    assert cli.main(["bench", str(wl), "--url", server.url]) == 1
    assert "bad.toml: arrival.rate: Expected `float` > 0.0" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text(TINY)
    assert cli.main(["bench", str(good), "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert cli.main(["bench", str(good), "--url", server.url, "--compare-schedulers", "fifo,fifo"]) == 1
    assert "named twice" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "bench",
                str(good),
                "--url",
                server.url,
                "--compare-schedulers",
                "fifoo",
                "--out",
                str(tmp_path / "x"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "unknown policy 'fifoo'" in capsys.readouterr().err


@pytest.mark.slow
def test_baseline_llama_server_side_by_side(tmp_path, capsys, smollm_path) -> None:
    wl = tmp_path / "tiny.toml"
    wl.write_text(TINY)
    out = tmp_path / "ls"
    rc = cli.main(
        [
            "bench",
            str(wl),
            "--out",
            str(out),
            "--quiet",
            "--threads",
            "1",
            "--parallel",
            "2",
            "--ctx",
            "1024",
            "--baseline",
            "llama-server",
            "--memory",
            "--memory-tokens",
            "16",
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summaries"]) == {"mullama", "llama-server"}
    ls = summary["summaries"]["llama-server"]["c=2"]
    assert ls["ok"] == 4 and ls["completion_tokens"] == 24 and ls["swaps"] is None
    assert set(summary["memory"]["llama-server"]) == {"after load", "one request", "concurrent"}
    md = (out / "summary.md").read_text()
    assert "Side by side, against `llama-server`:" in md and "mullama vs llama-server" in md


def test_a_real_trace_replays_with_its_arrivals_and_lengths(server, tmp_path, capsys) -> None:
    """Eight seconds of the shipped Azure sample (7 requests), twice as fast, lengths capped: every request sent at its
    time with its length, and the report puts the trace's own statistics beside what was sent."""
    from mullama.bench import traces, workload

    sample = workload.TRACES / "azure_conv_sample.csv"
    want = traces.select(traces.read(sample), duration_s=8, speed=2, max_prompt_tokens=32, max_output_tokens=4)
    out = tmp_path / "out"
    rc = cli.main(["bench", str(sample), "--url", server.url, "--out", str(out), "--quiet", "--no-warmup",
                   "--trace-window", "0:8", "--speed", "2", "--max-prompt-tokens", "32",
                   "--max-output-tokens", "4"])
    assert rc == 0
    records = sorted(_jsonl(out / "requests.jsonl"), key=lambda r: r["scheduled_s"])
    assert len(records) == len(want) >= 5
    for r, row in zip(records, want):
        assert r["ok"], r
        assert r["scheduled_s"] == pytest.approx(row.t, abs=1e-3) and r["sent_s"] >= r["scheduled_s"] - 0.01
        assert r["completion_tokens"] == row.output_tokens  # forced to the trace's (capped) length
        assert r["prompt_tokens"] == row.prompt_tokens  # fitted with the server's tokenizer, template included
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert meta["trace"]["requests"] == len(want) and meta["trace"]["prompt_tokens"]["max"] <= 32
    md = (out / "summary.md").read_text()
    assert "The trace as replayed" in md and "burstiness" in md and "exact token counts" in md
    assert "trace x2" in capsys.readouterr().out
