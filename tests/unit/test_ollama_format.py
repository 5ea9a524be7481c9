"""The shapes the Ollama front end writes, checked against the ollama client's own pydantic models and
the OpenAPI document."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from ollama import _types as ot
from openapi_checks import component

from mullama import wire
from mullama.http.ollama import format as ollama

STATS = wire.CompletionStats(prompt_tokens=7, cached_tokens=2, completion_tokens=3, queue_ms=0.5,
                                 prefill_ms=12.5, ttft_ms=13.0, decode_ms=30.25, total_ms=44.0,
                                 inter_token_ms_p50=10.0, inter_token_ms_p95=12.0, slot=0, pauses=0, swaps=0)


# ---------------------------------------------------------------------- responses


def test_created_at_is_rfc3339_with_nanoseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", ollama.rfc3339())
    assert ollama.rfc3339(ns=1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"


@pytest.mark.parametrize("reason, expected", [("stop", "stop"), ("length", "length"), ("context_full", "length"),
                                              ("repeat_limit", "stop"), ("cancelled", "stop")])
def test_done_reason(reason: str, expected: str) -> None:
    assert ollama.done_reason(reason) == expected


def test_final_record_carries_real_measurements_in_nanoseconds() -> None:
    rec = ollama.final_record("generate", "m:q", "hello", STATS, "length", total_ms=50.5, load_ms=1.25)
    assert rec["done"] is True and rec["done_reason"] == "length" and rec["response"] == "hello"
    assert rec["total_duration"] == 50_500_000 and rec["load_duration"] == 1_250_000
    assert rec["prompt_eval_count"] == 7 and rec["prompt_eval_duration"] == 12_500_000
    assert rec["eval_count"] == 3 and rec["eval_duration"] == 30_250_000


@pytest.mark.parametrize("reason", ["stop", "length", "context_full"])
def test_final_record_says_truncated_only_for_a_full_context(reason: str) -> None:
    rec = ollama.final_record("chat", "m", "x", STATS, reason, total_ms=1, load_ms=0)
    assert rec.get("truncated", False) is (reason == "context_full")


def lines(raw: bytes) -> dict[str, Any]:
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    return json.loads(raw)


@pytest.mark.parametrize("model, obj", [
    (ot.GenerateResponse, lines(ollama.generate_chunk("m", "he"))),
    (ot.GenerateResponse, ollama.final_record("generate", "m", "", STATS, "stop", total_ms=1, load_ms=0,
                                              extra={"profile": {"x": 1}})),
    (ot.GenerateResponse, ollama.load_record("generate", "m", "load")),
    (ot.ChatResponse, lines(ollama.chat_chunk("m", "he"))),
    (ot.ChatResponse, ollama.final_record("chat", "m", "hello", STATS, "stop", total_ms=1, load_ms=0)),
    (ot.ChatResponse, ollama.load_record("chat", "m", "unload")),
    (ot.EmbedResponse, ollama.embed_response("m", [[0.5, 0.5]], 2, total_ms=3, load_ms=1)),
])
def test_shapes_validate_in_the_client_and_the_spec(model, obj: dict[str, Any]) -> None:
    parsed = model(**obj)
    assert parsed.done is not False or obj["done"] is False
    name = {ot.GenerateResponse: "OllamaGenerateResponse", ot.ChatResponse: "OllamaChatResponse",
            ot.EmbedResponse: "OllamaEmbedResponse"}[model]
    assert not list(component(name).iter_errors(obj))


def test_error_line_raises_in_the_client() -> None:
    assert json.loads(ollama.error_line("boom")) == {"error": "boom"}
    err = ot.ResponseError(ollama.error_body("model 'x' not found").decode(), 404)
    assert err.error == "model 'x' not found" and err.status_code == 404


def test_details_and_model_info() -> None:
    d = ollama.details("llama", "135M", "Q4_1")
    assert ot.ModelDetails(**d).families == ["llama"] and d["family"] == "llama"
    info = ollama.model_info({"general.architecture": "llama", "tokenizer.ggml.tokens": "[49152 items]",
                              "llama.context_length": 8192}, 134_515_008)
    assert info == {"general.architecture": "llama", "tokenizer.ggml.tokens": None, "llama.context_length": 8192,
                    "general.parameter_count": 134_515_008}
    assert ollama.capabilities({"general.architecture": "bert", "bert.pooling_type": 1}) == ["embedding"]
    assert ollama.capabilities({"general.architecture": "llama"}) == ["completion"]


def test_digest_extends_the_catalog_id(tiny_path) -> None:
    from mullama.models.catalog import Catalog

    (entry,) = [e for e in Catalog.scan([tiny_path.parent]).entries() if e.path == tiny_path]
    full = ollama.digest(entry.path, entry.size_bytes, entry.modified)
    assert re.fullmatch(r"[0-9a-f]{64}", full) and full.startswith(entry.id)
