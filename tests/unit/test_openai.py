"""OpenAI request parsing and response formatting (mullama.openai): tables of good and bad bodies,
and every byte we emit read back through the official ``openai`` SDK's own models and stream reader."""

from __future__ import annotations

import array
import base64
import json
import math
import struct
from typing import Any

import httpx2
import msgspec
import openai as sdk
import pytest
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mullama import openai as oa
from mullama import protocol
from mullama.errors import InvalidArgument

USER = [{"role": "user", "content": "hi"}]


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def chat(**fields: Any) -> oa.Job:
    return oa.parse_chat(body(**{"messages": USER, **fields}))


def completion(**fields: Any) -> oa.Job:
    return oa.parse_completion(body(**{"prompt": "Once", **fields}))


def rejects(parse, raw: bytes, param: str | None, fragment: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        parse(raw)
    exc = info.value
    assert exc.status == 400 and exc.type == "invalid_request_error"
    assert exc.param == param, str(exc)
    assert fragment.lower() in str(exc).lower(), str(exc)
    return exc


# ---------------------------------------------------------------- bodies that are not JSON objects


@pytest.mark.parametrize("raw, fragment", [
    (b"", "empty"),
    (b"  \n", "empty"),
    (b"{not json", "not valid JSON"),
    (b'{"messages": [], }', "not valid JSON"),
    (b'{"temperature": NaN}', "not valid JSON"),
    (b'{"temperature": Infinity}', "not valid JSON"),
    (b"[]", "must be a JSON object, got an array"),
    (b"null", "must be a JSON object, got null"),
    (b'"hi"', "must be a JSON object, got a string"),
    (b"5", "must be a JSON object, got an integer"),
])
@pytest.mark.parametrize("parse", [oa.parse_chat, oa.parse_completion, oa.parse_embeddings])
def test_body_not_an_object(parse, raw, fragment):
    rejects(parse, raw, None, fragment)


# ---------------------------------------------------------------- chat: good


def test_minimal_chat_leaves_runner_defaults():
    job = chat()
    defaults = protocol.CompletionRequest()
    req = job.request
    assert job.kind == "chat" and job.model == "" and not job.stream and not job.include_usage
    assert req.messages == [protocol.ChatMessage(role="user", content="hi")]
    assert req.prompt is None and req.tokens is None
    assert req.stream is True and req.max_tokens == -1
    for name in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "seed", "stop", "ignore_eos", "grammar", "json_schema", "logit_bias"):
        assert getattr(req, name) == getattr(defaults, name), name
    assert job.given == frozenset()
    assert (job.priority, job.deadline_ms, job.keep_alive, job.user) == (0, None, None, None)


def test_request_round_trips_through_the_wire_type():
    job = chat(temperature=0.2, stop=["\n"], logit_bias={"7": 5}, response_format={"type": "json_object"})
    wire = protocol.encoder.encode(job.request)
    assert protocol.decode(wire, protocol.CompletionRequest) == job.request


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
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role",
     "not supported"),
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
     "messages[1].tool_calls", "not supported"),
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
    ({"n": 2}, "n", "only n=1 is supported"),
    ({"n": 0}, "n", "only n=1 is supported"),
    ({"logprobs": True}, "logprobs", "not supported"),
    ({"top_logprobs": 3}, "top_logprobs", "not supported"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "not supported"),
    ({"tool_choice": "required"}, "tool_choice", "not supported"),
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice", "not supported"),
    ({"functions": [{"name": "f"}]}, "functions", "not supported"),
    ({"function_call": {"name": "f"}}, "function_call", "not supported"),
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


# ---------------------------------------------------------------- completions


@pytest.mark.parametrize("prompt, field, value", [
    ("Once upon", "prompt", "Once upon"),
    ("", "prompt", ""),
    (["Once upon"], "prompt", "Once upon"),
    ([1, 2, 3], "tokens", [1, 2, 3]),
    ([0], "tokens", [0]),
    ([2**31 - 1], "tokens", [2**31 - 1]),
    ([[4, 5]], "tokens", [4, 5]),
])
def test_completion_prompts(prompt, field, value):
    job = completion(prompt=prompt)
    assert job.kind == "completion"
    assert getattr(job.request, field) == value
    assert job.request.messages is None
    other = "tokens" if field == "prompt" else "prompt"
    assert getattr(job.request, other) is None


