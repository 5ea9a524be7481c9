"""The generic tool format (templates without tool support) and the OpenAI tool-call shapes: pure parts."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mullama import wire
from mullama.http.openai import format as oa
from mullama.runner import generic_tools as g

W = wire.Tool(function=wire.FunctionSpec(name="get_weather", description="weather",
                                         parameters={"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}))
T = wire.Tool(function=wire.FunctionSpec(name="get_time"))
CALL = {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}


@pytest.mark.parametrize("choice, parallel, answer, ok", [
    ("required", False, CALL, True),
    ("required", False, {"response": "hi"}, False),
    ("auto", False, {"response": "hi"}, True),
    ("auto", False, CALL, True),
    ("required", False, {"tool_call": {"name": "get_weather", "arguments": {}}}, False),  # city is required
    ("required", False, {"tool_call": {"name": "nope", "arguments": {}}}, False),
    ("required", True, {"tool_calls": [CALL["tool_call"], {"name": "get_time", "arguments": {}}]}, True),
    ("required", True, {"tool_calls": []}, False),
])
def test_the_schema_admits_exactly_calls_of_the_tools(choice, parallel, answer, ok):
    schema = g.schema([W, T], choice, parallel)
    assert jsonschema.Draft202012Validator(schema).is_valid(answer) is ok


def test_the_tools_go_into_the_system_message_and_history_becomes_json():
    history = [wire.ChatMessage(role="system", content="Be brief."), wire.ChatMessage(role="user", content="Paris?"),
               wire.ChatMessage(role="assistant", tool_calls=[wire.ToolCall(
                   id="call_1", function=wire.ToolFunction(name="get_weather", arguments='{"city": "Paris"}'))]),
               wire.ChatMessage(role="tool", tool_call_id="call_1", name="get_weather", content="sunny")]
    out = g.messages(history, [W], "auto", False)
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.")
    assert "get_weather" in out[0]["content"] and g.INSTRUCTIONS in out[0]["content"]
    assert json.loads(out[2]["content"]) == {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"},
                                                           "id": "call_1"}}
    assert out[3]["role"] == "user" and json.loads(out[3]["content"])["tool_response"]["content"] == "sunny"
    assert [m["role"] for m in g.messages(history, [W], "none", False)] == ["system", "user", "assistant", "user"]
    assert "get_weather" not in g.messages(history, [W], "none", False)[0]["content"]


@pytest.mark.parametrize("text, content, calls", [
    ('{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}', "",
     [("get_weather", {"city": "Paris"})]),
    ('{"tool_calls": [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]}', "",
     [("a", {}), ("b", {"x": 1})]),
    ('{"response": "It is sunny."}', "It is sunny.", []),
    ('{"tool_call": {"name": "get_wea', '{"tool_call": {"name": "get_wea', []),  # cut short: shown as it is
    ("plain words", "plain words", []),
])
def test_answers_parse_into_calls_or_content(text, content, calls):
    r = g.parse(text)
    assert r.content == content
    assert [(c.name, json.loads(c.arguments)) for c in r.tool_calls] == calls


def test_the_parser_speaks_only_when_the_answer_is_complete():
    p = g.GenericParser()
    assert p.feed('{"tool_call": {"name": "get_weather", "argu', False) == []
    (d,) = p.feed('{"tool_call": {"name": "get_weather", "arguments": {"city": "P"}}}', True)
    assert (d.tool_index, d.name, json.loads(d.arguments)) == (0, "get_weather", {"city": "P"})


def _final(message: wire.ChatResult | None, reason: str = "stop") -> wire.CompletionFinal:
    stats = wire.CompletionStats(prompt_tokens=1, cached_tokens=0, completion_tokens=1, queue_ms=0, prefill_ms=0,
                                 ttft_ms=0, decode_ms=0, total_ms=0, inter_token_ms_p50=0, inter_token_ms_p95=0,
                                 slot=0, pauses=0, swaps=0)
    return wire.CompletionFinal(id="r", content="", tokens=[], finish_reason=reason, stats=stats, message=message)


def test_a_chat_answer_with_calls_is_openais_shape():
    message = wire.ChatResult(content="", tool_calls=[wire.ToolFunction(name="f", arguments='{"a":1}')])
    body = json.loads(oa.chat_response(id="c", created=1, model="m", final=_final(message), text="raw"))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) == 29
    assert call["function"] == {"name": "f", "arguments": '{"a":1}'} and call["type"] == "function"
    cut = json.loads(oa.chat_response(id="c", created=1, model="m", final=_final(message, "length"), text="raw"))
    assert cut["choices"][0]["finish_reason"] == "length"
    plain = json.loads(oa.chat_response(id="c", created=1, model="m", final=_final(wire.ChatResult(content="hi")),
                                        text="raw"))["choices"][0]
    assert plain["finish_reason"] == "stop" and plain["message"]["content"] == "hi"
    assert "tool_calls" not in plain["message"]


def test_streamed_call_deltas_carry_id_type_and_name_once():
    ids: dict[int, str] = {}
    first = oa.tool_call_delta(wire.ChatDelta(tool_index=0, name="f", arguments='{"a"'), ids)
    later = oa.tool_call_delta(wire.ChatDelta(tool_index=0, arguments=":1}"), ids)
    assert first == {"index": 0, "id": ids[0], "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
    assert later == {"index": 0, "function": {"arguments": ":1}"}}
    frame = json.loads(oa.chat_chunk(id="c", created=1, model="m", tool_call=first)[6:])
    assert frame["choices"][0]["delta"] == {"tool_calls": [first]}
    end = json.loads(oa.chat_chunk(id="c", created=1, model="m", finish="stop", called=True)[6:])
    assert end["choices"][0]["finish_reason"] == "tool_calls"
