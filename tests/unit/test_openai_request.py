"""OpenAI request parsing (mullama.openai): bodies that are not JSON objects, completions, embeddings."""

from __future__ import annotations

from typing import Any

import pytest
from openai_checks import body, completion, rejects

from mullama.http.openai import format as oa

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
    ({"echo": True, "prompt": [1, 2]}, "echo", "not token ids"),
    ({"echo": True, "logprobs": 1}, "echo", "echo without logprobs"),
    ({"logprobs": 6}, "logprobs", "logprobs"),
    ({"logprobs": -1}, "logprobs", "logprobs"),
    ({"best_of": 2}, "best_of", "not supported"),
    ({"suffix": "end"}, "suffix", "not supported"),
    ({"logprobs": True}, "logprobs", "expected an integer"),
    ({"n": 9}, "n", "expected 1 to 8"),
    ({"n": 0}, "n", "expected 1 to 8"),
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
