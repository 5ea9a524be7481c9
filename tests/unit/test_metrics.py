"""Observer: Prometheus metrics."""

from __future__ import annotations

import observe_checks
import pytest
from observe_checks import METRICS, _profile, sample, until
from prometheus_client.parser import text_string_to_metric_families

from mullama.observe.events import Observer
from mullama.observe.metrics import EVENT_COUNTERS, Metrics

observer = observe_checks.observer  # the fixture: a started Observer


# ---------------------------------------------------------------------- metrics


def _families(metrics: Metrics) -> dict:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


async def test_render_has_every_metric_with_type_and_labels(observer: Observer) -> None:
    m = observer.metrics
    m.request_done("m", _profile(), "stop")
    m.request_failed("m", "no_fit")
    m.set_queue({"m": 1}, {"m": 2})
    m.set_kv("m", 0.25)
    m.set_memory("m", {"CUDA0": 1 << 30, "CPU": 1 << 20})
    for kind in ("model_loading", "model_ready", "model_failed", "model_unloaded", "model_evicted", "swap",
                 "runner_crashed", "preempted"):
        observer.emit(kind, model="m", load_ms=2000.0)
    observer.hooks.register("finished", lambda r: 1 / 0)
    observer.emit("finished")
    await until(lambda: observer.hooks.errors == 1, "the failing hook")
    families = _families(m)
    for name, kind, labels in METRICS:
        family = families.get(name.removesuffix("_total") if kind == "counter" else name)
        assert family is not None, f"{name} missing"
        assert family.type == kind, name
        assert family.samples, f"{name} has no samples"
        for s in family.samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)


def test_process_metrics_are_prefixed() -> None:
    names = set(_families(Metrics(process=True)))
    assert all(n.startswith("mullama_") for n in names)


def test_observers_do_not_share_series() -> None:
    a, b = Observer(process_metrics=False), Observer(process_metrics=False)
    a.metrics.request_failed("m", "no_fit")
    assert sample(a.metrics, "mullama_requests_total", model="m", finish_reason="error") == 1
    assert sample(b.metrics, "mullama_requests_total", model="m", finish_reason="error") is None


@pytest.mark.parametrize(("kind", "metric"), sorted(EVENT_COUNTERS.items()))
def test_each_counted_event_advances_its_counter(kind: str, metric: str) -> None:
    obs = Observer(process_metrics=False)
    obs.emit(kind, model="m")
    obs.emit(kind, model="m")
    obs.emit(kind)  # no model: counted under model=""
    name = getattr(obs.metrics, metric)._name + "_total"
    assert sample(obs.metrics, name, model="m") == 2
    assert sample(obs.metrics, name, model="") == 1


def test_load_histogram_comes_only_from_model_ready_with_load_ms() -> None:
    obs = Observer(process_metrics=False)
    obs.emit("model_ready", model="m")             # no load_ms: not observed
    obs.emit("model_ready", model="m", load_ms=-5)  # clamped to 0
    obs.emit("model_ready", model="m", load_ms="garbage")
    assert sample(obs.metrics, "mullama_load_duration_seconds_count", model="m") == 2
    assert sample(obs.metrics, "mullama_load_duration_seconds_sum", model="m") == 0


def test_request_done_feeds_counters_and_histograms() -> None:
    m = Metrics(process=False)
    m.request_done("m", _profile(), "stop")
    m.request_done("m", _profile(completion_tokens=1, decode_ms=0.0), "length")
    m.request_done("m", _profile(completion_tokens=0, ttft_ms=0.0, decode_ms=0.0), "error")
    assert sample(m, "mullama_prompt_tokens_total", model="m") == 30
    assert sample(m, "mullama_generation_tokens_total", model="m") == 6
    assert sample(m, "mullama_prefix_cache_queries_total", model="m") == 30
    assert sample(m, "mullama_prefix_cache_hits_total", model="m") == 12
    assert sample(m, "mullama_time_to_first_token_seconds_count", model="m") == 2   # not the 0-token one
    assert sample(m, "mullama_time_to_first_token_seconds_sum", model="m") == pytest.approx(0.042)
    assert sample(m, "mullama_inter_token_latency_seconds_count", model="m") == 1   # only >= 2 tokens
    assert sample(m, "mullama_inter_token_latency_seconds_sum", model="m") == pytest.approx(0.010)
    assert sample(m, "mullama_request_duration_seconds_count", model="m") == 3
    assert sample(m, "mullama_queue_time_seconds_sum", model="m") == pytest.approx(3 * 0.0035)
    assert sample(m, "mullama_requests_total", model="m", finish_reason="error") == 1
    assert sample(m, "mullama_request_errors_total", model="m", type="generation_failed") == 1


def test_errors_total_matches_error_requests() -> None:
    m = Metrics(process=False)
    m.request_failed("", "model_not_found")
    m.request_failed("m", "no_fit")
    m.request_done("m", {}, "error")  # a profile missing every field still counts
    families = _families(m)
    errors = sum(s.value for s in families["mullama_request_errors"].samples if s.name.endswith("_total"))
    failed = sum(s.value for s in families["mullama_requests"].samples
                 if s.name.endswith("_total") and s.labels["finish_reason"] == "error")
    assert errors == failed == 3


def test_set_queue_replaces_label_sets() -> None:
    m = Metrics(process=False)
    m.set_queue({"a": 2, "b": 1}, {"a": 5})
    m.set_queue({"b": 3}, {"c": 1})
    assert sample(m, "mullama_requests_running", model="a") is None
    assert sample(m, "mullama_requests_running", model="b") == 3
    assert sample(m, "mullama_requests_waiting", model="a") is None
    assert sample(m, "mullama_requests_waiting", model="c") == 1
    m.set_queue({}, {})
    assert not _families(m)["mullama_requests_running"].samples
    assert not _families(m)["mullama_requests_waiting"].samples


def test_set_memory_replaces_devices_and_forget_model_clears_gauges() -> None:
    m = Metrics(process=False)
    m.set_memory("a", {"CUDA0": 100, "CPU": 10})
    m.set_memory("a", {"CPU": 20})
    m.set_memory("b", {"CUDA0": 7})
    m.set_kv("a", 1.7)   # clamped
    m.set_kv("b", -1)
    m.set_queue({"a": 1, "b": 1}, {"a": 0})
    assert sample(m, "mullama_model_memory_bytes", model="a", device="CUDA0") is None
    assert sample(m, "mullama_model_memory_bytes", model="a", device="CPU") == 20
    assert sample(m, "mullama_kv_cache_usage_ratio", model="a") == 1.0
    assert sample(m, "mullama_kv_cache_usage_ratio", model="b") == 0.0
    m.request_failed("a", "no_fit")
    m.forget_model("a")
    m.forget_model("a")          # twice: no error
    m.forget_model("never-seen")
    gone = [("mullama_model_memory_bytes", {"device": "CPU"}), ("mullama_kv_cache_usage_ratio", {}),
            ("mullama_requests_running", {}), ("mullama_requests_waiting", {})]
    for name, labels in gone:
        assert sample(m, name, model="a", **labels) is None, name
    assert sample(m, "mullama_model_memory_bytes", model="b", device="CUDA0") == 7
    assert sample(m, "mullama_requests_running", model="b") == 1
    assert sample(m, "mullama_requests_total", model="a", finish_reason="error") == 1  # history stays
    m.set_queue({"a": 1}, {})    # a model that comes back is tracked again
    assert sample(m, "mullama_requests_running", model="a") == 1
