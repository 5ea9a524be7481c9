"""Benchmark summaries, tables and plots (mullama/bench/report.py, plots.py, memory.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mullama.cli import bench as cli_bench
from mullama.bench import memory, plots, report

PNG = b"\x89PNG\r\n\x1a\n"


def rec(
    i: int,
    *,
    config: str = "a",
    phase: str = "c=1",
    ok: bool = True,
    ttft: float | None = 100.0,
    e2e: float = 500.0,
    tokens: int = 10,
    gaps=(10.0, 20.0),
    prompt: int = 50,
    cached: int | None = 20,
    klass: str | None = None,
    error: str | None = None,
    status: int = 200,
    cancelled: bool = False,
    profile: dict | None = None,
    model: str = "m",
) -> dict:
    return {
        "index": i,
        "config": config,
        "target": config,
        "phase": phase,
        "model": model,
        "class": klass,
        "ok": ok,
        "ttft_ms": ttft,
        "e2e_ms": e2e,
        "completion_tokens": tokens,
        "gaps_ms": list(gaps),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "error": error,
        "status": status,
        "cancelled": cancelled,
        "profile": profile,
        "start_wall": 1000.0 + i,
        "rep": 0,
    }


@pytest.mark.parametrize(
    ("xs", "q", "want"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4, 5], 95, 4.8),
        (list(range(101)), 99, 99.0),
        ([5, 1, 3], 0, 1.0),
        ([5, 1, 3], 100, 5.0),
    ],
)
def test_percentile(xs, q, want) -> None:
    got = report.percentile(xs, q)
    assert got == pytest.approx(want) if want is not None else got is None


def test_percentile_matches_numpy() -> None:
    np = pytest.importorskip("numpy")
    xs = [float(x) for x in np.random.default_rng(3).lognormal(3, 1, 257)]
    for q in (50, 95, 99):
        assert report.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_summarize() -> None:
    records = [rec(i, ttft=100.0 + i, e2e=1000.0 + 10 * i) for i in range(10)]
    records.append(
        rec(10, ok=False, ttft=None, tokens=0, gaps=(), error="HTTP 503: busy", status=503, cached=None)
    )
    records.append(
        rec(11, ok=False, ttft=None, tokens=0, gaps=(), error="timeout after 5 s", status=200, cached=None)
    )
    records.append(rec(12, ok=False, cancelled=True, tokens=3, gaps=(5.0,), cached=None, prompt=40))
    s = report.summarize(
        records,
        wall_s=2.0,
        counters={"scheduler.preemptions": 3, "models.evictions": 2, "models.swaps": 1, "models.loads": 4},
    )
    assert s["requests"] == 13 and s["ok"] == 10 and s["errors"] == 2 and s["cancelled"] == 1
    assert s["error_kinds"] == {"HTTP 503": 1, "timeout after 5 s": 1}
    assert s["completion_tokens"] == 103  # ok + cancelled requests' tokens
    assert s["tok_s"] == pytest.approx(51.5) and s["req_s"] == pytest.approx(5.0)
    assert s["ttft_ms_p50"] == pytest.approx(104.5)
    assert s["e2e_ms_p99"] == pytest.approx(
        report.percentile([1000.0 + 10 * i for i in range(10)], 99), abs=1e-3
    )
    assert s["tpot_ms_p50"] == pytest.approx(104.5)  # (e2e - ttft) / (tokens - 1) = 100 + i
    assert report.tpot(rec(0, tokens=1)) is None and report.tpot(rec(0, ttft=None)) is None
    assert s["itl_ms_p50"] == pytest.approx(10.0)  # pooled gaps: 10 × (10, 20) + (5)
    assert s["prefix_hit_rate"] == pytest.approx(200 / 500)
    assert s["preemptions"] == 3 and s["swaps"] == 3 and s["evictions"] == 2 and s["hot_swaps"] == 1
    assert s["loads"] == 4 and s["deadline_expired"] == 0


def test_summarize_without_server_counters() -> None:
    """A plain OpenAI server: no counters; preemptions from profiles when there are any, else unknown."""
    s = report.summarize([rec(0, cached=None)], wall_s=1.0)
    assert s["swaps"] is None and s["preemptions"] is None and s["prefix_hit_rate"] is None
    prof = {"preemptions": 2, "queue_ms": 4.0, "inter_token_ms_p50": 6.0, "completion_tokens": 10}
    s = report.summarize([rec(0, profile=prof), rec(1, profile={**prof, "preemptions": 1})], wall_s=1.0)
    assert s["preemptions"] == 3 and s["profiled"] == 2
    assert s["server_queue_ms_p50"] == 4.0 and s["server_itl_ms_p50"] == 6.0
    empty = report.summarize([], wall_s=0.0)
    assert empty["requests"] == 0 and empty["tok_s"] is None and empty["ttft_ms_p50"] is None


def test_class_breakdown_and_tables() -> None:
    records = [rec(i, klass="hi" if i % 2 else "lo", ttft=50.0 if i % 2 else 400.0) for i in range(8)]
    s = report.summarize(records, 1.0, {})
    assert s["classes"]["hi"]["ttft_ms_p50"] == 50.0 and s["classes"]["lo"]["ttft_ms_p50"] == 400.0
    base = report.summarize([rec(i, e2e=1000.0, ttft=200.0) for i in range(4)], 2.0)
    summaries = {"mullama": {"c=1": s}, "llama-server": {"c=1": base}}
    md = report.markdown(summaries)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| configuration | phase | tok/s |") and len(lines) == 4
    assert "| mullama | c=1 |" in md and "| llama-server | c=1 |" in md
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "50 / 400" not in md  # percentiles are over all requests
    classes = report.class_table(summaries)
    assert "| mullama | c=1 | hi | 4/4 | 50 / 50 / 50 |" in classes
    ratios = report.ratio_table(summaries, "llama-server")
    assert "| c=1 | mullama vs llama-server |" in ratios
    assert "**4.00×** (80.00 / 20.00)" in ratios  # tok/s: 80 vs 20, better: bold
    assert report.ratio_table({"only": {"c=1": s}}, "only") == ""
    assert report.class_table({"x": {"c=1": base}}) == ""


def test_plots_are_pngs(tmp_path: Path) -> None:
    records = [
        rec(i, config=c, phase=p, ttft=50.0 * (i + 1), model=m)
        for c in ("fifo", "priority")
        for p in ("c=1", "c=4")
        for i, m in enumerate("aab")
    ]
    records.append(rec(9, ok=False, ttft=None, error="HTTP 500: x", status=500))
    summaries = {
        c: {
            p: report.summarize([r for r in records if r["config"] == c and r["phase"] == p], 1.5)
            for p in ("c=1", "c=4")
        }
        for c in ("fifo", "priority")
    }
    view = {
        "models": [
            {
                "name": "a",
                "history": [
                    {"state": "loading", "at": 999.0},
                    {"state": "ready", "at": 1000.5},
                    {"state": "unloading", "at": 1002.0, "reason": "evicted:memory_budget"},
                    {"state": "unloaded", "at": 1002.2},
                ],
            },
            {"name": "b", "history": [{"state": "loading", "at": 1002.2}, {"state": "ready", "at": 1002.8}]},
        ],
        "swaps": [{"at": 1003.0}],
    }
    out = [
        plots.throughput(summaries, {"c=1": ("closed", 1), "c=4": ("closed", 4)}, tmp_path / "t.png"),
        plots.throughput(summaries, {"c=1": ("trace", None), "c=4": ("trace", None)}, tmp_path / "bars.png"),
        plots.ttft_cdf(records, tmp_path / "cdf.png"),
        plots.timeline(records, view, 1000.0, 1005.0, tmp_path / "sub" / "timeline.png"),
        plots.timeline(records, view, 1000.0, 1005.0, tmp_path / "tl2.png", segments=[("fifo · c=1", 1000, 1002)],
                       load=[{"at": 1000.0 + i, "ours": 40.0, "other": 10.0 * i} for i in range(5)]),
        plots.ttft_cdf([{**r, "class": "hi" if r["index"] % 2 else "lo"} for r in records], tmp_path / "cls.png"),
    ]
    for p in out:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 2000
    spans = plots.residency(view, 1000.0, 1005.0)
    assert spans["a"][0] == (0.0, 0.5, "loading") and spans["a"][1] == (0.5, 2.0, "ready")
    assert spans["b"][-1] == (pytest.approx(2.8), 5.0, "ready")
    assert plots.swap_times(view) == [1002.0, 1003.0]
    assert plots._lanes([(0, 2), (1, 3), (2.5, 4), (3, 5)]) == [0, 1, 0, 1]


def test_empty_plots(tmp_path: Path) -> None:
    assert plots.ttft_cdf([], tmp_path / "e.png").read_bytes()[:8] == PNG
    assert plots.throughput({}, {}, tmp_path / "t.png").read_bytes()[:8] == PNG
    assert plots.timeline([], None, 0.0, 1.0, tmp_path / "tl.png").read_bytes()[:8] == PNG


def test_memory_reading_and_table() -> None:
    r = memory.reading({"me": os.getpid(), "gone": 2**22 + 7})
    assert r["me"]["rss"] > 10 * 2**20 and r["gone"]["rss"] is None

    async def work() -> int:
        await asyncio.sleep(0.12)
        return 1

    peak = asyncio.run(memory.peak_during(lambda: {"me": os.getpid()}, work(), interval=0.02))
    assert peak["me"]["rss"] >= r["me"]["rss"] * 0.5
    mib = 2**20
    profiles = {
        "mullama": {
            "start": {"supervisor": {"rss": 60 * mib, "vram": None}},
            "after load": {
                "supervisor": {"rss": 62 * mib, "vram": None},
                "runner m": {"rss": 190 * mib, "vram": None},
            },
        },
        "llama-server": {"after load": {"llama-server": {"rss": 150 * mib, "vram": None}}},
    }
    t = memory.table(profiles)
    lines = t.strip().splitlines()
    assert lines[0] == (
        "| phase | mullama: supervisor RSS MiB | mullama: runner m RSS MiB | mullama: total RSS MiB "
        "| llama-server: llama-server RSS MiB |"
    )
    assert lines[2] == "| start | 60 | — | 60 | — |"
    assert lines[3] == "| after load | 62 | 190 | 252 | 150 |"
    assert lines[4] == "| one request | — | — | — | — |"
    with_gpu = {"x": {"after load": {"p": {"rss": 10 * mib, "vram": 300 * mib}}}}
    assert "| after load | 10 | 300 |" in memory.table(with_gpu)


def test_update_doc(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("# B\n\nintro\n")
    cli_bench.update_doc(doc, "table 1")
    assert doc.read_text() == f"# B\n\nintro\n\n{cli_bench.DOC_START}\ntable 1\n{cli_bench.DOC_END}\n"
    doc.write_text(doc.read_text() + "\n## After\n")
    cli_bench.update_doc(doc, "table 2 \\1")
    text = doc.read_text()
    assert "table 1" not in text and "table 2 \\1" in text and text.endswith("## After\n")
    assert text.count(cli_bench.DOC_START) == 1


def test_ratios_bold_only_what_is_better() -> None:
    assert report.ratio_cell(80.0, 20.0, True) == "**4.00×** (80.00 / 20.00)"
    assert report.ratio_cell(0.31, 0.33, True) == "0.94× (0.31 / 0.33)"  # worse: plain, operands unrounded
    assert report.ratio_cell(319.7, 400.0, False) == "**0.80×** (319.7 / 400.0)"  # a lower latency is better
    assert report.ratio_cell(1672.0, 1670.0, False) == "1.00× (1672 / 1670)"  # equal at 2 decimals: plain


def test_plot_choices() -> None:
    assert plots.sweep_axis({"c=1": ("closed", 1), "c=4": ("closed", 4)}) == "clients (closed loop)"
    assert plots.sweep_axis({"p1": ("poisson", 1.0), "p2": ("poisson", 2.0)}).startswith("offered load")
    assert plots.sweep_axis({"trace x1": ("trace", None)}) is None  # one phase: bars
    assert plots.sweep_axis({"c=1": ("closed", 1), "p2": ("poisson", 2.0)}) is None  # mixed: bars
    recs = [{"model": "", "profile": {"model": "smollm2"}, "ok": True},
            {"model": "", "profile": None, "cancelled": True, "ok": False},
            {"model": "q8", "profile": None, "ok": False, "status": 408}]
    assert plots.rows_of(recs) == ["smollm2", "smollm2", "q8"]  # never a model called "(default)"
    assert [plots.outcome(r) for r in recs] == ["ok", "cancelled by its client", "deadline missed"]


def test_model_history_keeps_every_entry_it_saw() -> None:
    from mullama.bench.history import ModelHistory

    h = ModelHistory(target=None)  # merge only: no polling
    first = {"models": [{"name": "a", "history": [{"state": "loading", "at": 1.0}, {"state": "ready", "at": 2.0}]}]}
    later = {"models": [{"name": "a", "history": [{"state": "ready", "at": 2.0}, {"state": "draining", "at": 3.0}]}],
             "counters": {"loads": 1}}
    h.merge(first)
    view = h.merge(later)  # the server dropped the oldest entry meanwhile; the run keeps it
    assert [x["state"] for x in view["models"][0]["history"]] == ["loading", "ready", "draining"]
    assert view["counters"] == {"loads": 1} and h.merge(None) is None


def test_llama_server_gets_the_workload_s_cache_ram_and_a_bad_one_is_named():
    from mullama.core.errors import MullamaError

    assert cli_bench._cache_ram({}) == 8 << 30  # mullama's default, and llama-server's --cache-ram 8192
    assert cli_bench._cache_ram({"cache_ram": "512MiB"}) == 512 << 20
    with pytest.raises(MullamaError, match="server.cache_ram"):
        cli_bench._cache_ram({"cache_ram": "lots"})
