"""The supervisor's Prometheus metrics.

``Metrics.request_done`` reads the per-request numbers that ``profiles.build_profile`` defines. Each
``Metrics`` owns its own ``CollectorRegistry``.

Nothing here is module-global: two supervisors in one process (tests do this) never
share a series. Every name carries the ``mullama_`` prefix and, where it makes sense,
a ``model`` label; docs/observability.md lists each metric with its meaning.

Request metrics come from ``request_done`` / ``request_failed`` (one call per request);
lifecycle counters (loads, evictions, crashes, preemptions, swaps) come from the events
the ``Observer`` sees (``on_event``), so a number is counted in exactly one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from mullama import __version__

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0, 600.0)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LOAD_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

#: event kind -> the per-model counter it advances (attribute name on ``Metrics``)
EVENT_COUNTERS: Mapping[str, str] = {
    "model_loading": "model_loads",
    "model_failed": "model_load_failures",
    "model_unloaded": "model_unloads",
    "model_evicted": "model_evictions",
    "swap": "model_swaps",
    "model_swapped": "model_swaps",
    "runner_crashed": "runner_restarts",
    "preempted": "preemptions",
}


def _seconds(ms: Any) -> float:
    try:
        return max(0.0, float(ms)) / 1000.0
    except (TypeError, ValueError):
        return 0.0


def _count(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


class Metrics:
    """Every Prometheus series of one supervisor; ``render()`` is the body of GET /metrics."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        if process:  # the supervisor's own CPU/RSS/fds, as mullama_process_*
            ProcessCollector(namespace="mullama", registry=reg)
        Info("mullama_build", "mullama version", registry=reg).info({"version": __version__})
        m = ("model",)

        # --- histograms (seconds)
        self.ttft = Histogram("mullama_time_to_first_token_seconds",
                              "Runner time to first token (runner queue + prefill + first sample); "
                              "requests that produced no token are not observed", m,
                              buckets=TTFT_BUCKETS, registry=reg)
        self.inter_token = Histogram("mullama_inter_token_latency_seconds",
                                     "Each request's median (p50) gap between two tokens; one observation "
                                     "per request with at least 2 completion tokens", m,
                                     buckets=ITL_BUCKETS, registry=reg)
        self.request_duration = Histogram("mullama_request_duration_seconds",
                                          "End-to-end request time in the supervisor (submit -> final)", m,
                                          buckets=DURATION_BUCKETS, registry=reg)
        self.queue_time = Histogram("mullama_queue_time_seconds",
                                    "Time a request waited for a slot (supervisor queue + runner queue), "
                                    "load waits excluded", m, buckets=QUEUE_BUCKETS, registry=reg)
        self.load_duration = Histogram("mullama_load_duration_seconds",
                                       "Time from model_loading to model_ready for successful loads", m,
                                       buckets=LOAD_BUCKETS, registry=reg)

        # --- gauges
        self.running = Gauge("mullama_requests_running", "Requests holding a runner slot", m, registry=reg)
        self.waiting = Gauge("mullama_requests_waiting", "Requests waiting in the scheduler queue", m,
                             registry=reg)
        self.kv_usage = Gauge("mullama_kv_cache_usage_ratio", "KV cells in use / KV cells in total (0..1)", m,
                              registry=reg)
        self.parked = Gauge("mullama_prefix_cache_host_bytes", "Host memory holding prefix caches out of the KV "
                            "cache (cache_ram)", m, registry=reg)
        self.parked_limit = Gauge("mullama_prefix_cache_host_limit_bytes", "The most host memory the model's prefix "
                                  "caches may hold: its share of what is free (hardware/cache_ram.py)", m, registry=reg)
        self.memory = Gauge("mullama_model_memory_bytes", "Bytes a loaded model holds on a device "
                            "(weights + KV context + compute buffers)", ("model", "device"), registry=reg)
        self.connections = Gauge("mullama_http_connections", "Open client connections", registry=reg)
        self.connections_refused = Counter("mullama_http_connections_refused_total",
                                           "Connections answered 503 past max_connections", registry=reg)
        self.header_timeouts = Counter("mullama_http_header_timeouts_total",
                                       "Connections closed (408) for a request head later than header_timeout",
                                       registry=reg)
        self._connection_totals = (0, 0)
        w = ("worker",)
        self.worker_up = Gauge("mullama_rpc_worker_up", "1: the RPC worker answered its last probe (or a runner "
                               "holds it); 0: not", w, registry=reg)
        self.worker_rtt = Gauge("mullama_rpc_worker_rtt_seconds", "The RPC worker's handshake round trip at its "
                                "last probe", w, registry=reg)
        self.worker_free = Gauge("mullama_rpc_worker_free_bytes", "Free memory an RPC worker's device reported",
                                 ("worker", "device"), registry=reg)
        self.worker_held = Gauge("mullama_rpc_worker_in_use", "1: a loaded model's runner holds the RPC worker",
                                 w, registry=reg)

        # --- counters
        def counter(name: str, doc: str, labels: tuple[str, ...] = m) -> Counter:
            return Counter(name, doc, labels, registry=reg)

        self.prompt_tokens = counter("mullama_prompt_tokens_total", "Prompt tokens of finished requests")
        self.generation_tokens = counter("mullama_generation_tokens_total", "Completion tokens generated")
        self.prefix_queries = counter("mullama_prefix_cache_queries_total",
                                      "Prompt tokens looked up in the prefix (KV) cache")
        self.prefix_hits = counter("mullama_prefix_cache_hits_total",
                                   "Prompt tokens reused from the prefix (KV) cache")
        self.preemptions = counter("mullama_preemptions_total", "Requests preempted (paused or swapped out)")
        self.adapter_waits = counter("mullama_adapter_wait_steps_total",
                                     "Decode steps requests sat out while requests with other LoRA sets ran")
        self.context_shifts = counter("mullama_context_shifts_total",
                                      "Times a stream's context filled and its older half was dropped")
        self.draft_tokens = counter("mullama_speculative_draft_tokens_total",
                                    "Speculative tokens drafted and verified (n-gram drafters or a draft model)")
        self.draft_accepted = counter("mullama_speculative_accepted_tokens_total",
                                      "Speculative tokens the model accepted (acceptance = this / drafted)")
        self.model_loads = counter("mullama_model_loads_total", "Model loads started")
        self.model_load_failures = counter("mullama_model_load_failures_total", "Model loads that failed")
        self.model_unloads = counter("mullama_model_unloads_total", "Models unloaded (any reason)")
        self.model_swaps = counter("mullama_model_swaps_total",
                                   "Hot swaps: this model replaced another in memory")
        self.model_evictions = counter("mullama_model_evictions_total",
                                       "Times this model was evicted for another")
        self.runner_restarts = counter("mullama_runner_restarts_total",
                                       "Runner crashes while serving (each means a restart on demand)")
        self.requests = counter("mullama_requests_total", "Requests ended, by finish reason",
                                ("model", "finish_reason"))
        self.request_errors = counter("mullama_request_errors_total",
                                      "Requests that ended in an error, by type", ("model", "type"))
        self.events = counter("mullama_events_total", "Observer events emitted, by kind", ("event",))
        self.hook_errors = counter("mullama_hook_errors_total", "Hook calls that raised or timed out",
                                   ("reason",))
        self.hook_dropped = Counter("mullama_hook_events_dropped_total",
                                    "Events dropped before reaching hooks (more than max_pending waited)",
                                    registry=reg)
        self.event_log_dropped = Counter("mullama_event_log_dropped_total",
                                         "Events the event log could not keep up with", registry=reg)
        self.subscriber_dropped = Counter("mullama_event_subscriber_dropped_total",
                                          "Events slow live subscribers (/internal/events) lost",
                                          registry=reg)
        # label values currently set on each replaceable gauge
        self._queue_models: dict[Gauge, set[str]] = {self.running: set(), self.waiting: set()}
        self._kv_models: set[str] = set()
        self._devices: dict[str, set[str]] = {}
        # the children of the request and event series, which are never removed (``_child``)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    # ------------------------------------------------------------------ requests

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (each request touches a dozen series)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(self, model: str, profile: Mapping[str, Any], finish_reason: str) -> None:
        """A request that reached the runner's final message: histograms and token counters from its profile.

        Call exactly once per request (``request_failed`` instead when there is no profile).
        ``finish_reason == "error"`` also counts ``mullama_request_errors_total{type="generation_failed"}``.
        """
        completion = _count(profile.get("completion_tokens"))
        prompt = _count(profile.get("prompt_tokens"))
        hit = min(prompt, _count(profile.get("kv_cache_hit")))
        if completion >= 1:
            self._child(self.ttft, model).observe(_seconds(profile.get("time_to_first_token_ms")))
        if completion >= 2:
            self._child(self.inter_token, model).observe(_seconds(profile.get("inter_token_ms_p50")))
        self._child(self.request_duration, model).observe(_seconds(profile.get("total_ms")))
        self._child(self.queue_time, model).observe(_seconds(profile.get("queue_ms")))
        self._child(self.prompt_tokens, model).inc(prompt)
        self._child(self.generation_tokens, model).inc(completion)
        self._child(self.prefix_queries, model).inc(prompt)
        self._child(self.prefix_hits, model).inc(hit)
        self._child(self.adapter_waits, model).inc(_count(profile.get("adapter_waits")))
        self._child(self.context_shifts, model).inc(_count(profile.get("context_shifts")))
        self._child(self.draft_tokens, model).inc(_count(profile.get("draft_tokens")))
        self._child(self.draft_accepted, model).inc(_count(profile.get("draft_accepted")))
        self._child(self.requests, model, finish_reason).inc()
        if finish_reason == "error":
            self._child(self.request_errors, model, "generation_failed").inc()

    def request_failed(self, model: str, error_type: str) -> None:
        """A request that ended in an error without a profile (no fit, load failed, runner gone, ...).

        ``model`` must be a resolved catalog name, or "" when the name did not resolve: never the raw
        client string (it would let clients create unbounded label sets).
        """
        self._child(self.requests, model, "error").inc()
        self._child(self.request_errors, model, error_type).inc()

    # ------------------------------------------------------------------ gauges

    def set_queue(self, running: Mapping[str, int], waiting: Mapping[str, int]) -> None:
        """Replace both queue gauges' label sets: models absent from a mapping lose their series."""
        for gauge, values in ((self.running, running), (self.waiting, waiting)):
            present = self._queue_models[gauge]
            for model in present - values.keys():
                gauge.remove(model)
            for model, n in values.items():
                gauge.labels(model).set(n)
            self._queue_models[gauge] = set(values)

    def set_connections(self, open_: int, refused: int, header_timeouts: int) -> None:
        """The HTTP server's connection gauge and counters (the guard keeps running totals)."""
        self.connections.set(open_)
        last_refused, last_timeouts = self._connection_totals
        self.connections_refused.inc(max(0, refused - last_refused))
        self.header_timeouts.inc(max(0, header_timeouts - last_timeouts))
        self._connection_totals = (refused, header_timeouts)

    def set_kv(self, model: str, ratio: float, parked_bytes: int = 0, parked_limit: int = 0) -> None:
        self.kv_usage.labels(model).set(min(1.0, max(0.0, ratio)))
        self.parked.labels(model).set(parked_bytes)
        self.parked_limit.labels(model).set(parked_limit)
        self._kv_models.add(model)

    def set_memory(self, model: str, per_device: Mapping[str, int]) -> None:
        """Replace the model's per-device series (a device it no longer uses disappears)."""
        present = self._devices.get(model, set())
        for device in present - per_device.keys():
            self.memory.remove(model, device)
        for device, nbytes in per_device.items():
            self.memory.labels(model, device).set(nbytes)
        self._devices[model] = set(per_device)

    def set_workers(self, workers: list[Mapping[str, Any]]) -> None:
        """The RPC workers as ``serving.workers.Workers.describe`` lists them (a fixed set: the configured)."""
        for w in workers:
            name = w["endpoint"]
            self.worker_up.labels(name).set(1 if w["state"] == "ok" or w["held_by"] else 0)
            self.worker_rtt.labels(name).set(w["rtt_ms"] / 1000)
            self.worker_held.labels(name).set(1 if w["held_by"] else 0)
            for d in w["devices"]:
                self.worker_free.labels(name, str(d["index"])).set(d["free"])

    def forget_model(self, model: str) -> None:
        """Drop the model's gauge series (it was unloaded); counters and histograms keep their history."""
        for gauge, present in self._queue_models.items():
            if model in present:
                gauge.remove(model)
                present.discard(model)
        if model in self._kv_models:
            self.kv_usage.remove(model)
            self.parked.remove(model)
            self.parked_limit.remove(model)
            self._kv_models.discard(model)
        for device in self._devices.pop(model, set()):
            self.memory.remove(model, device)

    # ------------------------------------------------------------------ events

    def on_event(self, record: Mapping[str, Any]) -> None:
        """Advance the counter an event stands for (``EVENT_COUNTERS``); model_ready feeds load_duration."""
        kind = record["event"]
        self._child(self.events, kind).inc()
        name = EVENT_COUNTERS.get(kind)
        model = str(record.get("model") or "")
        if name is not None:
            self._child(getattr(self, name), model).inc()
        elif kind == "model_ready" and "load_ms" in record:
            self._child(self.load_duration, model).observe(_seconds(record["load_ms"]))

    # ------------------------------------------------------------------ exposition

    def render(self) -> tuple[bytes, str]:
        """(body, content type) for GET /metrics, Prometheus text format (without ``*_created`` series)."""
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE_LATEST


class _WithoutCreated:
    """The registry minus prometheus_client's ``*_created`` timestamps: they would double the body and
    show up as extra gauges in Prometheus; turning them off library-wide would be global state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self):
        for family in self._registry.collect():
            if family.type in ("counter", "histogram", "summary", "gaugehistogram"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
