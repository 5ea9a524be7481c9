"""The per-second series behind GET /internal/stats: rates from the runners' counters, latency
percentiles over a window of finished requests, restarts, bounds."""

from __future__ import annotations

from mullama.observe.series import Series, percentile


def _profile(ttft: float, itl: float, tokens: int = 10) -> dict:
    return {"completion_tokens": tokens, "prompt_tokens": 5, "time_to_first_token_ms": ttft,
            "inter_token_ms_p50": itl}


def _sample(series: Series, mono: float, counters: dict, **kw) -> dict:
    return series.sample(1000.0 + mono, mono, running=kw.get("running", 0), waiting=kw.get("waiting", 0),
                         memory=kw.get("memory", {}), counters=counters)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 95) == 95.0 and percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0


def test_rates_come_from_counter_deltas_over_the_elapsed_time() -> None:
    s = Series()
    _sample(s, 0.0, {"a": (0, 0)})
    row = _sample(s, 2.0, {"a": (100, 40), "b": (10, 20)}, running=3, waiting=2, memory={"a": 5})
    assert row["tokens_per_s"] == 30.0 and row["prompt_tokens_per_s"] == 55.0
    assert row["running"] == 3 and row["waiting"] == 2 and row["memory"] == {"a": 5}
    row = _sample(s, 3.0, {"a": (100, 50)})  # b not asked this time: nothing from it
    assert row["tokens_per_s"] == 10.0


def test_a_restarted_runner_counts_from_zero() -> None:
    s = Series()
    _sample(s, 0.0, {"a": (100, 100)})
    row = _sample(s, 1.0, {"a": (5, 7)})  # counts went down: a new process
    assert row["tokens_per_s"] == 7.0 and row["prompt_tokens_per_s"] == 5.0
    s.forget("a")
    row = _sample(s, 2.0, {"a": (1, 3)})
    assert row["tokens_per_s"] == 3.0


def test_latency_percentiles_cover_the_window_and_then_go_null() -> None:
    s = Series(window=30.0)
    for i, (ttft, itl) in enumerate([(100.0, 10.0), (200.0, 20.0), (300.0, 30.0)]):
        s.request_done(float(i), _profile(ttft, itl))
    s.request_done(3.0, _profile(0.0, 0.0, tokens=0))  # no token: counts as a request, not as a latency
    row = _sample(s, 4.0, {})
    assert row["ttft_ms_p50"] == 200.0 and row["ttft_ms_p95"] == 300.0 and row["itl_ms_p50"] == 20.0
    assert row["requests_per_s"] > 0
    row = _sample(s, 40.0, {})
    assert row["ttft_ms_p50"] is None and row["itl_ms_p95"] is None and row["requests_per_s"] == 0.0


def test_one_token_has_a_first_token_time_but_no_inter_token_gap() -> None:
    s = Series()
    s.request_done(0.0, _profile(50.0, 0.0, tokens=1))
    row = _sample(s, 1.0, {})
    assert row["ttft_ms_p50"] == 50.0 and row["itl_ms_p50"] is None


def test_samples_are_bounded_and_read_since_a_time() -> None:
    s = Series(keep=5)
    for i in range(8):
        _sample(s, float(i), {})
    assert len(s.samples) == 5 and s.samples[0]["t"] == 1003.0
    assert [r["t"] for r in s.since(1005.0)] == [1006.0, 1007.0]
    assert s.since(None) == list(s.samples) and s.since(9999.0) == []
    assert s.describe()["interval_s"] == 1.0
