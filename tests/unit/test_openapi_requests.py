"""The OpenAPI request schemas are truthful: a body the request schema allows is one ``openai.py`` (and the
internal handlers) accept."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openapi_checks import (
    MSG,
    SPEC,
    component,
)

from mullama.core import units
from mullama.core.errors import InvalidArgument
from mullama.http import internal as internal_api
from mullama.http.openai import format as openai
from mullama.http.openapi import spec as openapi_spec

# ---------------------------------------------------------------------- request examples


@pytest.mark.parametrize("name, body, ok", [
    ("ChatCompletionRequest", {"messages": MSG}, True),
    ("ChatCompletionRequest", {"model": "smollm2", "messages": MSG, "stream": True, "temperature": 0.7,
                               "max_tokens": 64, "stop": ["\n"], "seed": 42, "keep_alive": "10m",
                               "stream_options": {"include_usage": True}, "priority": 5,
                               "response_format": {"type": "json_object"}, "logit_bias": {"15": -100},
                               "unknown_extra": {"tools send": "extras"}}, True),
    ("ChatCompletionRequest", {"messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                            {"role": "assistant", "content": None}]}, True),
    ("ChatCompletionRequest", {"messages": MSG, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}, True),
    ("ChatCompletionRequest", {"messages": MSG, "tools": [], "tool_choice": "auto", "logprobs": False}, True),
    ("ChatCompletionRequest", {}, False),
    ("ChatCompletionRequest", {"messages": []}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "tool", "content": "x"}]}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": None}]}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, False),
    ("ChatCompletionRequest", {"messages": MSG, "temperature": 2.5}, False),
    ("ChatCompletionRequest", {"messages": MSG, "n": 2}, True),
    ("ChatCompletionRequest", {"messages": MSG, "n": 9}, False),
    ("ChatCompletionRequest", {"messages": MSG, "top_logprobs": 2}, True),
    ("ChatCompletionRequest", {"messages": MSG, "logprobs": True, "top_logprobs": 2}, True),
    ("ChatCompletionRequest", {"messages": MSG, "max_tokens": 0}, False),
    ("ChatCompletionRequest", {"messages": MSG, "stop": [""]}, False),
    ("ChatCompletionRequest", {"messages": MSG, "stream_options": {"include_usage": True}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "keep_alive": "soon"}, False),
    ("ChatCompletionRequest", {"messages": MSG, "logit_bias": {"2147483648": 1}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "tools": [{"type": "function"}]}, False),
    ("ChatCompletionRequest", {"messages": MSG, "grammar": "root ::= \"a\"",
                               "response_format": {"type": "json_object"}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "response_format": {"type": "json_schema"}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "max_tokens": 5, "max_completion_tokens": 6}, False),
    ("ChatCompletionRequest", {"messages": MSG, "max_tokens": 5, "max_completion_tokens": None}, True),
    ("CompletionRequest", {"prompt": "x", "max_tokens": None, "max_completion_tokens": 9}, True),
    ("CompletionRequest", {"prompt": "Once upon"}, True),
    ("CompletionRequest", {"prompt": [1, 2, 3], "max_tokens": 5, "stream": False}, True),
    ("CompletionRequest", {"prompt": [[1, 2]], "echo": False, "best_of": 1}, True),
    ("CompletionRequest", {"prompt": ["a", "b"]}, False),
    ("CompletionRequest", {"prompt": "x", "echo": True}, True),
    ("CompletionRequest", {"prompt": [1], "echo": True}, False),
    ("CompletionRequest", {"prompt": "x", "echo": True, "logprobs": 1}, False),
    ("CompletionRequest", {"prompt": "x", "suffix": "end"}, False),
    ("CompletionRequest", {}, False),
    ("EmbeddingRequest", {"input": "hello"}, True),
    ("EmbeddingRequest", {"input": ["a", "b"], "encoding_format": "base64", "model": "m"}, True),
    ("EmbeddingRequest", {"input": ""}, False),
    ("EmbeddingRequest", {"input": [1, 2]}, False),         # token ids: the route refuses them
    ("EmbeddingRequest", {"input": "a", "dimensions": 8}, False),
    ("EmbeddingRequest", {"input": "a", "encoding_format": "int8"}, False),
    ("ModelRequest", {}, True),
    ("ModelRequest", {"model": "smollm2:q8_0", "keep_alive": "-1"}, True),
    ("ModelRequest", {"model": "smollm2", "keep_alive": 300}, True),
    ("ModelRequest", {"model": "smollm2", "keep_alive": "a while"}, False),
])
def test_request_examples(name: str, body: dict[str, Any], ok: bool) -> None:
    assert component(name).is_valid(body) is ok, list(component(name).iter_errors(body))
    if name in PARSERS:
        assert accepts(name, body) is ok


# ---------------------------------------------------------------------- truthfulness against openai.py


def _embedding(raw: bytes) -> None:
    job = openai.parse_embeddings(raw)
    if not isinstance(job.inputs[0], str):
        raise InvalidArgument("token ids")  # what the embeddings route answers


PARSERS = {"ChatCompletionRequest": openai.parse_chat, "CompletionRequest": openai.parse_completion,
           "EmbeddingRequest": _embedding}


def accepts(name: str, body: Any) -> bool:
    try:
        PARSERS[name](json.dumps(body).encode())
    except InvalidArgument:
        return False
    return True


_EDGE_INTS = [-1001, -1000, -2, -1, 0, 1, 2, 100, 101, 1000, 1001, 32768, 32769, 2**31 - 1, 2**31,
              2**32 - 1, 2**32]
_EDGE_FLOATS = [-100.5, -2.5, -2.0, -0.5, -0.0, 0.5, 1.5, 2.0, 2.000001, 100.0, 100.5, 1e6]
_WORDS = ["", "x", "5m", "1h30m", "-1", "300", "250ms", "soon", "text", "json_object", "json_schema", "auto",
          "none", "float", "base64", "user", "assistant", "system", "developer", "tool", "image_url"]
# JSON Schema counts 2.0 as an integer, msgspec does not: whole floats go only where a number is wanted
# (a fuzzer writes integers as integers, so the difference never reaches the server).
_FRACTIONS = [x for x in _EDGE_FLOATS if not x.is_integer()]
scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(_EDGE_INTS), st.sampled_from(_FRACTIONS),
                    st.integers(-5, 5), st.sampled_from(_WORDS), st.text(max_size=4))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["type", "text", "schema", "1", "x"]),
                                                 inner, max_size=3)), max_leaves=6)
part = st.fixed_dictionaries({}, optional={"type": st.sampled_from(["text", "image_url", 1]),
                                           "text": st.one_of(st.text(max_size=3), st.none())})
message = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "bot", None]),
    "content": st.one_of(st.text(max_size=3), st.none(), st.lists(part, max_size=2), st.just(5)),
    "tool_calls": st.one_of(st.none(), st.just([]), st.just([{"id": "x"}]))})
special = {
    "messages": st.one_of(st.lists(message, max_size=3), values),
    "prompt": st.one_of(st.text(max_size=3), st.lists(st.integers(-1, 3), max_size=3),
                        st.lists(st.text(max_size=2), max_size=2),
                        st.lists(st.lists(st.integers(0, 3), max_size=2), max_size=2), values),
    "input": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=2), max_size=3),
                       st.lists(st.integers(0, 3), max_size=2), values),
    "response_format": st.one_of(values, st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema"])},
        optional={"json_schema": st.none() | st.fixed_dictionaries({}, optional={"schema": values})})),
    "stream_options": st.one_of(st.none(), st.fixed_dictionaries({"include_usage": st.booleans()}), values),
    "logit_bias": st.one_of(values, st.dictionaries(
        st.sampled_from(["1", "01", "2147483647", "2147483648", "-1", "x"]), st.sampled_from(_EDGE_FLOATS))),
}


BASES = {"ChatCompletionRequest": {"messages": MSG}, "CompletionRequest": {"prompt": "Once"},
         "EmbeddingRequest": {"input": "hi"}}


@st.composite
def bodies(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid body with up to three fields replaced, so about as many bodies pass as fail."""
    fields = sorted(SPEC["components"]["schemas"][name]["properties"])
    changes = draw(st.lists(st.sampled_from(fields), max_size=3, unique=True))
    props = SPEC["components"]["schemas"][name]["properties"]
    return {**BASES[name], **{f: draw(special[f] if f in special else typed(props[f])) for f in changes}}


