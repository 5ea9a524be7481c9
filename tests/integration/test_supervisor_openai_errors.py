"""The supervisor through the official ``openai`` SDK, when things go wrong: unknown models, refused and
out-of-range parameters, malformed bodies, prompts longer than the context (each mapped to the SDK's
exception classes, in OpenAI's error shape), and a streaming client that goes away mid-stream (its slot
is freed). One real ``mullama serve`` for the module; see ``test_supervisor_openai.py`` for why the SDK.

Every test stands alone (module-scoped server, no shared state beyond it); max_tokens stays at 24 or
below except in the disconnect test, whose generation must outlive the client.
"""

# ruff: noqa: F811  (test parameters named after the fixtures imported from openai_sdk_harness)
from __future__ import annotations

import openai
import pytest
from openai_sdk_harness import (  # noqa: F401  (server and client are fixtures)
    DISCONNECT_SETTLE_S,
    HELLO,
    STORY,
    TOO_LONG,
    _raw_post,
    _wait_idle,
    client,
    server,
)
from supervisor_harness import Server
from supervisor_harness import assert_openai_error as _assert_openai_error


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=4)
    assert info.value.status_code == 404
    assert "no-such-model" in info.value.message


def test_n_above_max_choices_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=4, n=9)
    assert info.value.param == "n"
    assert "max_choices" in info.value.message


@pytest.mark.parametrize("param,value", [("temperature", 5), ("top_p", 1.5), ("presence_penalty", -3),
                                         ("max_tokens", 0), ("seed", -2)])
def test_out_of_range_parameter_is_named(client: openai.OpenAI, param: str, value: float) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=HELLO, **{param: value})
    assert info.value.param == param
    assert param in info.value.message
    assert info.value.type == "invalid_request_error"


def test_empty_messages_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=[], max_tokens=4)
    assert info.value.status_code == 400
    assert info.value.param == "messages"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
@pytest.mark.parametrize("data", [b'{"model": "smollm2", "messages": [', b"not json at all", b"[1, 2]", b""],
                         ids=["truncated", "garbage", "array", "empty"])
def test_malformed_body_is_400_in_openai_shape(server: Server, path: str, data: bytes) -> None:
    status, body = _raw_post(server, path, data)
    assert status == 400
    err = _assert_openai_error(body)
    assert err["type"] == "invalid_request_error"


def test_prompt_longer_than_the_context_is_400_and_serving_goes_on(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": TOO_LONG}],
                                       max_tokens=4)
    assert "context_length_exceeded" in (info.value.type, info.value.code)
    assert "token" in info.value.message
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smollm2", prompt=TOO_LONG, max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        list(client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": TOO_LONG}],
                                            max_tokens=4, stream=True))
    resp = client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=4, temperature=0)
    assert resp.choices[0].message.content


def test_context_overflow_error_has_openais_type_and_code(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": TOO_LONG}],
                                       max_tokens=4)
    assert (info.value.type, info.value.code) == ("invalid_request_error", "context_length_exceeded")


def test_stream_closed_by_the_client_frees_the_slot(server: Server, client: openai.OpenAI) -> None:
    """The one place max_tokens is large: left alone this generation runs for ~15 s on 2 cores (2000 tokens,
    end-of-sequence ignored), so a slot that is free again within DISCONNECT_SETTLE_S was freed by the
    disconnect, not by the generation ending on its own."""
    stream = client.chat.completions.create(model="smollm2", messages=STORY, max_tokens=2000, temperature=0,
                                            stream=True, extra_body={"ignore_eos": True})
    received = 0
    for _ in stream:
        received += 1
        if received == 2:
            break
    stream.close()
    assert received == 2
    counts = _wait_idle(server, DISCONNECT_SETTLE_S)
    assert not any(counts.values()), f"a slot is still held after the client went away: {counts}"
    resp = client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=8, temperature=0)
    assert resp.choices[0].message.content
    assert not any(_wait_idle(server).values())
