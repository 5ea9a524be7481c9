"""OpenAI chat request parsing (mullama.openai): tables of good and bad chat bodies."""

from __future__ import annotations

from typing import Any

import pytest
from openai_checks import USER, body, chat, rejects

from mullama import wire
from mullama.http.openai import format as oa

# ---------------------------------------------------------------- chat: good


def test_minimal_chat_leaves_runner_defaults():
    job = chat()
    defaults = wire.CompletionRequest()
    req = job.request
    assert job.kind == "chat" and job.model == "" and not job.stream and not job.include_usage
    assert req.messages == [wire.ChatMessage(role="user", content="hi")]
    assert req.prompt is None and req.tokens is None
    assert req.stream is True and req.max_tokens == -1
    for name in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "seed", "stop", "ignore_eos", "grammar", "json_schema", "logit_bias"):
        assert getattr(req, name) == getattr(defaults, name), name
    assert job.given == frozenset()
    assert (job.priority, job.deadline_ms, job.keep_alive, job.user) == (0, None, None, None)


def test_request_round_trips_through_the_wire_type():
    job = chat(temperature=0.2, stop=["\n"], logit_bias={"7": 5}, response_format={"type": "json_object"})
    raw = wire.encoder.encode(job.request)
    assert wire.decode(raw, wire.CompletionRequest) == job.request


@pytest.mark.parametrize("fields, attr, value", [
    ({"model": "smollm2"}, "model", "smollm2"),
    ({"model": None}, "model", ""),
    ({"stream": True}, "stream", True),
    ({"stream": False}, "stream", False),
    ({"stream": True, "stream_options": {"include_usage": True}}, "include_usage", True),
    ({"stream": True, "stream_options": {"include_usage": False}}, "include_usage", False),
    ({"stream": True, "stream_options": {}}, "include_usage", False),
    ({"stream": True, "stream_options": None}, "include_usage", False),
    ({"stream": False, "stream_options": None}, "include_usage", False),
    ({"user": "u-1"}, "user", "u-1"),
    ({"priority": 7}, "priority", 7),
    ({"priority": -1000}, "priority", -1000),
    ({"priority": None}, "priority", 0),
    ({"deadline_ms": 1500}, "deadline_ms", 1500.0),
    ({"keep_alive": "5m"}, "keep_alive", 300.0),
    ({"keep_alive": 10}, "keep_alive", 10.0),
    ({"keep_alive": 0}, "keep_alive", 0.0),
    ({"keep_alive": -1}, "keep_alive", -1.0),
    ({"keep_alive": "1h30m"}, "keep_alive", 5400.0),
])
def test_chat_job_fields(fields, attr, value):
    assert getattr(chat(**fields), attr) == value


@pytest.mark.parametrize("fields, attr, value", [
    ({"max_tokens": 10}, "max_tokens", 10),
    ({"max_completion_tokens": 12}, "max_tokens", 12),
    ({"max_tokens": 12, "max_completion_tokens": 12}, "max_tokens", 12),
    ({"max_tokens": None}, "max_tokens", -1),
    ({"max_tokens": 32768}, "max_tokens", 32768),
    ({"temperature": 0}, "temperature", 0.0),
    ({"temperature": 2}, "temperature", 2.0),
    ({"temperature": 0.7}, "temperature", 0.7),
    ({"top_p": 0}, "top_p", 0.0),
    ({"top_p": 1}, "top_p", 1.0),
    ({"top_k": 0}, "top_k", 0),
    ({"top_k": 100}, "top_k", 100),
    ({"min_p": 0.1}, "min_p", 0.1),
    ({"min_p": 1}, "min_p", 1.0),
    ({"repeat_penalty": 1.1}, "repeat_penalty", 1.1),
    ({"presence_penalty": -2}, "presence_penalty", -2.0),
    ({"frequency_penalty": 2}, "frequency_penalty", 2.0),
    ({"seed": 42}, "seed", 42),
    ({"seed": -1}, "seed", -1),
    ({"seed": 2**32 - 1}, "seed", 2**32 - 1),
    ({"seed": 0}, "seed", 0),
    ({"stop": "\n"}, "stop", ["\n"]),
    ({"stop": ["a", "bc"]}, "stop", ["a", "bc"]),
    ({"stop": []}, "stop", []),
    ({"stop": None}, "stop", []),
    ({"stop": ["x" * 256]}, "stop", ["x" * 256]),
    ({"stop": [str(i) for i in range(16)]}, "stop", [str(i) for i in range(16)]),
    ({"logit_bias": {"15": -100, "0007": 100, "3": 0.5}}, "logit_bias", {"15": -100.0, "7": 100.0, "3": 0.5}),
    ({"logit_bias": {}}, "logit_bias", {}),
    ({"ignore_eos": True}, "ignore_eos", True),
    ({"grammar": 'root ::= "yes"'}, "grammar", 'root ::= "yes"'),
    ({"response_format": {"type": "text"}}, "json_schema", None),
    ({"response_format": {"type": "json_object"}}, "json_schema", {"type": "object"}),
    ({"response_format": {"type": "json_object", "schema": {"type": "array"}}}, "json_schema",
     {"type": "array"}),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "strict": True,
        "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}},
     "json_schema", {"type": "object", "properties": {"a": {"type": "integer"}}}),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": True}}}, "json_schema", True),
])
def test_chat_request_fields(fields, attr, value):
    job = chat(**fields)
    assert getattr(job.request, attr) == value
    assert job.request.stream is True