_BY_TYPE = {"null": st.none(), "boolean": st.booleans(),
            "string": st.sampled_from(_WORDS) | st.text(max_size=3),
            "integer": st.sampled_from(_EDGE_INTS), "number": st.sampled_from(_EDGE_FLOATS + _EDGE_INTS),
            "array": st.lists(scalars, max_size=2), "object": st.dictionaries(st.text(max_size=2), scalars,
                                                                              max_size=2)}


def typed(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly values of the field's own JSON types (edges included), sometimes anything."""
    kinds = [b["type"] for b in prop.get("anyOf", []) if isinstance(b.get("type"), str)]
    if not kinds:
        return values
    return st.one_of(*[_BY_TYPE[k] for k in kinds]) | values


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_agrees_with_the_parser(name: str, data: st.DataObject) -> None:
    """A fuzzer's contract: schema-valid bodies are accepted, schema-invalid ones refused (400)."""
    body = data.draw(bodies(name))
    # the one known gap: equal max_tokens and max_completion_tokens pass the server, not the schema
    assume(body.get("max_tokens") is None or body.get("max_tokens") != body.get("max_completion_tokens"))
    valid = component(name).is_valid(body)
    why = "" if valid else next(component(name).iter_errors(body)).message
    assert valid is accepts(name, body), f"schema says {valid} ({why}) for {body!r}"


@pytest.mark.parametrize("text", ["5m", "1h30m", "250ms", "300", "1.5", ".5", "1.", "-1", "-5m", "+7", "1e3",
                                  " 5m ", "0", "1H", "2D30M", "", "5 m", "m", "5x", "-", "1e400", "--5m",
                                  "5m-", "inf", "nan", "1_0", "1.2.3"])
def test_duration_pattern_agrees_with_parse_duration(text: str) -> None:
    try:
        units.parse_duration(text)
        ok = True
    except ValueError:
        ok = False
    assert bool(re.search(openapi_spec.DURATION, text)) is ok or text in ("inf", "1_0"), text


@pytest.mark.parametrize("key", ["0", "1", "007", "2147483647", "02147483647", "2147483648", "2147483650",
                                 "9999999999", "3000000000", "214748364", "-1", "1.0", "", " 1", "x"])
def test_token_id_pattern(key: str) -> None:
    ok = key.isascii() and key.isdigit() and int(key) <= 2**31 - 1
    assert bool(re.search(openapi_spec.TOKEN_ID_KEY, key)) is ok


BODIES = {"PolicyRequest": internal_api._PolicyBody, "VariantRequest": internal_api._VariantBody}


@pytest.mark.parametrize("name, body, ok", [
    ("PolicyRequest", {"policy": "fifo"}, True),
    ("PolicyRequest", {"policy": "my.pkg:Policy"}, True),
    ("PolicyRequest", {"policy": ""}, False),        # decodes, then make_policy refuses it
    ("PolicyRequest", {"policy": 5}, False),
    ("PolicyRequest", {"policy": None}, False),
    ("PolicyRequest", {}, False),
    ("PolicyRequest", {"policy": "fifo", "x": 1}, False),
    ("PolicyRequest", ["fifo"], False),
    ("VariantRequest", {"variant": "q8_0"}, True),
    ("VariantRequest", {"variant": 8}, False),
    ("VariantRequest", {"variant": "q8_0", "family": "x"}, False),
    ("VariantRequest", {}, False),
    ("VariantRequest", None, False),
])
def test_internal_request_bodies_agree_with_the_handlers(name: str, body: Any, ok: bool) -> None:
    assert component(name).is_valid(body) is ok
    try:
        msgspec.json.decode(json.dumps(body).encode(), type=BODIES[name])
        decoded = True
    except msgspec.ValidationError:
        decoded = False
    assert decoded is (ok or body == {"policy": ""})
