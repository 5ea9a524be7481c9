"""``POST /v1/responses`` bodies into chat Jobs: instructions, items, tools, formats, reasoning and every
refusal as a 400 naming the parameter (``http/responses/request.py``, ``items.py``). Pure: no server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mullama import wire
from mullama.core.errors import InvalidArgument
from mullama.http.openai.request import Limits
from mullama.http.responses.request import ResponsesJob, parse_responses
from mullama.http.responses.store import PreviousResponseNotFound, ResponseStore

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "22 C"}


def parse(body: dict[str, Any], history: dict[str, list[wire.ChatMessage]] | None = None,
          limits: Limits | None = None) -> ResponsesJob:
    store = ResponseStore(8)
    for rid, messages in (history or {}).items():
        store.put({"id": rid}, messages)
    return parse_responses(json.dumps(body).encode(), limits or Limits(), store.history)


def roles(parsed: ResponsesJob) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in parsed.job.request.messages or ()]


def test_a_string_input_with_instructions():
    p = parse({"model": "m", "input": "hi", "instructions": "Be brief.", "max_output_tokens": 5,
               "temperature": 0.5, "metadata": {"k": "v"}, "user": "u"})
    assert roles(p) == [("system", "Be brief."), ("user", "hi")]
    req = p.job.request
    assert (req.max_tokens, req.temperature, req.stream, p.job.stream, p.job.kind) == (5, 0.5, True, False, "chat")
    assert p.job.given == {"max_tokens", "temperature"} and p.job.user == "u" and p.store
    assert p.messages == req.messages[1:]             # stored without the instructions
    assert p.echo["metadata"] == {"k": "v"} and p.echo["text"] == {"format": {"type": "text"}}
    assert p.echo["tool_choice"] == "auto" and p.echo["parallel_tool_calls"] is True


def test_items_become_messages():
    p = parse({"input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                        {"type": "input_text", "text": "b"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "c",
                                                              "annotations": []}]},
        CALL, {**CALL, "call_id": "call_2"}, {"type": "reasoning", "id": "rs_1", "summary": []},
        OUTPUT, {**OUTPUT, "call_id": "call_2", "output": [{"type": "input_text", "text": "23 C"}]}]})
    system, user, assistant, tool1, tool2 = p.job.request.messages
    assert (system.role, system.content, user.content) == ("system", "rules", "a\nb")
    assert assistant.content == "c" and [c.id for c in assistant.tool_calls] == ["call_1", "call_2"]
    assert assistant.tool_calls[0].function == wire.ToolFunction(name="get_weather", arguments='{"city": "Paris"}')
    assert (tool1.role, tool1.tool_call_id, tool1.name, tool1.content) == ("tool", "call_1", "get_weather", "22 C")
    assert tool2.content == "23 C"


def test_previous_response_continues_its_conversation():
    before = [wire.ChatMessage(role="user", content="weather?"),
              wire.ChatMessage(role="assistant", tool_calls=[wire.ToolCall(
                  id="call_1", function=wire.ToolFunction(name="get_weather", arguments="{}"))])]
    p = parse({"previous_response_id": "resp_1", "instructions": "new", "input": [OUTPUT]}, {"resp_1": before})
    assert roles(p)[:2] == [("system", "new"), ("user", "weather?")]
    assert p.messages[-1].role == "tool" and p.messages[-1].name == "get_weather"
    assert p.messages[:2] == before


def test_an_unknown_previous_response_is_400():
    with pytest.raises(PreviousResponseNotFound) as err:
        parse({"previous_response_id": "resp_nope", "input": "hi"})
    assert (err.value.status, err.value.type, err.value.param) == (400, "previous_response_not_found",
                                                                  "previous_response_id")


def test_tools_and_choices():
    p = parse({"input": "x", "tools": [WEATHER, TIME], "tool_choice": {"type": "function", "name": "get_time"},
               "parallel_tool_calls": False})
    req = p.job.request
    assert [t.function.name for t in req.tools] == ["get_time"] and req.tool_choice == "required"
    assert req.parallel_tool_calls is False and p.echo["tools"][0]["name"] == "get_weather"
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_weather"}]}
    req = parse({"input": "x", "tools": [WEATHER, TIME], "tool_choice": allowed}).job.request
    assert [t.function.name for t in req.tools] == ["get_weather"] and req.tool_choice == "required"
    req = parse({"input": "x", "tools": [WEATHER]}).job.request
    assert req.tool_choice == "auto" and req.parallel_tool_calls is True
    assert req.tools[0].function.parameters == WEATHER["parameters"]


def test_text_formats_and_reasoning():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    p = parse({"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": schema,
                                                 "strict": True}}})
    assert p.job.request.json_schema == schema
    assert p.echo["text"]["format"] == {"type": "json_schema", "name": "s", "schema": schema, "strict": True}
    assert parse({"input": "x", "text": {"format": {"type": "json_object"}}}).job.request.json_schema == {
        "type": "object"}
    on = parse({"input": "x", "reasoning": {"effort": "high"}}).job.request
    off = parse({"input": "x", "reasoning": {"effort": "minimal"}}).job.request
    default = parse({"input": "x"}).job.request
    assert (on.think, on.reasoning_format) == (True, "deepseek")
    assert (off.think, default.think, default.reasoning_format) == (False, None, None)


def test_harmless_fields_are_accepted():
    p = parse({"input": "x", "include": ["reasoning.encrypted_content"], "truncation": "disabled",
               "store": False, "service_tier": "auto", "prompt_cache_key": "k", "safety_identifier": "s",
               "user": "u", "stream": True})
    assert not p.store and p.job.stream and p.job.user == "s"


@pytest.mark.parametrize("body, param", [
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": [{"content": "no role"}]}, "input[0].type"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user"}]}, "input[0].content"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]},
     "input[0].content[0].type"),
    ({"input": [OUTPUT]}, "input[0].call_id"),
    ({"input": [{**CALL, "name": None}]}, "input[0].name"),
    ({"input": [CALL, {**OUTPUT, "output": None}]}, "input[1].output"),
    ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{**WEATHER, "name": "bad name"}]}, "tools[0].name"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                          "tools": [{"type": "function", "name": "x"}]}}, "tool_choice.tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "text": {"format": {"type": "json_object"}}}, "tools"),
    ({"text": {"format": {"type": "json_schema", "name": "s"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"max_output_tokens": 10**6}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": "high"}, "top_p"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"include": ["everything"]}, "include[0]"),
    ({"truncation": "auto"}, "truncation"),
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": -1}, "top_logprobs"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
    ({"keep_alive": "soon"}, "keep_alive"),
])
def test_bad_requests_name_the_parameter(body: dict[str, Any], param: str):
    with pytest.raises(InvalidArgument) as err:
        parse({"input": "x", **body} if "input" not in body and body != {} else body)
    assert (err.value.status, err.value.param) == (400, param), str(err.value)
    assert str(err.value)


def test_the_message_limit_counts_the_whole_conversation():
    history = {"resp_1": [wire.ChatMessage(role="user", content="a")] * 3}
    with pytest.raises(InvalidArgument) as err:
        parse({"previous_response_id": "resp_1", "input": "b", "instructions": "i"}, history,
              Limits(max_messages=4))
    assert err.value.param == "input"


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"x"'])
def test_bodies_that_are_no_object_are_400(raw: bytes):
    with pytest.raises(InvalidArgument) as err:
        parse_responses(raw, Limits(), ResponseStore(1).history)
    assert err.value.param is None