def test_given_names_only_what_the_client_set():
    job = chat(temperature=0.5, max_tokens=9, stop="x", response_format={"type": "json_object"}, user="u")
    assert job.given == {"temperature", "max_tokens", "stop", "json_schema"}


@pytest.mark.parametrize("content, text", [
    ("hello", "hello"),
    ("", ""),
    ([{"type": "text", "text": "a"}], "a"),
    ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "a\nb"),
    ([{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}], "a"),
])
def test_message_content(content, text):
    assert chat(messages=[{"role": "user", "content": content}]).request.messages[0].content == text


@pytest.mark.parametrize("role, wire", [
    ("system", "system"), ("developer", "system"), ("user", "user"), ("assistant", "assistant"),
])
def test_message_roles(role, wire):
    assert chat(messages=[{"role": role, "content": "x"}]).request.messages[0].role == wire


def test_assistant_null_content_is_empty_text():
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": None},
            {"role": "user", "content": "b"}]
    assert [m.content for m in chat(messages=msgs).request.messages] == ["a", "", "b"]


def test_reasoning_knobs_and_earlier_thinking_reach_the_request():
    msgs = [{"role": "user", "content": "a", "reasoning_content": "ignored"},
            {"role": "assistant", "content": "x", "reasoning_content": "hmm"}, {"role": "user", "content": "b"}]
    req = chat(messages=msgs, reasoning_format="none", reasoning_effort="none", logprobs=True, top_logprobs=3,
               n=2).request
    assert [m.reasoning_content for m in req.messages] == [None, "hmm", None]
    assert (req.reasoning_format, req.think, req.logprobs, req.top_logprobs, req.n) == ("none", False, True, 3, 2)
    assert chat(chat_template_kwargs={"enable_thinking": True}).request.think is True
    assert chat(reasoning_budget_tokens=64).request.reasoning_budget == 64
    assert chat(thinking_budget_tokens=0).request.reasoning_budget == 0
    assert chat(top_logprobs=3).request.logprobs is False  # ignored without logprobs, as llama-server does


@pytest.mark.parametrize("fields", [
    {"n": 1}, {"n": None}, {"logprobs": False}, {"logprobs": None}, {"top_logprobs": 0}, {"tools": []},
    {"tools": None}, {"tool_choice": "none"}, {"tool_choice": "auto"}, {"functions": []}, {"audio": None},
    {"modalities": ["text"]}, {"parallel_tool_calls": False}, {"frobnicate": {"a": [1]}},
    {"metadata": {"k": "v"}},
    {"store": False}, {"service_tier": "auto"}, {"cache_prompt": True},
])
def test_harmless_and_unknown_fields_are_accepted(fields):
    assert chat(**fields).request.messages is not None


def test_messages_at_the_limit():
    limits = oa.Limits(max_messages=3)
    assert len(oa.parse_chat(body(messages=USER * 3), limits).request.messages) == 3


def test_custom_max_tokens_limit():
    limits = oa.Limits(max_tokens=100)
    assert oa.parse_chat(body(messages=USER, max_tokens=100), limits).request.max_tokens == 100
    rejects(lambda raw: oa.parse_chat(raw, limits), body(messages=USER, max_tokens=101), "max_tokens",
            "limit of 100")


# ---------------------------------------------------------------- chat: bad


