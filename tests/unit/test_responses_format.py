"""Responses API objects and events from canned wire results (``http/responses/format.py``,
``events.py``) and the store: shapes the ``openai`` SDK parses, checked through its own stream
accumulator; reasoning items (SmolLM2 does not reason, so only here)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from mullama import wire
from mullama.http.responses import format as fmt
from mullama.http.responses.events import ResponseEvents
from mullama.http.responses.items import output_messages
from mullama.http.responses.store import ResponseNotFound, ResponseStore

STATS = wire.CompletionStats(prompt_tokens=7, cached_tokens=3, completion_tokens=5, queue_ms=0.0, prefill_ms=1.0,
                             ttft_ms=1.0, decode_ms=1.0, total_ms=2.0, inter_token_ms_p50=0.5,
                             inter_token_ms_p95=0.9, slot=0, pauses=0, swaps=0)
ECHO = {"instructions": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True, "metadata": {},
        "store": True, "text": {"format": {"type": "text"}}}
HEAD = {"id": "resp_1", "created": 1, "model": "m", "echo": ECHO}
THOUGHT = wire.ChatResult(content="It is sunny.", reasoning_content="Think about Paris.",
                          tool_calls=[wire.ToolFunction(name="get_weather", arguments='{"city":"Paris"}')])


def final(reason: str = "stop", message: wire.ChatResult | None = None) -> wire.CompletionFinal:
    return wire.CompletionFinal(id="r", content="", tokens=[], finish_reason=reason, stats=STATS, message=message)


def response(output: list[dict[str, Any]], reason: str = "stop") -> Response:
    status, incomplete = fmt.outcome(reason)
    obj = fmt.response_object(**HEAD, status=status, output=output, usage=fmt.usage(STATS), incomplete=incomplete)
    return Response.model_validate(json.loads(json.dumps(obj)))   # strict: every required field is there


def test_a_text_answer():
    r = response(fmt.output_items(final(), "Hello!"))
    assert (r.status, r.output_text, r.incomplete_details) == ("completed", "Hello!", None)
    (item,) = r.output
    assert item.type == "message" and item.id.startswith("msg_") and item.status == "completed"
    u = r.usage
    assert (u.input_tokens, u.input_tokens_details.cached_tokens, u.output_tokens, u.total_tokens) == (7, 3, 5, 12)


def test_a_length_limit_is_incomplete():
    r = response(fmt.output_items(final("length"), "Hel"), "length")
    assert (r.status, r.incomplete_details.reason, r.output[-1].status) == ("incomplete", "max_output_tokens",
                                                                           "incomplete")


def test_reasoning_text_and_calls_are_items_in_order():
    r = response(fmt.output_items(final(message=THOUGHT), "ignored"))
    reasoning, message, call = r.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_") and reasoning.summary == []
    assert reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text == "Think about Paris."
    assert message.content[0].text == "It is sunny." and r.output_text == "It is sunny."
    assert call.type == "function_call" and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert (call.name, call.arguments) == ("get_weather", '{"city":"Paris"}')


def test_only_calls_have_no_message():
    only = wire.ChatResult(content="", tool_calls=[wire.ToolFunction(name="f", arguments="{}")])
    assert [i["type"] for i in fmt.output_items(final(message=only), "")] == ["function_call"]


def test_output_continues_the_conversation():
    assistant, = output_messages(fmt.output_items(final(message=THOUGHT), ""))
    assert assistant.role == "assistant" and assistant.content == "It is sunny."
    assert assistant.tool_calls[0].function.name == "get_weather"


# ---------------------------------------------------------------------- events


def frames(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            event, data = block.split("\n")
            assert event.startswith("event: ") and data.startswith("data: ")
            out.append(json.loads(data[6:]))
            assert out[-1]["type"] == event[7:]
    return out


def accumulate(events: list[dict[str, Any]]) -> Any:
    """The SDK's own ``responses.stream`` state fed our events: what get_final_response() returns."""
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for e in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=e))
    return state._completed_response


def start() -> ResponseEvents:
    return ResponseEvents(fmt.response_object(**HEAD, status="in_progress", output=[]))


def test_streamed_text_events():
    ev = start()
    raw = ev.start() + ev.text("Hel") + ev.text("lo")
    tail, obj = ev.finish(status="completed", usage=fmt.usage(STATS))
    events = frames(raw + tail)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[6]["text"] == "Hello" and obj["output"][0]["content"][0]["text"] == "Hello"
    done = accumulate(events)
    assert done.output_text == "Hello" and done.status == "completed" and done.usage.output_tokens == 5


