"""Production traces (bench/traces.py): both formats read, a window cut, sped up or slowed down, sampled,
scaled and capped; described (rate over time, burstiness, lengths); a [trace] workload turned into one
open-loop phase with the trace's arrivals and lengths; bad files and options named clearly."""

from __future__ import annotations

import argparse
import itertools
import statistics

import msgspec
import pytest

from mullama.bench import report, trace, traces, workload
from mullama.cli.bench import with_trace_options
from mullama.core.errors import MullamaError

SAMPLE = workload.TRACES / "azure_conv_sample.csv"
BURST = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,100,20,120,Conversation log
0,GPT-4,300,40,340,Conversation log
12.5,ChatGPT,50,0,50,Conversation log
"""


def test_the_shipped_azure_sample_reads_in_time_order() -> None:
    rows = traces.read(SAMPLE)
    assert len(rows) == 1445 and rows[0].t == 0.0 and rows[-1].t < 300
    assert all(a.t <= b.t for a, b in itertools.pairwise(rows))
    assert (rows[0].prompt_tokens, rows[0].output_tokens) == (374, 44)  # the file's first request


def test_burstgpt_rows_carry_their_model(tmp_path) -> None:
    path = tmp_path / "burst.csv"
    path.write_text(BURST)
    rows = traces.read(path)
    assert [(r.t, r.model, r.prompt_tokens, r.output_tokens) for r in rows] == [
        (0.0, "GPT-4", 300, 40), (5.0, "ChatGPT", 100, 20), (12.5, "ChatGPT", 50, 0)]
    assert traces.stats(rows)["models"] == {"ChatGPT": 2, "GPT-4": 1}


@pytest.mark.parametrize("text, match", [
    ("a,b,c\n1,2,3\n", "unknown trace columns"),
    ("", "empty trace"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,12,x\n", r"trace.csv:2: not a azure row"),
])
def test_bad_trace_files_are_named_with_the_line(tmp_path, text, match) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(traces.TraceError, match=match):
        traces.read(path)
    with pytest.raises(traces.TraceError, match="cannot read trace"):
        traces.read(tmp_path / "missing.csv")


def test_select_cuts_scales_and_caps() -> None:
    rows = traces.read(SAMPLE)
    window = traces.select(rows, start_s=60, duration_s=30)
    assert window and all(0 <= r.t < 30 for r in window)
    assert len(window) == sum(1 for r in rows if 60 <= r.t < 90)
    slow = traces.select(rows, start_s=60, duration_s=30, speed=0.1)
    assert [r.t for r in slow] == pytest.approx([r.t * 10 for r in window])
    capped = traces.select(rows, duration_s=60, token_scale=0.5, max_prompt_tokens=100, max_output_tokens=8)
    assert max(r.prompt_tokens for r in capped) == 100 and max(r.output_tokens for r in capped) == 8
    assert min(r.prompt_tokens for r in capped) >= 1
    a, b = (traces.select(rows, sample=0.3, seed=7) for _ in range(2))
    assert a == b and 0.2 * len(rows) < len(a) < 0.4 * len(rows)  # seeded: the same requests each time
    assert len(traces.select(rows, limit=5)) == 5
    with pytest.raises(traces.TraceError):
        traces.select(rows, speed=0)


def test_stats_describe_rate_burstiness_and_lengths() -> None:
    rows = [traces.TraceRow(t=float(i), prompt_tokens=10 * (i + 1), output_tokens=5) for i in range(120)]
    s = traces.stats(rows)
    assert s["requests"] == 120 and s["duration_s"] == 119.0 and s["burstiness_cv"] == 0.0  # evenly spaced
    assert s["rate_per_s_by_minute"] == {"min": 1.0, "p50": 1.0, "max": 1.0}
    assert s["prompt_tokens"]["max"] == 1200 and s["output_tokens"]["p50"] == 5
    real = traces.stats(traces.read(SAMPLE))
    assert real["burstiness_cv"] > 1  # burstier than Poisson, as the Splitwise paper describes
    assert real["rate_per_s"] == pytest.approx(1445 / real["duration_s"], rel=1e-3)


def test_a_trace_workload_is_one_open_loop_phase_with_the_traces_arrivals(tmp_path) -> None:
    (tmp_path / "burst.csv").write_text(BURST)
    w = tmp_path / "w.toml"
    w.write_text('model = "m"\n[arrival]\nmode = "trace"\n[trace]\npath = "burst.csv"\nspeed = 2\n'
                 'model_map = {GPT-4 = "big"}\n[prompt]\nsystem = "Be brief."\n')
    (ph,) = trace.phases(workload.load(w))
    assert ph.mode == "trace" and ph.concurrency is None and ph.source["requests"] == 3
    assert [q.arrival_s for q in ph.requests] == [0.0, 2.5, 6.25]
    assert [q.model for q in ph.requests] == ["big", "m", "m"]  # mapped by the trace's model column
    assert [q.max_tokens for q in ph.requests] == [40, 20, 1]  # at least one token
    q = ph.requests[0]
    assert q.messages[0] == {"role": "system", "content": "Be brief."}
    assert len(q.messages[1]["content"].split()) == q.prompt_words == 300
    assert trace.phases(workload.load(w))[0].requests == ph.requests  # seeded prompts


def test_the_built_in_trace_workload_and_a_bare_trace_file() -> None:
    (ph,) = trace.phases(workload.load(workload.resolve("azure_conv")))
    assert 20 < len(ph.requests) < 80 and max(q.max_tokens for q in ph.requests) <= 32
    w = workload.from_trace("azure_conv_sample.csv", "smollm2")
    assert w.trace.path == str(SAMPLE) and w.arrival.mode == "trace"


@pytest.mark.parametrize("text, match", [
    ('[arrival]\nmode = "trace"\n', "go together"),
    ('[trace]\npath = "x.csv"\n', "go together"),
    ('[arrival]\nmode = "trace"\n[trace]\npath = "x.csv"\nspeed = 0\n', r"trace.speed"),
    ('[arrival]\nmode = "trace"\n[trace]\npath = "x.csv"\nformat = "tsv"\n', "expected one of auto, azure"),
])
def test_bad_trace_tables_name_the_key(text, match) -> None:
    with pytest.raises(workload.WorkloadError, match=match):
        workload.parse(text)


def _args(**kw) -> argparse.Namespace:
    base = dict.fromkeys(("trace_window", "speed", "sample", "token_scale", "max_prompt_tokens",
                          "max_output_tokens", "requests"))
    return argparse.Namespace(workload="w", **{**base, **kw})


def test_command_line_options_override_the_trace_table() -> None:
    w = workload.load(workload.resolve("azure_conv"))
    o = with_trace_options(w, _args(trace_window="30:15", speed=1.0, max_output_tokens=4, requests=3))
    assert (o.trace.start_s, o.trace.duration_s, o.trace.speed, o.trace.max_output_tokens) == (30, 15, 1.0, 4)
    assert o.trace.max_prompt_tokens == 256 and o.requests == 3
    with pytest.raises(MullamaError, match="START:DURATION"):
        with_trace_options(w, _args(trace_window="soon"))
    with pytest.raises(MullamaError, match="trace options"):
        with_trace_options(w, _args(speed=-1.0))
    with pytest.raises(MullamaError, match="no \\[trace\\] table"):
        with_trace_options(workload.load(workload.resolve("baseline")), _args(speed=2.0))
    assert with_trace_options(workload.load(workload.resolve("baseline")), _args(requests=5)).requests == 5
    with pytest.raises(MullamaError, match="at least 1"):
        with_trace_options(w, _args(requests=0))


def test_the_report_puts_the_trace_beside_what_was_sent() -> None:
    source = traces.stats(traces.read(SAMPLE)[:50])
    records = [{"prompt_tokens": 300 + i, "completion_tokens": 40} for i in range(50)]
    md = report.trace_table(source, records)
    assert "| requests | 50 in" in md and "| 50 |" in md and "burstiness" in md
    assert f"{statistics.median(r['prompt_tokens'] for r in records):.0f}" in md


async def test_a_server_without_a_tokenizer_leaves_the_prompts_approximate() -> None:
    from aiohttp import web

    from mullama.bench import client, exact

    app = web.Application()  # no /tokenize: an OpenAI-compatible server that cannot count tokens for us
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    (ph,) = trace.phases(workload.load(workload.resolve("azure_conv")))
    try:
        async with client.session() as session:
            with pytest.raises(exact.FitError, match="/tokenize: HTTP 404"):
                await exact.fit(session, f"http://127.0.0.1:{port}", [ph])
            closed = trace.Phase(label="c=1", mode="closed", concurrency=1, rate=None, requests=ph.requests)
            assert await exact.fit(session, f"http://127.0.0.1:{port}", [closed]) == [closed]  # not a trace
    finally:
        await runner.cleanup()


def test_hash_spreads_a_trace_over_models_and_a_row_keeps_its_model() -> None:
    w = workload.load(workload.resolve("azure_mixed"))
    full = trace.phases(w)[0].requests
    models = [q.model for q in full]
    assert set(models) == {"smollm2:q4_1", "smollm2:q8_0"}
    assert 0.6 < models.count("smollm2:q4_1") / len(models) < 0.95  # weights 4:1
    later = msgspec.structs.replace(w.trace, start_s=20.0, duration_s=40.0)
    cut = trace.phases(msgspec.structs.replace(w, trace=later))[0].requests
    by_time = {round(q.arrival_s, 6): q.model for q in full}  # speed 1: arrival = row time - window start
    both = [(by_time[round(q.arrival_s + 20.0, 6)], q.model) for q in cut if round(q.arrival_s + 20.0, 6) in by_time]
    assert len(both) > 3 and all(a == b for a, b in both)
    assert trace.hashed(["a", "b"], [1, 0], "anything") == "a" and trace.hashed(["a", "b"], None, "k") in "ab"
