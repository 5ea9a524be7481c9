"""Shared by the Observer tests: an observer fixture (a test module takes it with
``observer = observe_checks.observer``), polling, metric samples, stats and profiles, the metric table."""

from __future__ import annotations

import asyncio

import pytest

from mullama import wire
from mullama.observe.events import Observer
from mullama.observe.metrics import Metrics
from mullama.observe.profiles import build_profile

LIVENESS_S = 10.0  # an upper bound for "eventually", never a timing assertion


async def until(predicate, what: str = "condition") -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), LIVENESS_S)
    except TimeoutError:
        pytest.fail(f"{what} never happened")


@pytest.fixture
async def observer():
    obs = Observer(hook_timeout=0.05, process_metrics=False)
    await obs.start()
    yield obs
    await obs.stop(timeout=1.0)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _stats(**over) -> wire.CompletionStats:
    base = dict(prompt_tokens=10, cached_tokens=4, completion_tokens=5, queue_ms=0.5, prefill_ms=20.0,
                ttft_ms=21.0, decode_ms=40.0, total_ms=62.0, inter_token_ms_p50=10.0, inter_token_ms_p95=12.0,
                slot=1, pauses=0, swaps=0)
    return wire.CompletionStats(**{**base, **over})


def _profile(**over) -> dict:
    return build_profile(stats=_stats(**over), model="m", scheduler="fifo", runner_pid=42, queue_ms=3.0,
                         load_ms=0.0, total_ms=70.0, preemptions=0)


METRICS = [  # (name as exposed, type, labels)
    ("mullama_time_to_first_token_seconds", "histogram", {"model"}),
    ("mullama_inter_token_latency_seconds", "histogram", {"model"}),
    ("mullama_request_duration_seconds", "histogram", {"model"}),
    ("mullama_queue_time_seconds", "histogram", {"model"}),
    ("mullama_load_duration_seconds", "histogram", {"model"}),
    ("mullama_requests_running", "gauge", {"model"}),
    ("mullama_requests_waiting", "gauge", {"model"}),
    ("mullama_kv_cache_usage_ratio", "gauge", {"model"}),
    ("mullama_model_memory_bytes", "gauge", {"model", "device"}),
    ("mullama_prompt_tokens_total", "counter", {"model"}),
    ("mullama_generation_tokens_total", "counter", {"model"}),
    ("mullama_prefix_cache_queries_total", "counter", {"model"}),
    ("mullama_prefix_cache_hits_total", "counter", {"model"}),
    ("mullama_preemptions_total", "counter", {"model"}),
    ("mullama_model_loads_total", "counter", {"model"}),
    ("mullama_model_load_failures_total", "counter", {"model"}),
    ("mullama_model_unloads_total", "counter", {"model"}),
    ("mullama_model_swaps_total", "counter", {"model"}),
    ("mullama_model_evictions_total", "counter", {"model"}),
    ("mullama_runner_restarts_total", "counter", {"model"}),
    ("mullama_requests_total", "counter", {"model", "finish_reason"}),
    ("mullama_request_errors_total", "counter", {"model", "type"}),
    ("mullama_events_total", "counter", {"event"}),
    ("mullama_hook_errors_total", "counter", {"reason"}),
    ("mullama_hook_events_dropped_total", "counter", set()),
    ("mullama_event_log_dropped_total", "counter", set()),
    ("mullama_event_subscriber_dropped_total", "counter", set()),
    ("mullama_build_info", "gauge", {"version"}),
]
