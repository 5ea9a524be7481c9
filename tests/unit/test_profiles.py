"""Observer: X-Profile (``build_profile``) and its documentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from observe_checks import METRICS, _profile, _stats

from mullama.observe.events import EVENTS
from mullama.observe.profiles import build_profile

# ---------------------------------------------------------------------- X-Profile


@pytest.mark.parametrize(("stats", "kwargs", "expected"), [
    # an ordinary request: 5 tokens, 4 gaps in 40 ms -> 100 tok/s
    ({}, {}, {"prompt_tokens": 10, "kv_cache_hit": 4, "kv_cache_miss": 6, "completion_tokens": 5,
              "queue_ms": 3.5, "prefill_ms": 20.0, "time_to_first_token_ms": 21.0, "decode_ms": 40.0,
              "tokens_per_second": 100.0, "inter_token_ms_p50": 10.0, "inter_token_ms_p95": 12.0,
              "total_ms": 70.0, "slot": 1}),
    # rounding to 3 decimals; tokens/s from the rounded decode time
    ({"decode_ms": 33.33333333, "ttft_ms": 1.23456, "prefill_ms": 0.0004}, {"total_ms": 2.0 / 3},
     {"decode_ms": 33.333, "tokens_per_second": round(4 / 0.033333, 3), "time_to_first_token_ms": 1.235,
      "prefill_ms": 0.0, "total_ms": 0.667}),
    # one token: no gaps, no rate
    ({"completion_tokens": 1, "decode_ms": 0.0, "inter_token_ms_p50": 0.0, "inter_token_ms_p95": 0.0}, {},
     {"tokens_per_second": 0.0, "inter_token_ms_p50": 0.0, "decode_ms": 0.0, "time_to_first_token_ms": 21.0}),
    # no token at all (cancelled in prefill, max_tokens=0): no time to first token
    ({"completion_tokens": 0, "decode_ms": 0.0}, {},
     {"tokens_per_second": 0.0, "time_to_first_token_ms": 0.0, "completion_tokens": 0}),
    # 2 tokens but a zero decode span (same step): no division by zero
    ({"completion_tokens": 2, "decode_ms": 0.0}, {}, {"tokens_per_second": 0.0}),
    # empty prompt
    ({"prompt_tokens": 0, "cached_tokens": 0}, {}, {"kv_cache_hit": 0, "kv_cache_miss": 0}),
    # whole prompt cached; inconsistent runner numbers are clamped so hit + miss == prompt
    ({"cached_tokens": 10}, {}, {"kv_cache_hit": 10, "kv_cache_miss": 0}),
    ({"cached_tokens": 15}, {}, {"kv_cache_hit": 10, "kv_cache_miss": 0}),
    ({"cached_tokens": -2, "queue_ms": -1.0}, {"queue_ms": -5.0, "load_ms": -1.0, "preemptions": -1},
     {"kv_cache_hit": 0, "kv_cache_miss": 10, "queue_ms": 0.0, "load_ms": 0.0, "preemptions": 0}),
    # supervisor spans pass through; kv evictions and preemptions are the caller's
    ({}, {"load_ms": 1234.56789, "kv_evicted": 3, "preemptions": 2, "runner_pid": None},
     {"load_ms": 1234.568, "kv_cache_evict": 3, "preemptions": 2, "runner_pid": None}),
])
def test_build_profile(stats: dict, kwargs: dict, expected: dict) -> None:
    args = dict(model="m", scheduler="fifo", runner_pid=42, queue_ms=3.0, load_ms=0.0, total_ms=70.0,
                preemptions=0)
    profile = build_profile(stats=_stats(**stats), **{**args, **kwargs})
    for key, value in expected.items():
        assert profile[key] == value, key
    assert profile["kv_cache_hit"] + profile["kv_cache_miss"] == profile["prompt_tokens"]
    assert profile["model"] == "m" and profile["scheduler"] == "fifo"
    for key, value in profile.items():
        if isinstance(value, float):
            assert value == round(value, 3) and value >= 0, key
    if profile["completion_tokens"] >= 2 and profile["decode_ms"] > 0:
        rate = (profile["completion_tokens"] - 1) / (profile["decode_ms"] / 1000)
        assert profile["tokens_per_second"] == round(rate, 3)
    assert json.loads(json.dumps(profile)) == profile


def test_profile_fields_are_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    for key in _profile():
        assert f"`{key}`" in doc, key
    for name, _, _ in METRICS:
        assert f"`{name}`" in doc, name
    for kind in EVENTS:
        assert f"`{kind}`" in doc, kind
