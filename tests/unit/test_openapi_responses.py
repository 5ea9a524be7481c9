"""The OpenAPI response schemas fit what the server formats (OpenAI, management and internal shapes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_checks import (
    component,
)

from mullama import wire
from mullama.http.openai import format as openai
from mullama.serving.generation import Answer

# ---------------------------------------------------------------------- responses the server formats

STATS = wire.CompletionStats(prompt_tokens=3, cached_tokens=1, completion_tokens=2, queue_ms=0.0,
                                 prefill_ms=1.0, ttft_ms=1.0, decode_ms=1.0, total_ms=2.0,
                                 inter_token_ms_p50=0.5, inter_token_ms_p95=0.9, slot=0, pauses=0, swaps=0)
FINAL = wire.CompletionFinal(id="r", content="", tokens=[1, 2], finish_reason="length", stats=STATS)
HEAD = {"id": "chatcmpl-1", "created": 1, "model": "smollm2:q8_0"}
LPS = [wire.TokenLogprob(token=5, text="hi", bytes=[104, 105], logprob=-0.1,
                         top=[wire.TopLogprob(token=5, text="hi", bytes=[104, 105], logprob=-0.1)])]
ANSWERS = [Answer(i, text="hi", logprobs=LPS, finish_reason="stop") for i in range(2)]


def sse(raw: bytes) -> Any:
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    return json.loads(raw[6:])


@pytest.mark.parametrize("name, obj", [
    ("ChatCompletion", json.loads(openai.chat_response(**HEAD, final=FINAL, text="hi"))),
    ("ChatCompletionChunk", sse(openai.chat_chunk(**HEAD, role=True))),
    ("ChatCompletionChunk", sse(openai.chat_chunk(**HEAD, content="x", include_usage=True))),
    ("ChatCompletionChunk", sse(openai.chat_chunk(**HEAD, finish="stop"))),
    ("ChatCompletionChunk", sse(openai.usage_chunk(**HEAD, kind="chat", stats=STATS))),
    ("Completion", json.loads(openai.completion_response(**HEAD, final=FINAL, text="hi"))),
    ("ChatCompletion", json.loads(openai.chat_response(**HEAD, final=FINAL, answers=ANSWERS))),
    ("ChatCompletionChunk", sse(openai.chat_chunk(**HEAD, content="hi", index=1, logprobs=LPS))),
    ("Completion", json.loads(openai.completion_response(**HEAD, final=FINAL, answers=ANSWERS, echo="x"))),
    ("Completion", sse(openai.completion_chunk(**HEAD, content="hi", logprobs=openai.completion_logprobs(LPS, 3)))),
    ("Completion", sse(openai.completion_chunk(**HEAD, content="x"))),
    ("Completion", sse(openai.completion_chunk(**HEAD, finish="length", include_usage=True))),
    ("Completion", sse(openai.usage_chunk(**HEAD, kind="completion", stats=STATS))),
    ("Embeddings", json.loads(openai.embeddings_response(model="m", vectors=[[0.5, -1.0]], prompt_tokens=2,
                                                         encoding_format="float"))),
    ("Embeddings", json.loads(openai.embeddings_response(model="m", vectors=[[0.5]], prompt_tokens=1,
                                                         encoding_format="base64"))),
    ("ModelList", json.loads(openai.models_list([openai.model_object("a:b", 1, extra={
        "family": "a", "variant": "b", "size": 1, "state": "discovered", "quantization": "Q8_0",
        "context_length": None, "architecture": "llama"})]))),
    ("ModelList", json.loads(openai.models_list([]))),
    ("Error", json.loads(openai.error_body("nope", "invalid_request_error", param="temperature"))),
    ("Error", sse(openai.sse_error("boom", "server_error"))),
    ("Health", {"status": "ok"}),
    ("Ready", {"status": "ready", "loaded": ["a"], "uptime_s": 1.5}),
    ("Ready", {"status": "draining", "loaded": []}),
    ("UnloadResponse", {"model": "a", "was": "ready", "state": "unloaded"}),
])
def test_formatted_responses_fit(name: str, obj: Any) -> None:
    errors = list(component(name).iter_errors(obj))
    assert not errors, errors


PS_ROW = {"name": "smollm2:q8_0", "model": "smollm2:q8_0", "id": "0123456789ab", "digest": "0123456789ab",
          "size": 1, "size_vram": 0, "processor": "100% CPU", "context_length": 4096, "expires_at": None,
          "until": "forever", "state": "ready", "progress": 1.0, "pid": None, "port": None, "in_flight": 0,
          "n_parallel": 4, "pinned": False, "details": {"format": "gguf", "family": "smollm2",
                                                        "parameter_size": "", "quantization_level": "Q8_0"}}


@pytest.mark.parametrize("name, obj, ok", [
    ("RunningModels", {"models": [PS_ROW]}, True),
    ("RunningModels", {"models": []}, True),
    ("LoadResponse", {**PS_ROW, "load_ms": 12.5}, True),
    ("LoadResponse", PS_ROW, False),
    ("RunningModels", {"models": [{**PS_ROW, "pid": "12"}]}, False),
    ("Error", {"error": {"message": "x"}}, False),
    ("ChatCompletion", {**HEAD, "object": "chat.completion"}, False),
])
def test_management_examples(name: str, obj: Any, ok: bool) -> None:
    assert component(name).is_valid(obj) is ok


KV = {"slots": [{"index": 0, "state": "idle", "request_id": None, "n_tokens": 0, "n_cached": 0, "n_prompt": 0,
                 "n_generated": 0}], "cells_used": 0, "cells_total": 512, "n_ctx_slot": 512, "prefix_hits": 0,
      "prefix_misses": 0, "prefix_evictions": 0, "cached_tokens": 0, "model": "tiny:f32", "usage_ratio": 0.0}
SWAP = {"family": "tiny", "variant": "f32", "model": "tiny:f32", "previous": "tiny:f32", "mode": "unchanged",
        "swap_ms": 0.0}
SCHED = {"policy": "fifo", "queue": [], "running": {}, "waiting": {}, "counters": {}, "n_parallel": {},
         "policies": ["fifo"]}


@pytest.mark.parametrize("name, obj, ok", [
    ("KvCache", KV, True),
    ("KvCache", {**KV, "future_field": 1}, True),
    ("KvCache", {k: v for k, v in KV.items() if k != "model"}, False),
    ("KvCache", {**KV, "slots": [{**KV["slots"][0], "request_id": 5}]}, False),
    ("VariantSwitch", SWAP, True),
    ("VariantSwitch", {**SWAP, "mode": "parallel", "at": 1.5}, True),
    ("VariantSwitch", {**SWAP, "mode": "sideways"}, False),
    ("VariantSwitch", {k: v for k, v in SWAP.items() if k != "previous"}, False),
    ("SchedulerView", SCHED, True),
    ("SchedulerView", {**SCHED, "running": {"m": [{"id": "r", "user": "u", "priority": 0, "age_ms": 1.0,
                                                   "queue_ms": 0.5, "preemptions": 0, "slot": None}]}}, True),
    ("SchedulerView", {**SCHED, "waiting": {"m": "1"}}, False),
    ("SchedulerView", {k: v for k, v in SCHED.items() if k != "n_parallel"}, False),
    ("SchedulerView", {**SCHED, "policies": "fifo"}, False),
    ("PolicyChange", {"policy": "fifo", "previous": "priority"}, True),
    ("PolicyChange", {"policy": "fifo"}, False),
    ("Event", {"event": "swap", "mono": 1.5, "time": "2026-05-04T09:12:33.418220+00:00", "model": "m"}, True),
    ("Event", {"event": "swap", "mono": 1.5}, False),
])
def test_internal_examples(name: str, obj: Any, ok: bool) -> None:
    assert component(name).is_valid(obj) is ok