def test_completion_shares_the_sampling_rules():
    job = completion(model="m", max_tokens=5, temperature=0, stop=["."], seed=3, stream=True,
                     stream_options={"include_usage": True}, priority=2, keep_alive="1m")
    req = job.request
    assert (job.model, job.stream, job.include_usage) == ("m", True, True)
    assert (job.priority, job.keep_alive) == (2, 60.0)
    assert (req.max_tokens, req.temperature, req.stop, req.seed, req.stream) == (5, 0.0, ["."], 3, True)


@pytest.mark.parametrize("fields", [
    {"echo": False}, {"best_of": 1}, {"best_of": None}, {"suffix": None}, {"suffix": ""}, {"logprobs": None},
    {"logprobs": 0}, {"n": 1}, {"extra_thing": 1},
])
def test_completion_harmless_fields(fields):
    assert completion(**fields).request.prompt == "Once"


BAD_COMPLETION: list[tuple[dict[str, Any], str | None, str]] = [
    ({"prompt": None}, "prompt", "Missing required parameter"),
    ({"prompt": 5}, "prompt", "expected a string"),
    ({"prompt": {"text": "x"}}, "prompt", "expected a string"),
    ({"prompt": []}, "prompt", "non-empty"),
    ({"prompt": [[]]}, "prompt[0]", "non-empty"),
    ({"prompt": ["a", "b"]}, "prompt", "batched prompts are not supported"),
    ({"prompt": [[1], [2]]}, "prompt", "batched prompts are not supported"),
    ({"prompt": ["a", 5]}, "prompt", "expected a string"),
    ({"prompt": [1, "a"]}, "prompt", "expected a string"),
    ({"prompt": [1, 2.5]}, "prompt", "expected a string"),
    ({"prompt": [1, True]}, "prompt", "expected a string"),
    ({"prompt": [1, -2]}, "prompt", "token ids are integers"),
    ({"prompt": [2**31]}, "prompt", "token ids are integers"),
    ({"prompt": [[1, -2]]}, "prompt[0]", "token ids are integers"),
    ({"prompt": [[1, "a"]]}, "prompt[0]", "token ids are integers"),
    ({"echo": True}, "echo", "not supported"),
    ({"best_of": 2}, "best_of", "not supported"),
    ({"suffix": "end"}, "suffix", "not supported"),
    ({"logprobs": 2}, "logprobs", "not supported"),
    ({"logprobs": True}, "logprobs", "expected an integer"),
    ({"n": 3}, "n", "only n=1"),
    ({"max_tokens": 0}, "max_tokens", "at least 1"),
    ({"temperature": 3}, "temperature", "between 0 and 2"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed"),
    ({"stop": [""]}, "stop", "1 to 256"),
    ({"model": 1}, "model", "expected a string"),
]


@pytest.mark.parametrize("fields, param, fragment", BAD_COMPLETION,
                         ids=[f"{i}-{p}" for i, (_, p, _) in enumerate(BAD_COMPLETION)])
def test_bad_completion(fields, param, fragment):
    rejects(oa.parse_completion, body(**{"prompt": "Once", **fields}), param, fragment)


# ---------------------------------------------------------------- embeddings


@pytest.mark.parametrize("fields, inputs, fmt", [
    ({"input": "hello"}, ["hello"], "float"),
    ({"input": ["a", "b"]}, ["a", "b"], "float"),
    ({"input": [1, 2, 3]}, [[1, 2, 3]], "float"),
    ({"input": [[1, 2], [3]]}, [[1, 2], [3]], "float"),
    ({"input": "x", "encoding_format": "base64"}, ["x"], "base64"),
    ({"input": "x", "encoding_format": None}, ["x"], "float"),
    ({"input": "x", "dimensions": None, "whatever": 1}, ["x"], "float"),
])
def test_embeddings_parse(fields, inputs, fmt):
    job = oa.parse_embeddings(body(model="e", user="u", **fields))
    assert job == oa.EmbeddingJob(model="e", inputs=inputs, encoding_format=fmt, user="u")


def test_embeddings_model_optional():
    assert oa.parse_embeddings(body(input="x")).model == ""


BAD_EMBEDDINGS: list[tuple[dict[str, Any], str | None, str]] = [
    ({}, "input", "Missing required parameter"),
    ({"input": None}, "input", "Missing required parameter"),
    ({"input": ""}, "input[0]", "non-empty string"),
    ({"input": ["a", ""]}, "input[1]", "non-empty string"),
    ({"input": []}, "input", "non-empty"),
    ({"input": [[]]}, "input[0]", "non-empty"),
    ({"input": 5}, "input", "expected a string"),
    ({"input": ["a", 1]}, "input", "not a mix"),
    ({"input": [[1], "a"]}, "input", "not a mix"),
    ({"input": [-1]}, "input", "token ids"),
    ({"input": [[1], [2.5]]}, "input[1]", "token ids"),
    ({"input": ["x"] * 2049}, "input", "limit of 2048"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
    ({"input": "x", "encoding_format": 1}, "encoding_format", "expected a string"),
    ({"input": "x", "dimensions": 256}, "dimensions", "not supported"),
    ({"input": "x", "model": 5}, "model", "expected a string"),
    ({"input": "x", "user": 5}, "user", "expected a string"),
]


@pytest.mark.parametrize("fields, param, fragment", BAD_EMBEDDINGS,
                         ids=[f"{i}-{p}" for i, (_, p, _) in enumerate(BAD_EMBEDDINGS)])
def test_bad_embeddings(fields, param, fragment):
    rejects(oa.parse_embeddings, body(**fields), param, fragment)


# ---------------------------------------------------------------- formatting


def stats(prompt: int = 7, cached: int = 3, completion: int = 5) -> protocol.CompletionStats:
    return protocol.CompletionStats(
        prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion, queue_ms=1.0,
        prefill_ms=2.0, ttft_ms=3.0, decode_ms=4.0, total_ms=10.0, inter_token_ms_p50=0.5,
        inter_token_ms_p95=0.9, slot=0, pauses=0, swaps=0)


def final(reason: str = "stop", text: str = "Hello!") -> protocol.CompletionFinal:
    return protocol.CompletionFinal(id="r1", content=text, tokens=[1, 2], finish_reason=reason, stats=stats())


HEAD = {"id": "chatcmpl-abc", "created": 1_700_000_000, "model": "smollm2"}


@pytest.mark.parametrize("reason, openai_reason", [
    ("stop", "stop"), ("length", "length"), ("context_full", "length"), ("repeat_limit", "stop"),
    ("cancelled", "stop"), ("error", "stop"),
])
def test_finish_reason(reason, openai_reason):
    assert oa.finish_reason(reason) == openai_reason
    assert oa.finish_reason(openai_reason) == openai_reason


def test_finish_reason_unknown():
    with pytest.raises(ValueError, match="tool_calls"):
        oa.finish_reason("tool_calls")


def test_every_runner_reason_is_mapped():
    for reason in protocol.FinishReason.__args__:
        oa.finish_reason(reason)


def test_usage():
    assert oa.usage(stats(7, 3, 5)) == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
                                        "prompt_tokens_details": {"cached_tokens": 3}}


@pytest.mark.parametrize("reason, expected", [
    ("stop", "stop"), ("length", "length"), ("context_full", "length"),
])
def test_chat_response_parses_with_the_sdk(reason, expected):
    raw = oa.chat_response(**HEAD, final=final(reason), text="Hello there")
    resp = ChatCompletion.model_validate_json(raw)
    assert (resp.id, resp.created, resp.model, resp.object) == ("chatcmpl-abc", 1_700_000_000, "smollm2",
                                                                 "chat.completion")
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert (choice.index, choice.finish_reason) == (0, expected)
    assert (choice.message.role, choice.message.content) == ("assistant", "Hello there")
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (7, 5, 12)
    assert resp.usage.prompt_tokens_details.cached_tokens == 3


def test_chat_response_extra_at_top_level():
    raw = oa.chat_response(**HEAD, final=final(), text="x", extra={"profile": {"ttft_ms": 3.0}})
    assert json.loads(raw)["profile"] == {"ttft_ms": 3.0}
    assert ChatCompletion.model_validate_json(raw).model_extra["profile"] == {"ttft_ms": 3.0}


def test_chat_response_keeps_unicode():
    raw = oa.chat_response(**HEAD, final=final(), text="héllo 🦙 \"q\"\n")
    assert ChatCompletion.model_validate_json(raw).choices[0].message.content == "héllo 🦙 \"q\"\n"


def test_completion_response_parses_with_the_sdk():
    raw = oa.completion_response(**{**HEAD, "id": "cmpl-1"}, final=final("length"), text=" upon a time",
                                 extra={"profile": {"slot": 0}})
    resp = Completion.model_validate_json(raw)
    assert (resp.id, resp.object, resp.choices[0].text, resp.choices[0].finish_reason) == (
        "cmpl-1", "text_completion", " upon a time", "length")
    assert resp.usage.total_tokens == 12
    assert json.loads(raw)["profile"] == {"slot": 0}


def split_events(stream: bytes) -> list[bytes]:
    """SSE framing: every event is one ``data: `` line ended by a blank line."""
    assert stream.endswith(b"\n\n")
    events = stream[:-2].split(b"\n\n")
    for event in events:
        assert event.startswith(b"data: ") and b"\n" not in event
    return [e[len(b"data: "):] for e in events]


def sdk_stream(raw: bytes, cast_to: type) -> list[Any]:
    """Read ``raw`` through the SDK's own stream reader, as ``create(stream=True)`` does."""
    client = sdk.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx2.Response(200, content=raw, request=request,
                               headers={"content-type": "text/event-stream"})
    return list(sdk.Stream(cast_to=cast_to, response=response, client=client))


def chat_stream(include_usage: bool) -> bytes:
    parts = [oa.chat_chunk(**HEAD, role=True, include_usage=include_usage)]
    parts += [oa.chat_chunk(**HEAD, content=t, include_usage=include_usage) for t in ("Hel", "lo", " 🦙")]
    parts.append(oa.chat_chunk(**HEAD, finish="length", include_usage=include_usage))
    if include_usage:
        parts.append(oa.usage_chunk(**HEAD, kind="chat", stats=stats(), extra={"profile": {"slot": 1}}))
    return b"".join(parts) + oa.DONE


def test_chat_stream_framing():
    events = split_events(chat_stream(include_usage=True))
    assert events[-1] == b"[DONE]"
    objs = [json.loads(e) for e in events[:-1]]
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert objs[1]["choices"][0]["delta"] == {"content": "Hel"}
    assert objs[4]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert all("usage" in o and o["usage"] is None for o in objs[:-1])
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["total_tokens"] == 12
    assert objs[-1]["profile"] == {"slot": 1}
    assert len({o["id"] for o in objs}) == 1 and len({o["created"] for o in objs}) == 1


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream_through_the_sdk(include_usage):
    raw = chat_stream(include_usage)
    chunks = sdk_stream(raw, ChatCompletionChunk)
    for event in split_events(raw)[:-1]:
        ChatCompletionChunk.model_validate_json(event)          # strict, not only the SDK's lenient construct
    assert all(c.object == "chat.completion.chunk" and c.id == "chatcmpl-abc" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello 🦙"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes == [None, None, None, None, "length"]
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert len(chunks) == 5 and all(c.usage is None for c in chunks)
        assert b'"usage"' not in raw


def test_chat_chunk_without_usage_has_no_usage_key():
    assert "usage" not in json.loads(split_events(oa.chat_chunk(**HEAD, content="x"))[0])


def test_completion_stream_through_the_sdk():
    head = {**HEAD, "id": "cmpl-9"}
    raw = b"".join([oa.completion_chunk(**head, content="a", include_usage=True),
                    oa.completion_chunk(**head, content="b", include_usage=True),
                    oa.completion_chunk(**head, finish="stop", include_usage=True),
                    oa.usage_chunk(**head, kind="completion", stats=stats()), oa.DONE])
    chunks = sdk_stream(raw, Completion)
    assert all(c.object == "text_completion" and c.id == "cmpl-9" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "ab"
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, None, "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 7
    Completion.model_validate_json(split_events(raw)[2])        # the final chunk is a complete Completion
    Completion.model_validate_json(split_events(raw)[3])


def test_sse_error_raises_api_error_in_the_sdk():
    raw = oa.chat_chunk(**HEAD, role=True) + oa.sse_error("runner crashed", "runner_crashed", "502") + oa.DONE
    with pytest.raises(sdk.APIError, match="runner crashed") as info:
        sdk_stream(raw, ChatCompletionChunk)
    assert info.value.body == {"message": "runner crashed", "type": "runner_crashed", "param": None,
                               "code": "502"}


def test_sse_error_framing():
    (event,) = split_events(oa.sse_error("boom", "server_error"))
    assert json.loads(event) == {"error": {"message": "boom", "type": "server_error", "param": None,
                                           "code": None}}


def test_done():
    assert oa.DONE == b"data: [DONE]\n\n"


@pytest.mark.parametrize("kwargs, expected", [
    ({}, {"message": "m", "type": "t", "param": None, "code": None}),
    ({"param": "temperature", "code": "invalid_value"},
     {"message": "m", "type": "t", "param": "temperature", "code": "invalid_value"}),
])
def test_error_body(kwargs, expected):
    assert json.loads(oa.error_body("m", "t", **kwargs)) == {"error": expected}


VECTORS = [[0.5, -1.25, 3.0, 0.0], [1e-3, 2.5e10, -7.0, 1.0]]


def test_embeddings_float_parses_with_the_sdk():
    raw = oa.embeddings_response(model="e", vectors=VECTORS, prompt_tokens=6, encoding_format="float")
    resp = CreateEmbeddingResponse.model_validate_json(raw)
    assert (resp.object, resp.model, resp.usage.prompt_tokens, resp.usage.total_tokens) == ("list", "e", 6, 6)
    assert [d.index for d in resp.data] == [0, 1] and all(d.object == "embedding" for d in resp.data)
    assert [d.embedding for d in resp.data] == VECTORS


def test_embeddings_base64_round_trip_little_endian_float32():
    raw = oa.embeddings_response(model="e", vectors=VECTORS, prompt_tokens=6, encoding_format="base64")
    data = json.loads(raw)["data"]
    for item, vector in zip(data, VECTORS):
        packed = base64.b64decode(item["embedding"])
        assert len(packed) == 4 * len(vector)
        assert list(struct.unpack(f"<{len(vector)}f", packed)) == array.array("f", vector).tolist()
    # The SDK asks for base64 when the caller gives no format, then decodes it itself.
    resp = sdk._models.construct_type(type_=CreateEmbeddingResponse, value=json.loads(raw))
    decoded = parse_embedding_response(resp, encoding_format=sdk.omit)
    assert [d.embedding for d in decoded.data] == [array.array("f", v).tolist() for v in VECTORS]


def test_embeddings_base64_is_float32_rounded():
    raw = oa.embeddings_response(model="e", vectors=[[0.1]], prompt_tokens=1, encoding_format="base64")
    (value,) = struct.unpack("<f", base64.b64decode(json.loads(raw)["data"][0]["embedding"]))
    assert value != 0.1 and math.isclose(value, 0.1, rel_tol=1e-7)


def test_models():
    obj = oa.model_object("smollm2:135m", 1_700_000_000, extra={"size": 1234})
    assert Model.model_validate(obj).id == "smollm2:135m"
    assert obj["owned_by"] == "mullama" and obj["size"] == 1234
    listed = msgspec.json.decode(oa.models_list([obj, oa.model_object("b", 1, owned_by="me")]))
    assert listed["object"] == "list"
    assert [Model.model_validate(m).owned_by for m in listed["data"]] == ["mullama", "me"]
    assert msgspec.json.decode(oa.models_list([])) == {"object": "list", "data": []}