BAD_CHAT: list[tuple[dict[str, Any], str | None, str]] = [
    # messages
    ({"messages": None}, "messages", "Missing required parameter"),
    ({"messages": []}, "messages", "non-empty"),
    ({"messages": "hi"}, "messages", "expected an array, but got a string"),
    ({"messages": {"role": "user"}}, "messages", "expected an array"),
    ({"messages": ["hi"]}, "messages[0]", "expected an object"),
    ({"messages": [{"content": "x"}]}, "messages[0].role", "Missing required parameter"),
    ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role", "expected a string"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "'robot'"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "Missing"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0].tool_calls",
     "only assistant messages"),
    ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role", "not supported"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "got null"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "got null"),
    ({"messages": [{"role": "system", "content": None}]}, "messages[0].content", "got null"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "expected a string or an array"),
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content", "non-empty"),
    ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0]", "expected an object"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0].type", "Missing"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text",
     "Missing"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
     "messages[0].content[0].text",
     "expected a string"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                {"type": "image_url", "image_url": {"url": "http://x"}}]}]},
     "messages[0].content[1].type", "'image_url' are not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type", "not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]},
     "messages[0].content[0].type", "not supported"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None,
                                                      "tool_calls": [{"id": "1"}]}]},
     "messages[1].tool_calls[0].function", "Missing"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": []}]},
     "messages[1].tool_calls", "non-empty array"),
    ({"messages": USER * 2049}, "messages", "limit of 2048"),
    # model
    ({"model": 3}, "model", "expected a string"),
    ({"model": ["a"]}, "model", "expected a string, but got an array"),
    # max tokens
    ({"max_tokens": 0}, "max_tokens", "at least 1"),
    ({"max_tokens": -1}, "max_tokens", "at least 1"),
    ({"max_tokens": 32769}, "max_tokens", "limit of 32768"),
    ({"max_tokens": 2**40}, "max_tokens", "limit of 32768"),
    ({"max_tokens": 1.5}, "max_tokens", "expected an integer, but got a number"),
    ({"max_tokens": "10"}, "max_tokens", "expected an integer, but got a string"),
    ({"max_tokens": True}, "max_tokens", "expected an integer, but got a boolean"),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "at least 1"),
    ({"max_completion_tokens": 40000}, "max_completion_tokens", "limit"),
    ({"max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens", "disagree"),
    # sampling ranges and types
    ({"temperature": "hot"}, "temperature", "Invalid type for 'temperature': expected a number"),
    ({"temperature": -0.1}, "temperature", "between 0 and 2"),
    ({"temperature": 2.01}, "temperature", "between 0 and 2"),
    ({"top_p": 1.5}, "top_p", "between 0 and 1"),
    ({"top_p": -0.5}, "top_p", "between 0 and 1"),
    ({"top_p": [1]}, "top_p", "expected a number, but got an array"),
    ({"top_k": -1}, "top_k", "between 0 and"),
    ({"top_k": 2**31}, "top_k", "between 0 and"),
    ({"top_k": 4.5}, "top_k", "expected an integer"),
    ({"min_p": 1.1}, "min_p", "between 0 and 1"),
    ({"min_p": -0.1}, "min_p", "between 0 and 1"),
    ({"presence_penalty": 2.5}, "presence_penalty", "between -2 and 2"),
    ({"frequency_penalty": -3}, "frequency_penalty", "between -2 and 2"),
    ({"repeat_penalty": 0}, "repeat_penalty", "greater than 0"),
    ({"repeat_penalty": -1}, "repeat_penalty", "greater than 0"),
    ({"seed": -2}, "seed", "between -1 and 4294967295"),
    ({"seed": 2**32}, "seed", "between -1 and 4294967295"),
    ({"seed": 10**30}, "seed", "between -1"),
    ({"seed": 1.5}, "seed", "expected an integer"),
    ({"seed": "42"}, "seed", "expected an integer, but got a string"),
    # stop
    ({"stop": 5}, "stop", "expected a string or an array"),
    ({"stop": [1]}, "stop[0]", "expected a string, but got an integer"),
    ({"stop": ""}, "stop", "1 to 256 characters"),
    ({"stop": ["a", ""]}, "stop", "1 to 256 characters"),
    ({"stop": ["x" * 257]}, "stop", "1 to 256 characters"),
    ({"stop": [str(i) for i in range(17)]}, "stop", "limit of 16"),
    # logit_bias
    ({"logit_bias": {"abc": 1}}, "logit_bias", "token ids"),
    ({"logit_bias": {"-5": 1}}, "logit_bias", "token ids"),
    ({"logit_bias": {"1.5": 1}}, "logit_bias", "token ids"),
    ({"logit_bias": {str(2**31): 1}}, "logit_bias", "token ids"),
    ({"logit_bias": {"5": 101}}, "logit_bias", "between -100 and 100"),
    ({"logit_bias": {"5": -100.5}}, "logit_bias", "between -100 and 100"),
    ({"logit_bias": {"5": "x"}}, "logit_bias", "expected a number"),
    ({"logit_bias": [1, 2]}, "logit_bias", "expected an object"),
    # response_format / grammar
    ({"response_format": "json"}, "response_format", "expected an object"),
    ({"response_format": {}}, "response_format.type", "Missing required parameter"),
    ({"response_format": {"type": "yaml"}}, "response_format.type", "'yaml'"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "Missing"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format.json_schema.schema", "Missing"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": "x"}}},
     "response_format.json_schema.schema", "expected a boolean or an object"),
    ({"grammar": "root ::= x", "response_format": {"type": "json_object"}}, "grammar", "not both"),
    ({"grammar": 5}, "grammar", "expected a string"),
    # n, unsupported features
    ({"n": 9}, "n", "max_choices"),
    ({"n": 0}, "n", "expected 1 to 8"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "top_logprobs"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "top_logprobs"),
    ({"reasoning_format": "bogus"}, "reasoning_format", "deepseek"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort", "minimal"),
    ({"chat_template_kwargs": {"enable_thinking": "yes"}}, "chat_template_kwargs", "boolean"),
    ({"reasoning_budget_tokens": -2}, "reasoning_budget_tokens", "reasoning_budget_tokens"),
    ({"tool_choice": "required"}, "tool_choice", "no 'tools'"),
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice", "no 'tools'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}, "tool_choice",
     "'sometimes'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice.function.name", "'g'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "grammar": "root ::= x"}, "tools",
     "cannot be combined"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "response_format": {"type": "json_object"}}, "tools", "cannot be combined"),
    ({"tools": {"type": "function"}}, "tools", "expected an array"),
    ({"tools": ["f"]}, "tools[0]", "expected an object"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "only 'function'"),
    ({"tools": [{"type": "function"}]}, "tools[0].function", "Missing"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name", "'a b'"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
     "tools[0].function.parameters", "JSON schema object"),
    ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]}, "tools", "limit of 128"),
    ({"functions": [{"name": "f"}]}, "functions", "use 'tools'"),
    ({"function_call": {"name": "f"}}, "function_call", "use 'tools'"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "not supported"),
    ({"modalities": ["text", "audio"]}, "modalities", "not supported"),
    # stream
    ({"stream": "yes"}, "stream", "expected a boolean"),
    ({"stream": 1}, "stream", "expected a boolean, but got an integer"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when 'stream' is enabled"),
    ({"stream": False, "stream_options": {"include_usage": True}}, "stream_options", "only allowed"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage",
     "expected a boolean"),
    ({"stream": True, "stream_options": 1}, "stream_options", "expected an object"),
    # user and extensions
    ({"user": 5}, "user", "expected a string"),
    ({"ignore_eos": "no"}, "ignore_eos", "expected a boolean"),
    ({"priority": 1001}, "priority", "between -1000 and 1000"),
    ({"priority": -1001}, "priority", "between -1000 and 1000"),
    ({"priority": 1.5}, "priority", "expected an integer"),
    ({"deadline_ms": 0}, "deadline_ms", "greater than 0"),
    ({"deadline_ms": -5}, "deadline_ms", "greater than 0"),
    ({"deadline_ms": "soon"}, "deadline_ms", "expected a number"),
    ({"keep_alive": "forever"}, "keep_alive", "'forever'"),
    ({"keep_alive": "5x"}, "keep_alive", "duration"),
    ({"keep_alive": True}, "keep_alive", "but got a boolean"),
    ({"keep_alive": [5]}, "keep_alive", "expected a number or a string"),
]


@pytest.mark.parametrize("fields, param, fragment", BAD_CHAT,
                         ids=[f"{i}-{p}" for i, (_, p, _) in enumerate(BAD_CHAT)])
def test_bad_chat(fields, param, fragment):
    rejects(oa.parse_chat, body(**{"messages": USER, **fields}), param, fragment)


@pytest.mark.parametrize("literal, param", [
    (b'"temperature": 1e400', "temperature"), (b'"seed": -1e999', "seed"),
    (b'"deadline_ms": 1e309', "deadline_ms"),
])
def test_numbers_that_overflow_a_double(literal, param):
    rejects(oa.parse_chat, b'{"messages": [{"role": "user", "content": "x"}], ' + literal + b"}", param,
            "out of range")


def test_invalid_argument_is_a_value_error_with_param():
    with pytest.raises(ValueError) as info:
        chat(temperature=9)
    assert info.value.param == "temperature"
