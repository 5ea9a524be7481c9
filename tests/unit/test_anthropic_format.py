"""Anthropic message objects and streamed events from canned wire results (``http/anthropic/format.py``,
``stream.py``): content blocks, stop reasons, usage, thinking blocks, tool_use, errors; each fits the
OpenAPI schema, and the streamed events add up in the official SDK's accumulator to the same message."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from openapi_checks import component

from mullama import wire
from mullama.http.anthropic import format as fmt
from mullama.http.anthropic.stream import Events, error_event

STATS = wire.CompletionStats(prompt_tokens=30, cached_tokens=10, completion_tokens=5, queue_ms=0.0,
                             prefill_ms=1.0, ttft_ms=1.0, decode_ms=1.0, total_ms=2.0, inter_token_ms_p50=0.5,
                             inter_token_ms_p95=0.9, slot=0, pauses=0, swaps=0)
CALL = wire.ToolFunction(name="get_weather", arguments='{"city": "Paris"}')


def final(reason: str = "stop", *, stop: str | None = None, message: wire.ChatResult | None = None
          ) -> wire.CompletionFinal:
    return wire.CompletionFinal(id="r", content="", tokens=[], finish_reason=reason,  # type: ignore[arg-type]
                                stop_string=stop, stats=STATS, message=message)


def whole(**kw: Any) -> dict[str, Any]:
    obj = json.loads(fmt.message(id="msg_1", model="smollm2:q4_1", **kw))
    assert not list(component("AnthropicMessage").iter_errors(obj)), obj
    return obj


def test_text_message() -> None:
    obj = whole(final=final(), text="Hello!", stops=[])
    assert obj["type"] == "message" and obj["role"] == "assistant" and obj["id"] == "msg_1"
    assert obj["content"] == [{"type": "text", "text": "Hello!"}]
    assert (obj["stop_reason"], obj["stop_sequence"]) == ("end_turn", None)
    assert obj["usage"] == {"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 10,
                            "cache_creation_input_tokens": 0}


@pytest.mark.parametrize("reason, stop, stops, called, expected", [
    ("stop", "END", ["END"], False, ("stop_sequence", "END")),
    ("stop", None, ["END"], False, ("end_turn", None)),
    ("length", None, [], False, ("max_tokens", None)),
    ("context_full", None, [], False, ("model_context_window_exceeded", None)),
    ("repeat_limit", None, [], False, ("end_turn", None)),
    ("stop", None, [], True, ("tool_use", None)),
    ("length", None, [], True, ("max_tokens", None)),
])
def test_stop_reason(reason: str, stop: str | None, stops: list[str], called: bool, expected: tuple) -> None:
    assert fmt.stop_reason(final(reason, stop=stop), stops, called) == expected


def test_thinking_text_and_tool_use_blocks_in_order() -> None:
    parsed = wire.ChatResult(content="Let me check.", reasoning_content="The user wants weather.",
                             tool_calls=[CALL, wire.ToolFunction(name="cut", arguments='{"a": ')])
    obj = whole(final=final(message=parsed), text="ignored: the parser's reading wins", stops=[])
    thinking, text, call, cut = obj["content"]
    assert thinking == {"type": "thinking", "thinking": "The user wants weather.", "signature": fmt.SIGNATURE}
    assert text == {"type": "text", "text": "Let me check."}
    assert call["type"] == "tool_use" and call["id"].startswith("toolu_") and len(call["id"]) == 30
    assert (call["name"], call["input"]) == ("get_weather", {"city": "Paris"})
    assert cut["input"] == {"_raw": '{"a": '}
    assert obj["stop_reason"] == "tool_use"


def test_an_empty_answer_has_no_blocks() -> None:
    assert whole(final=final("length"), text="", stops=[])["content"] == []


@pytest.mark.parametrize("status, kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                          (403, "permission_error"), (404, "not_found_error"),
                                          (413, "request_too_large"), (415, "invalid_request_error"),
                                          (422, "invalid_request_error"), (429, "rate_limit_error"),
                                          (500, "api_error"), (502, "api_error"), (503, "overloaded_error"),
                                          (507, "api_error"), (529, "overloaded_error")])
def test_error_types(status: int, kind: str) -> None:
    obj = json.loads(fmt.error_body("nope", status))
    assert obj == {"type": "error", "error": {"type": kind, "message": "nope"}}
    assert component("AnthropicError").is_valid(obj)


def test_token_count() -> None:
    assert json.loads(fmt.token_count(30)) == {"input_tokens": 30}


# ---------------------------------------------------------------------- streamed events


def parse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n")[:-1]:
        head, data = frame.split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        obj = json.loads(data[6:])
        assert obj["type"] == head[7:]
        assert component("AnthropicStreamEvent").is_valid(obj), obj
        out.append((head[7:], obj))
    return out


def delta(**kw: Any) -> wire.ChatDelta:
    return wire.ChatDelta(**kw)


def test_events_add_up_in_the_sdk_accumulator() -> None:
    ev = Events("msg_1", "smollm2")
    raw = ev.start() + ev.deltas([delta(reasoning_content="Weather? "), delta(reasoning_content="Paris.")])
    raw += ev.deltas([delta(content="Checking.")])
    raw += ev.deltas([delta(tool_index=0, name="get_weather"), delta(tool_index=0, arguments='{"city": ')])
    raw += ev.deltas([delta(tool_index=0, arguments='"Paris"}'), delta(tool_index=1, name="get_time",
                                                                        arguments='{"city": "Oslo"}')])
    raw += ev.finish(final(message=wire.ChatResult(content="Checking.", tool_calls=[CALL])), [])
    events = parse_events(raw)
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e["content_block"]["type"] for k, e in events if k == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use", "tool_use"]
    assert kinds.count("content_block_stop") == 4
    snapshot, bufs = None, {}
    for _, obj in events:
        snapshot = accumulate_event(event=obj, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    blocks = [b.to_dict() for b in snapshot.content]
    assert blocks[0] == {"type": "thinking", "thinking": "Weather? Paris.", "signature": ""}
    assert blocks[1] == {"type": "text", "text": "Checking."}
    assert (blocks[2]["name"], blocks[2]["input"]) == ("get_weather", {"city": "Paris"})
    assert (blocks[3]["name"], blocks[3]["input"]) == ("get_time", {"city": "Oslo"})
    assert blocks[2]["id"] != blocks[3]["id"]
    assert snapshot.stop_reason == "tool_use"
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == (20, 5)
    assert snapshot.usage.cache_read_input_tokens == 10


def test_plain_text_stream_with_a_stop_sequence() -> None:
    ev = Events("msg_1", "m")
    raw = ev.start() + ev.text("Hel") + ev.text("lo") + ev.text("") + ev.finish(final(stop="\n"), ["\n"],
                                                                                 {"profile": {"x": 1}})
    events = parse_events(raw)
    assert [k for k, _ in events] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                      "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    message_delta = events[-2][1]
    assert message_delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "\n"}
    assert message_delta["profile"] == {"x": 1}


def test_nothing_generated_opens_no_block() -> None:
    ev = Events("msg_1", "m")
    kinds = [k for k, _ in parse_events(ev.start() + ev.finish(final("length"), []))]
    assert kinds == ["message_start", "ping", "message_delta", "message_stop"]


def test_error_event() -> None:
    raw = error_event("the runner crashed", 502)
    assert raw.startswith(b"event: error\ndata: ") and raw.endswith(b"\n\n")
    assert msgspec.json.decode(raw.split(b"data: ", 1)[1]) == {
        "type": "error", "error": {"type": "api_error", "message": "the runner crashed"}}
