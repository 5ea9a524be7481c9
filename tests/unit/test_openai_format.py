"""OpenAI response formatting (mullama.openai): every byte we emit read back through the official
``openai`` SDK's own models and stream reader."""

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

from mullama import wire
from mullama.http.openai import format as oa

# ---------------------------------------------------------------- formatting


def stats(prompt: int = 7, cached: int = 3, completion: int = 5) -> wire.CompletionStats:
    return wire.CompletionStats(
        prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion, queue_ms=1.0,
        prefill_ms=2.0, ttft_ms=3.0, decode_ms=4.0, total_ms=10.0, inter_token_ms_p50=0.5,
        inter_token_ms_p95=0.9, slot=0, pauses=0, swaps=0)


def final(reason: str = "stop", text: str = "Hello!") -> wire.CompletionFinal:
    return wire.CompletionFinal(id="r1", content=text, tokens=[1, 2], finish_reason=reason, stats=stats())


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
    for reason in wire.FinishReason.__args__:
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


@pytest.mark.parametrize("reason", ["stop", "length", "context_full", "cancelled"])
def test_a_full_context_says_truncated_where_max_tokens_does_not(reason):
    """The victim of a full context can tell it from its own max_tokens (issue 16): llama-server's field."""
    for raw in (oa.chat_response(**HEAD, final=final(reason), text="x"),
                oa.completion_response(**HEAD, final=final(reason), text="x")):
        choice = json.loads(raw)["choices"][0]
        assert choice.get("truncated", False) is (reason == "context_full")
    for raw in (oa.chat_chunk(**HEAD, finish=reason), oa.completion_chunk(**HEAD, finish=reason)):
        choice = json.loads(raw[6:])["choices"][0]
        assert choice.get("truncated", False) is (reason == "context_full")
    assert "truncated" not in json.loads(oa.chat_chunk(**HEAD, content="x")[6:])["choices"][0]


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
