"""The ``/internal/*`` and ``/metrics`` part of the OpenAPI document; ``openapi_spec.spec`` merges it.

These routes show the server's insides, so their bodies are the records that ``scheduler.py``
(``Scheduler.snapshot``), ``internal_api.model_view``, ``swapping.py`` and ``prefetch.py`` build,
and the runner's ``wire.KvView``. The schemas list the fields those build today, typed as that
code types them: nullable wherever it can put None (and where msgspec writes a non-finite float,
which it writes as null), extra properties allowed, so a field added there never makes the document
lie. Wire types are generated from their Structs/dataclasses (``KvView``, ``RunnerConfig``), never
copied. Kept apart from ``openapi_spec.py`` because that file holds the OpenAI contract and is at its
size limit. Pure: builds dicts, touches nothing.
"""

from __future__ import annotations

import msgspec

from mullama import wire
from mullama.config import RunnerConfig
from mullama.http.openapi.schema import (
    BOOL as _BOOL,
)
from mullama.http.openapi.schema import (
    INT as _INT,
)
from mullama.http.openapi.schema import (
    NUM as _NUM,
)
from mullama.http.openapi.schema import (
    STR as _STR,
)
from mullama.http.openapi.schema import (
    Schema,
)
from mullama.http.openapi.schema import (
    array as _array,
)
from mullama.http.openapi.schema import (
    obj as _obj,
)
from mullama.http.openapi.schema import (
    ref as _ref,
)
from mullama.serving.policies import POLICIES
from mullama.serving.runtime import State

TAG: Schema = {"name": "internal",
               "description": "Inside serving: scheduler, model lifecycle, KV cache, live events, metrics"}

_OPT_STR, _OPT_INT = {"type": ["string", "null"]}, {"type": ["integer", "null"]}
_OPT_NUM = {"type": ["number", "null"]}
_TIME = {**_NUM, "description": "wall clock, Unix seconds"}
_SWITCH_MODES = ["unchanged", "parallel", "drain"]  # Variants.switch's "mode"


_LATENCIES = (("ttft", "time to first token"), ("itl", "inter-token latency (each request's median)"))


def _map(values: Schema, keys: str) -> Schema:
    return {"type": "object", "additionalProperties": values, "description": f"keyed by {keys}"}


def _generated() -> dict[str, Schema]:
    """``wire.KvView`` (and its ``SlotView``) and ``config.RunnerConfig``, as msgspec describes them,
    less ``additionalProperties: false`` (the routes add fields) and titles."""
    _, components = msgspec.json.schema_components([wire.KvView, RunnerConfig, wire.AdapterInfo, wire.AdapterSpec],
                                                   ref_template="#/components/schemas/{name}")
    for schema in components.values():
        schema.pop("title", None)
        schema.pop("additionalProperties", None)
    return msgspec.json.decode(msgspec.json.encode(components))  # defaults as JSON has them (tuples -> lists)


# ---------------------------------------------------------------------- schemas


def _scheduler_schemas() -> dict[str, Schema]:
    queued = _obj({
        "id": _STR, "model": _STR, "user": {**_STR, "description": "the fairness key"}, "priority": _INT,
        "deadline_in_ms": {**_OPT_NUM, "description": "negative once missed; null: no deadline"},
        "age_ms": _NUM, "position": {**_INT, "description": "0 is dispatched next"},
        "state": {**_STR, "examples": ["queued", "paused"]}, "preemptions": _INT,
        "adapters": {**_OPT_STR, "description": "the LoRA set it asks for, 'id:scale,...'; '' or null: none"}},
        "*")
    running = _obj({"id": _STR, "user": _STR, "priority": _INT, "age_ms": _NUM, "queue_ms": _NUM,
                    "preemptions": _INT,
                    "slot": {**_OPT_INT, "description": "the runner slot; null when the runner did not say"}},
                   ("id", "user", "priority", "age_ms", "queue_ms", "preemptions"))
    return {
        "QueuedRequest": queued,
        "RunningRequest": running,
        "SchedulerView": _obj({
            "policy": _STR, "queue": _array(_ref("QueuedRequest")),
            "running": _map(_array(_ref("RunningRequest")), "model"),
            "waiting": _map(_INT, "model"), "counters": _map(_INT, "counter name"),
            "n_parallel": _map(_INT, "model"),
            "policies": {**_array(_STR), "description": "what POST /internal/scheduler accepts: the built-ins "
                                                        "and the configured custom policy"}}, "*"),
        "PolicyRequest": {**_obj({"policy": {
            **_STR, "minLength": 1, "examples": list(POLICIES),
            "description": "A built-in policy (case-insensitive, '-' for '_') or 'package.module:Class'; "
                           "queued requests carry over to it."}}, ("policy",)),
                          "additionalProperties": False},
        "PolicyChange": _obj({"policy": _STR, "previous": _STR}, "*"),
    }


