"""Anthropic Messages bodies into jobs: the conversation, tools, sampling defaults, thinking, and every
refusal a clear 400 naming the field (``http/anthropic/request.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_checks import component

from mullama import wire
from mullama.core.errors import InvalidArgument
from mullama.http.anthropic.request import Limits, parse_count, parse_messages

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"name": "get_weather", "description": "The weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "get_time", "input_schema": {"type": "object"}}
CALL = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}


def body(**over: Any) -> bytes:
    return json.dumps({"model": "smollm2", "max_tokens": 32, "messages": HI, **over}).encode()


def test_plain_message_takes_anthropics_temperature_and_the_runners_other_defaults() -> None:
    job = parse_messages(body(system="be brief", stop_sequences=["\n\n"], metadata={"user_id": "u1"}))
    req = job.request
    assert job.kind == "chat" and job.model == "smollm2" and not job.stream and job.user == "u1"
    assert [(m.role, m.content) for m in req.messages or []] == [("system", "be brief"), ("user", "hi")]
    assert req.max_tokens == 32 and req.temperature == 1.0 and req.stop == ["\n\n"]
    assert req.top_p == wire.CompletionRequest().top_p and req.tools is None and req.think is None


def test_sampling_fields_pass_through() -> None:
    req = parse_messages(body(temperature=0, top_p=0.5, top_k=7, stream=True)).request
    assert (req.temperature, req.top_p, req.top_k) == (0, 0.5, 7)


def test_system_blocks_and_consecutive_turns_are_joined() -> None:
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "text", "text": "b"}]}]
    req = parse_messages(body(system=[{"type": "text", "text": "x"}, {"type": "text", "text": "y"}],
                              messages=msgs)).request
    assert [(m.role, m.content) for m in req.messages or []] == [("system", "x\ny"), ("user", "a\nb")]


def test_tool_round_trip_keeps_ids_and_names() -> None:
    msgs = [*HI, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": ""},
                                                   {"type": "text", "text": "Let me look."}, CALL]},
            {"role": "user", "content": [{**RESULT, "is_error": True}, {"type": "text", "text": "and now?"}]}]
    req = parse_messages(body(messages=msgs, tools=[WEATHER])).request
    _, assistant, tool, user = req.messages or []
    assert assistant.content == "Let me look." and assistant.reasoning_content == "hmm"
    assert assistant.tool_calls == [wire.ToolCall(id="toolu_1", function=wire.ToolFunction(
        name="get_weather", arguments='{"city":"Paris"}'))]
    assert (tool.role, tool.tool_call_id, tool.name, tool.content) == ("tool", "toolu_1", "get_weather",
                                                                       "Error: sunny")
    assert (user.role, user.content) == ("user", "and now?")
    assert req.tool_choice == "auto" and req.parallel_tool_calls


@pytest.mark.parametrize("choice, names, wire_choice, parallel", [
    (None, ["get_weather", "get_time"], "auto", True),
    ({"type": "auto", "disable_parallel_tool_use": True}, ["get_weather", "get_time"], "auto", False),
    ({"type": "any"}, ["get_weather", "get_time"], "required", True),
    ({"type": "tool", "name": "get_time"}, ["get_time"], "required", True),
    ({"type": "none"}, ["get_weather", "get_time"], "none", True),
])
def test_tool_choice(choice: Any, names: list[str], wire_choice: str, parallel: bool) -> None:
    req = parse_messages(body(tools=[WEATHER, TIME], tool_choice=choice)).request
    assert [t.function.name for t in req.tools or []] == names
    assert req.tool_choice == wire_choice and req.parallel_tool_calls is parallel
    assert req.tools and req.tools[0].function.parameters is not None


@pytest.mark.parametrize("thinking, think, fmt, budget", [
    ({"type": "enabled", "budget_tokens": 1024}, True, "deepseek", 1024),
    ({"type": "adaptive"}, None, "deepseek", -1),
    ({"type": "disabled"}, False, None, -1),
])
def test_thinking_maps_to_think_and_reasoning_format(thinking: Any, think: bool | None, fmt: str | None,
                                                     budget: int) -> None:
    req = parse_messages(body(max_tokens=2048, thinking=thinking)).request
    assert (req.think, req.reasoning_format, req.reasoning_budget) == (think, fmt, budget)


def test_count_tokens_generates_nothing() -> None:
    job = parse_count(json.dumps({"model": "m", "messages": HI, "tools": [WEATHER],
                                  "tool_choice": {"type": "any"}}).encode())
    assert job.request.max_tokens == 0 and job.request.tool_choice == "required" and not job.stream


BAD = [
    (b"", None, "empty"),
    (b"{not json", None, "not valid JSON"),
    (b"[1]", None, "JSON object"),
    (json.dumps({"model": "m", "messages": HI}).encode(), "max_tokens", "Missing required parameter"),
    (body(max_tokens=0), "max_tokens", "from 1 to"),
    (body(max_tokens=10**9), "max_tokens", "limit"),
    (body(messages=[]), "messages", "non-empty"),
    (body(messages=[{"role": "system", "content": "x"}]), "messages[0].role", "top-level 'system'"),
    (body(messages=[{"role": "user", "content": []}]), "messages[0].content", "non-empty"),
    (body(messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}]),
     "messages[0].content[0].type", "images are not supported"),
    (body(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}]),
     "messages[0].content[0].type", "'document' are not supported"),
    (body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x",
                                                  "content": [{"type": "image"}]}]}]),
     "messages[0].content[0].content[0].type", "images are not supported"),
    (body(messages=[{"role": "user", "content": [{"text": "x"}]}]), "messages[0].content[0].type", "Missing"),
    (body(messages=[*HI, {"role": "assistant", "content": "Sure, "}]), "messages", "prefill"),
    (body(messages=[*HI, {"role": "assistant", "content": [{**CALL, "id": ""}]}, {"role": "user", "content": "x"}]),
     "messages[1].content[0].id", "non-empty id"),
    (body(messages=[*HI, {"role": "assistant", "content": [{k: v for k, v in CALL.items() if k != "id"}]},
                    {"role": "user", "content": "x"}]), "messages[1].content[0].id", "Missing"),
    (body(messages=[*HI, {"role": "assistant", "content": [CALL, CALL]}, {"role": "user", "content": [RESULT]}]),
     "messages[1].content[1].id", "used twice"),
    (body(messages=[*HI, {"role": "assistant", "content": [{**CALL, "input": "x"}]}]),
     "messages[1].content[0].input", "an object"),
    (body(messages=[{"role": "user", "content": [RESULT]}]), "messages[0].content[0].tool_use_id", "answers no"),
    (body(messages=[*HI, {"role": "assistant", "content": [CALL]}, {"role": "user", "content": "ok"},
                    {"role": "assistant", "content": "x"}, {"role": "user", "content": [RESULT]}]),
     "messages[4].content[0].tool_use_id", "right before"),
    (body(messages=[{"role": "user", "content": [CALL]}]), "messages[0].content[0].type", "assistant messages"),
    (body(messages=[{"role": "assistant", "content": [RESULT]}, *HI]), "messages[0].content[0].type",
     "user messages"),
    (body(tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}), "tool_choice.function.name",
     "'nope' is not in 'tools'"),
    (body(tool_choice={"type": "any"}), "tool_choice", "no 'tools'"),
    (body(tools=[WEATHER], tool_choice={"type": "sometimes"}), "tool_choice.type", "'sometimes'"),
    (body(tools=[{**WEATHER, "name": "bad name"}]), "tools[0].name", "letters, digits"),
    (body(tools=[WEATHER, WEATHER]), "tools[1].name", "twice"),
    (body(tools=[{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}]), "tools[0].type",
     "server tools"),
    (body(tools=[{"name": "x"}]), "tools[0].input_schema", "Missing"),
    (body(temperature=1.5), "temperature", "between 0 and 1"),
    (body(top_p=-1), "top_p", "between 0 and 1"),
    (body(stop_sequences=[""]), "stop_sequences", "1 to"),
    (body(stop_sequences=["x"] * 17), "stop_sequences", "limit"),
    (body(thinking={"type": "enabled", "budget_tokens": 100}, max_tokens=4096), "thinking.budget_tokens",
     "at least 1024"),
    (body(thinking={"type": "enabled", "budget_tokens": 2048}), "thinking.budget_tokens", "less than max_tokens"),
    (body(thinking={"type": "enabled"}), "thinking.budget_tokens", "Missing"),
    (body(stream="yes"), "stream", "a boolean"),
]


@pytest.mark.parametrize("raw, param, words", BAD)
def test_bad_bodies_are_a_400_naming_the_field(raw: bytes, param: str | None, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_messages(raw, Limits(max_tokens=4096))
    assert info.value.status == 400 and info.value.param == param and words in str(info.value), str(info.value)


#: rules about the order of the conversation, which a JSON schema cannot state: only the parser knows them
ORDER_RULES = ("answers no", "right before", "user messages", "assistant messages", "prefill", "twice",
               "no 'tools'", "is not in 'tools'", "less than max_tokens")


@pytest.mark.parametrize("raw, param, words", [b for b in BAD if b[0][:2] == b'{"' and not any(
    rule in b[2] for rule in ORDER_RULES)])
def test_the_schema_refuses_what_the_parser_refuses(raw: bytes, param: str, words: str) -> None:
    """The documented request schema agrees with the parser (with this server's limits)."""
    assert not component("AnthropicMessagesRequest").is_valid(json.loads(raw)), raw


def test_the_schema_takes_what_the_parser_takes() -> None:
    msgs = [*HI, {"role": "assistant", "content": [{"type": "text", "text": "x"}, CALL]},
            {"role": "user", "content": [RESULT]}]
    good = {"model": "m", "max_tokens": 2048, "messages": msgs, "system": "s", "tools": [WEATHER, TIME],
            "tool_choice": {"type": "tool", "name": "get_time"}, "temperature": 0.2, "stop_sequences": ["x"],
            "metadata": {"user_id": "u"}, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    parse_messages(json.dumps(good).encode())
    assert component("AnthropicMessagesRequest").is_valid(good)
    count = {k: v for k, v in good.items() if k in ("model", "messages", "system", "tools", "tool_choice")}
    parse_count(json.dumps(count).encode())
    assert component("AnthropicCountTokensRequest").is_valid(count)