def test_streamed_reasoning_and_calls():
    ev = start()
    raw = ev.start() + ev.deltas([wire.ChatDelta(reasoning_content="Hmm")])
    raw += ev.deltas([wire.ChatDelta(tool_index=0, name="f", arguments='{"a"'), wire.ChatDelta(tool_index=0,
                                                                                               arguments=": 1}")])
    raw += ev.deltas([wire.ChatDelta(tool_index=1, name="g"), wire.ChatDelta(tool_index=1, arguments="{}")])
    tail, obj = ev.finish(status="completed", usage=fmt.usage(STATS))
    events = frames(raw + tail)
    kinds = [e["type"] for e in events]
    assert kinds.count("response.reasoning_text.delta") == 1 and "response.reasoning_text.done" in kinds
    assert [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"] == [
        '{"a"', ": 1}", "{}"]
    assert [e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"] == [
        '{"a": 1}', "{}"]
    assert [i["type"] for i in obj["output"]] == ["reasoning", "function_call", "function_call"]
    done = accumulate(events)
    assert [(c.name, c.arguments) for c in done.output if c.type == "function_call"] == [("f", '{"a": 1}'),
                                                                                         ("g", "{}")]
    assert done.output[0].content[0].text == "Hmm"


def test_an_incomplete_stream():
    ev = start()
    raw = ev.start() + ev.text("Hel")
    tail, obj = ev.finish(status="incomplete", usage=fmt.usage(STATS), incomplete={"reason": "max_output_tokens"})
    events = frames(raw + tail)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-2]["item"]["status"] == "incomplete" and obj["incomplete_details"]["reason"] == "max_output_tokens"


def test_a_failed_stream():
    ev = start()
    events = frames(ev.start() + ev.text("Hel") + ev.fail("the runner crashed", "runner_crashed"))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "runner_crashed" and events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"] == {"code": "runner_crashed", "message": "the runner crashed"}


# ---------------------------------------------------------------------- the store


def test_the_store_keeps_the_most_recent():
    store = ResponseStore(2)
    for i in range(3):
        store.put({"id": f"r{i}"}, [wire.ChatMessage(role="user", content=str(i))])
    with pytest.raises(ResponseNotFound):
        store.get("r0")
    store.history("r1")                 # used: r2 is now the least recent
    store.put({"id": "r3"}, [])
    assert json.loads(store.get("r1")) == {"id": "r1"} and len(store) == 2
    with pytest.raises(ResponseNotFound):
        store.get("r2")
    store.delete("r1")
    with pytest.raises(ResponseNotFound):
        store.delete("r1")


def test_a_store_of_size_zero_keeps_nothing():
    store = ResponseStore(0)
    store.put({"id": "r"}, [])
    assert len(store) == 0


# ---------------------------------------------------------------------- the OpenAPI document


def test_what_is_sent_fits_the_documented_schemas():
    from openapi_checks import component

    ev = start()
    raw = ev.start() + ev.deltas([wire.ChatDelta(reasoning_content="Hmm"), wire.ChatDelta(content="Hi")])
    raw += ev.deltas([wire.ChatDelta(tool_index=0, name="f", arguments="{}")])
    tail, obj = ev.finish(status="incomplete", usage=fmt.usage(STATS), incomplete={"reason": "max_output_tokens"})
    failed = start()
    events = frames(raw + tail) + frames(failed.start() + failed.text("x") + failed.fail("boom", "runner_crashed"))
    for e in events:
        assert not list(component("ResponseStreamEvent").iter_errors(e)), e
    whole = fmt.response_object(**HEAD, status="completed", output=fmt.output_items(final(message=THOUGHT), ""),
                                usage=fmt.usage(STATS), extra={"profile": {}})
    for response in (obj, whole):
        assert not list(component("Response").iter_errors(json.loads(json.dumps(response))))
    assert not list(component("ResponseDeleted").iter_errors(fmt.deleted("resp_1")))
    request = component("ResponsesRequest")
    assert not list(request.iter_errors({"model": "m", "input": [{"role": "user", "content": "hi"}],
                                         "tools": [{"type": "function", "name": "f"}],
                                         "tool_choice": {"type": "function", "name": "f"}}))
    assert list(request.iter_errors({"input": "x", "max_output_tokens": 0}))