def _model_schemas() -> dict[str, Schema]:
    device_use = _obj({"device": _STR, "description": _STR, "type": _STR, "total": _INT, "free": _INT,
                       "model": _INT, "context": _INT, "compute": _INT}, "*")
    placement = _obj({"n_gpu_layers": _INT, "tensor_split": _array(_NUM), "layers_per_gpu": _array(_INT),
                      "gpu_bytes": _array(_INT), "cpu_bytes": _INT, "output_on_gpu": _BOOL,
                      "full_offload": _BOOL, "processor": _STR, "total_bytes": _INT,
                      "pinned_cpu_bytes": {**_INT, "description": "weights tensor overrides keep in RAM"},
                      "remote": _array(_obj({"device": {**_STR, "description": "host:port#index"}, "layers": _INT,
                                             "bytes": _INT}, "*")),
                      "rpc_servers": _array(_STR)}, "*")
    transition = _obj({"state": {"enum": [str(s) for s in State]}, "at": _TIME, "mono": _NUM}, "*")
    load = _obj({"at": _TIME, "reason": _STR, "ok": _BOOL, "load_ms": _NUM, "error": _OPT_STR,
                 "processor": _STR, "memory": _INT, "crash": _BOOL, "code": _OPT_INT, "in_flight": _INT,
                 "stderr_tail": _array(_STR)}, ("at",))
    runtime = _obj({
        "name": _STR, "family": _STR, "variant": _STR, "state": {"enum": [str(s) for s in State]},
        "progress": _NUM, "error": _OPT_STR, "pinned": _BOOL, "pid": _OPT_INT, "port": _OPT_INT,
        "in_flight": _INT, "waiting": _INT,
        "keep_alive": {**_OPT_NUM, "description": "seconds; negative: forever"},
        "expires_at": {**_OPT_NUM, "description": "Unix seconds; null: never, or while in use"},
        "memory": {**_INT, "description": "bytes"}, "devices": _array(device_use),
        "cpu": {"anyOf": [{"type": "null"}, _obj({"cores": _array(_INT), "threads": _INT}, "*")],
                "description": "the cores its threads run on and its decode threads (cpu_allotment); null: none"},
        "cache_ram": {**_OPT_INT, "description": "bytes of host memory its parked prefix caches may hold, its share "
                      "(hardware/cache_ram.py); null: none given"},
        "placement": {"anyOf": [{"type": "null"}, placement]}, "n_ctx": _INT, "crashes": _INT,
        "config": _ref("RunnerConfig"), "history": _array(transition),
        "loads": {**_array(load), "description": "loads, failed loads and crashes, oldest first"}}, "*")
    gpu = _obj({"index": _INT, "name": _STR, "uuid": _STR, "total": _INT, "free": _INT}, "*")
    host = _obj({"ram_total": _INT, "ram_available": _INT, "swap_total": _INT, "swap_free": _INT}, "*")
    devices = _obj({"gpus": _array(gpu), "host": host, "vram_total": _INT, "vram_free": _INT,
                    "cpu_only": _BOOL}, "*")
    worker = _obj({"endpoint": _STR, "state": {"enum": ["ok", "busy", "unreachable", "incompatible", "unknown"]},
                   "error": _STR, "rtt_ms": _NUM, "version": _STR, "probed_at": _NUM,
                   "held_by": {**_OPT_STR, "description": "the model whose runner uses it (one at a time)"},
                   "devices": _array(_obj({"index": _INT, "free": _INT, "total": _INT}, "*"))}, "*")
    swap = _obj({"family": _STR, "variant": _STR, "model": _STR, "previous": _STR,
                 "mode": {"enum": _SWITCH_MODES}, "swap_ms": _NUM, "at": _TIME},
                ("family", "variant", "model", "previous", "mode", "swap_ms"))
    prediction = {"anyOf": [{"type": "null"}, _obj({"model": _STR, "confidence": _NUM}, "*")]}
    predictor = _obj({"name": _STR, "min_observations": _INT, "decay": _NUM, "last": _OPT_STR,
                      "requests": _INT, "switches": _map(_INT, "model"),
                      "transitions": _map(_map(_NUM, "next model"), "model"),
                      "predictions": _map(prediction, "model")}, ("name",))
    prefetched = _obj({"model": _STR, "from": _STR, "confidence": _NUM, "evict": _BOOL, "at": _TIME,
                       "ok": _BOOL, "error": _STR}, ("model", "from", "confidence", "evict", "at"))
    prefetch = _obj({
        "predictor": {"anyOf": [{"type": "null"}, predictor],
                      "description": "null: prefetch is off; a custom predictor says its own fields"},
        "idle_s": _NUM, "min_confidence": _NUM, "last": _OPT_STR, "history": _array(prefetched)}, "*")
    return {
        "ModelRuntime": runtime,
        "VariantSwitch": {**swap, "description": "'at' is absent when nothing changed"},
        "InternalModels": _obj({
            "models": _array(_ref("ModelRuntime")), "counters": _map(_INT, "counter name"),
            "memory_budget": {**_OPT_INT, "description": "bytes; null: no budget"},
            "max_loaded_models": {**_INT, "description": "0: no limit"}, "devices": devices,
            "rpc_workers": {**_array(worker), "description": "the configured RPC workers (docs/scale-out.md)"},
            "variants": _map(_STR, "family: the variant chosen at run time"),
            "serving_variants": _map(_STR, "family: the variant that serves it now (chosen at run time, "
                                           "else the catalog's default)"),
            "swaps": _array(_ref("VariantSwitch")), "prefetch": prefetch}, "*"),
        "VariantRequest": {**_obj({"variant": {**_STR, "examples": ["q8_0", "q4_k_m"]}}, ("variant",)),
                           "additionalProperties": False},
        "KvCache": {"allOf": [_ref("KvView"), _obj({
            "model": _STR, "usage_ratio": {**_NUM, "minimum": 0, "description": "cells_used / cells_total"}},
            "*")]},
        "AdapterList": _obj({"model": _STR, "adapters": _array(_ref("AdapterInfo"))}, ("model", "adapters")),
        "AdapterAdded": _obj({"model": _STR, "adapter": _ref("AdapterInfo")}, ("model", "adapter")),
        "PinRequest": {**_obj({"pinned": {**_BOOL, "description": "true: never evicted nor expired; false: "
                                                                  "evictable again, whatever the config says"}},
                               ("pinned",)), "additionalProperties": False},
        "StatsSample": _obj({
            "t": _TIME, "tokens_per_s": {**_NUM, "description": "generated tokens, counted by the runners"},
            "prompt_tokens_per_s": _NUM, "requests_per_s": {**_NUM, "description": "requests that finished"},
            **{f"{m}_ms_{q}": {**_OPT_NUM, "description": f"{what}, {q} over the requests that finished in the "
                                                         "last window_s; null when none did"}
               for m, what in _LATENCIES for q in ("p50", "p95")},
            "running": {**_INT, "description": "requests holding a runner slot"},
            "waiting": {**_INT, "description": "requests in the scheduler queue"},
            "memory": _map(_INT, "loaded model: bytes it holds")}, "*"),
        "Stats": _obj({"interval_s": _NUM, "window_s": _NUM, "samples": {
            **_array(_ref("StatsSample")), "description": "oldest first; the last hour is kept"}},
            ("interval_s", "window_s", "samples")),
        "Event": _obj({"event": _STR, "mono": {**_NUM, "description": "time.monotonic() at emit"},
                       "time": {**_STR, "format": "date-time"}}, "*"),
    }


def schemas() -> dict[str, Schema]:
    """The internal routes' components; no name is shared with ``openapi_spec``'s."""
    return {**_scheduler_schemas(), **_model_schemas(), **_generated()}


# ---------------------------------------------------------------------- paths


def _error(code: int, description: str | None = None) -> Schema:
    if description is None:
        return {"$ref": f"#/components/responses/E{code}"}
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _op(op_id: str, summary: str, content: Schema, errors: dict[int, str | None], *, body: str | None = None,
        params: list[Schema] | None = None, description: str | None = None) -> Schema:
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [TAG["name"]],
                  "responses": {"200": {"description": "OK", "content": content},
                                **{str(c): _error(c, text) for c, text in sorted(errors.items())},
                                "default": {"$ref": "#/components/responses/Error"}}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def _json(name: str) -> Schema:
    return {"application/json": {"schema": _ref(name)}}


_READ: dict[int, str | None] = {401: None, 500: None}
_BAD_BODY = "Invalid request body"


def paths() -> dict[str, Schema]:
    family = {"name": "family", "in": "path", "required": True, "schema": {**_STR, "minLength": 1},
              "description": "Model family, e.g. 'smollm2'."}
    model = {"name": "model", "in": "path", "required": True, "schema": {**_STR, "minLength": 1},
             "description": "Model name: 'family', 'family:variant', an alias or a file name."}
    backlog = {"name": "backlog", "in": "query", "required": False,
               "schema": {**_INT, "minimum": 0, "maximum": 100_000, "default": 0},
               "description": "Send up to this many recent events first (at most 1000 are kept)."}
    follow = {"name": "follow", "in": "query", "required": False, "schema": {**_STR, "default": "1"},
              "description": "'0', 'false' or 'no': end after the backlog instead of following live."}
    # each event as an object of its fields (how OpenAPI 3.1 tools read a text/event-stream schema)
    event = {"type": "object", "required": ["data"], "properties": {
        "event": _STR, "id": _STR, "retry": _INT,
        "data": {**_STR, "contentMediaType": "application/json", "contentSchema": _ref("Event")}},
        "description": "Server-sent events, without end unless follow=0: a ': mullama events' comment, "
                       "then 'event: <kind>' + 'data: <Event JSON>' per event."}
    events = {"text/event-stream": {"schema": event, "x-sse-event": _ref("Event")}}
    since = {"name": "since", "in": "query", "required": False, "schema": {**_NUM, "minimum": 0},
             "description": "Only samples taken after this Unix time (seconds); all kept when absent."}
    ui_path = {"name": "path", "in": "path", "required": True, "schema": {**_STR, "minLength": 1},
               "description": "A file under the package's mullama/ui/static, e.g. 'js/app.js'."}
    ui_files = {t: {"schema": _STR} for t in ("text/html", "text/javascript", "text/css", "text/plain",
                                              "image/png", "image/svg+xml", "application/json")}
    metrics = {"text/plain": {"schema": {**_STR, "description": "Prometheus text exposition format"}}}
    swap_errors: dict[int, str | None] = {
        400: "Invalid request body, or the variant is of another family", 401: None,
        404: "No such family or variant", 409: "A switch of this family is already in progress", 413: None,
        422: None, 500: None, 502: None, 503: None, 507: None}
    adapter_errors: dict[int, str | None] = {
        400: "Invalid body, or not a LoRA adapter of this model", 401: None, 404: None, 413: None, 500: None,
        502: "The runner failed to answer", 503: "The model is not loaded"}
    return {
        "/internal/scheduler": {
            "get": _op("getScheduler",
                       "The scheduler: policy, queue with positions, in-flight per model and slot",
                       _json("SchedulerView"), _READ),
            "post": _op("setSchedulerPolicy", "Switch the scheduling policy now", _json("PolicyChange"),
                        {400: "Invalid body or unknown policy", 401: None, 413: None, 500: None},
                        body="PolicyRequest", description="Queued requests carry over to the new policy."),
        },
        "/internal/models": {"get": _op(
            "getModelRuntimes", "Every model's lifecycle: state, history, loads, crashes, memory per device",
            _json("InternalModels"), _READ)},
        "/internal/models/{family}/variant": {"post": _op(
            "switchVariant", "Hot-swap the variant that serves a family", _json("VariantSwitch"), swap_errors,
            body="VariantRequest", params=[family],
            description="Answers once the new variant serves; running requests finish on the old one.")},
        "/internal/models/{model}/pin": {"post": _op(
            "pinModel", "Pin a model (never evicted, no keep-alive expiry) or unpin it, at run time",
            _json("ModelRuntime"), {400: "Invalid body or model name", 401: None, 404: None, 413: None,
                                    422: None, 500: None},
            body="PinRequest", params=[model], description="Lasts until the server stops or it is changed again.")},
        "/internal/stats": {"get": _op(
            "getStats", "Serving second by second: throughput, latency percentiles, queue depth, memory",
            _json("Stats"), {400: "Invalid since", 401: None, 500: None}, params=[since],
            description="For charts (the dashboard's); /metrics holds the running totals.")},
        "/ui": {"get": _op("dashboardRedirect", "The web dashboard (redirects to /ui/)", ui_files, {},
                           description="A browser opening / is redirected to /ui/ as well.")},
        "/ui/": {"get": _op("dashboard", "The web dashboard's page (no API key needed: the page asks for one)",
                            ui_files, {})},
        "/ui/{path}": {"get": _op("dashboardFile", "The dashboard's scripts, styles and vendored libraries",
                                  ui_files, {404: "No such file"}, params=[ui_path])},
        "/internal/kv/{model}": {"get": _op(
            "getKvCache", "A loaded model's KV cache: slots and prefix-cache counters", _json("KvCache"),
            {400: "Invalid model name", 401: None, 404: None, 422: None, 500: None,
             502: "The runner failed to answer", 503: "The model is not loaded",
             504: "The runner did not answer in time (frozen)"}, params=[model])},
        "/internal/models/{model}/adapters": {
            "get": _op("listAdapters", "A loaded model's LoRA adapters", _json("AdapterList"), adapter_errors,
                       params=[model]),
            "post": _op("addAdapter", "Load a LoRA adapter into a loaded model", _json("AdapterAdded"),
                        adapter_errors, body="AdapterSpec", params=[model],
                        description="A path already loaded answers with its entry; ids are never reused. "
                                    "Requests choose adapters with lora: [{id or name, scale}]."),
        },
        "/internal/models/{model}/adapters/{id}": {"delete": _op(
            "removeAdapter", "Unload a LoRA adapter (freed once the requests using it end)", _json("AdapterList"),
            {**adapter_errors, 404: "No such model, or no adapter with this id"},
            params=[model, {"name": "id", "in": "path", "required": True, "schema": {**_INT, "minimum": 0}}])},
        "/internal/events": {"get": _op(
            "streamEvents", "Live events (server-sent events)", events,
            {400: "Invalid backlog", 401: None, 500: None}, params=[backlog, follow],
            description="The stream does not end by itself; see docs/observability.md for the event kinds.")},
        "/metrics": {"get": _op("metrics", "Prometheus metrics", metrics, _READ,
                                description="See docs/observability.md for the series.")},
    }
