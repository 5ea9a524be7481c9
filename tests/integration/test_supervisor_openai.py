"""The supervisor through the official ``openai`` SDK: one real ``mullama serve`` for the module,
serving SmolLM2 in two variants (family "smollm2": "q4_1" bundled and default, "q8_0" made by
``q8_variant()``), real runners and real text.

Why the SDK and not raw HTTP: it is what users point at us, and it is strict about shapes (the
SSE framing, the usage chunk, error bodies mapped to exception classes), so a shape we get wrong
shows up here as an exception rather than as a dict key nobody looked at.

Every test stands alone (module-scoped server, no shared state beyond it); outputs are compared
only under greedy decoding (temperature 0) or a fixed seed; max_tokens stays at 24 or below except
in the disconnect test, whose generation must outlive the client.

The errors (bad parameters and bodies, context overflow) and a client that goes away mid-stream are in
``test_supervisor_openai_errors.py``; shared fixtures and helpers in ``openai_sdk_harness.py``.
"""

# ruff: noqa: F811  (test parameters named after the fixtures imported from openai_sdk_harness)
from __future__ import annotations

import asyncio
import json
import math

import jsonschema
import openai
import pytest
from openai_sdk_harness import (  # noqa: F401  (server, client and aclient are fixtures)
    DEFAULT,
    HELLO,
    JSON_PROMPT,
    Q8,
    SCHEMA,
    STORY,
    _check_usage,
    _decode_b64,
    aclient,
    client,
    server,
)

# ---------------------------------------------------------------------- chat completions


def test_chat_sync(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=16, temperature=0)
    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == DEFAULT
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    _check_usage(resp.usage, 16, choice.finish_reason)


def test_chat_sync_streaming_with_usage_matches_non_streaming(client: openai.OpenAI) -> None:
    args = dict(model="smollm2", messages=STORY, max_tokens=12, temperature=0,
                extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == DEFAULT for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    *body, finish_chunk, usage_chunk = chunks
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert finish_chunk.choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.choices[0].finish_reason is None for c in body)
    pieces = [c.choices[0].delta.content for c in body if c.choices[0].delta.content]
    _check_usage(usage_chunk.usage, 12, "length")
    # each content chunk carries at least one token; a token may be held back to complete a UTF-8 character
    assert 1 <= len(pieces) <= usage_chunk.usage.completion_tokens
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == whole.usage.prompt_tokens


def test_chat_streaming_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=8, temperature=0,
                                                 stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()


async def test_chat_async_non_streaming_and_streaming(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=16,
                                                 temperature=0)
    assert resp.model == DEFAULT
    assert resp.choices[0].message.content.strip()
    _check_usage(resp.usage, 16, resp.choices[0].finish_reason)

    stream = await aclient.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=16,
                                                   temperature=0, stream=True,
                                                   stream_options={"include_usage": True})
    text, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(text) == resp.choices[0].message.content
    assert finish == resp.choices[0].finish_reason
    _check_usage(usage, 16, finish)
    assert usage.completion_tokens == resp.usage.completion_tokens


async def test_async_concurrent_requests_each_get_their_own_answer(aclient: openai.AsyncOpenAI) -> None:
    prompts = ["Name a colour.", "Name a fruit.", "Name an animal."]
    solo = [await aclient.chat.completions.create(model="smollm2", max_tokens=10, temperature=0,
                                                  messages=[{"role": "user", "content": p}]) for p in prompts]
    together = await asyncio.gather(*(aclient.chat.completions.create(
        model="smollm2", max_tokens=10, temperature=0, messages=[{"role": "user", "content": p}])
        for p in prompts))
    assert len({r.id for r in together}) == len(prompts)
    for alone, batched in zip(solo, together):
        assert batched.choices[0].message.content.strip()
        _check_usage(batched.usage, 10, batched.choices[0].finish_reason)
        assert batched.usage.prompt_tokens == alone.usage.prompt_tokens


# ---------------------------------------------------------------------- legacy completions


def test_completion_non_streaming(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8,
                                     temperature=0)
    assert resp.object == "text_completion"
    assert resp.id.startswith("cmpl-")
    assert resp.model == DEFAULT
    assert resp.choices[0].text.strip()
    assert resp.choices[0].finish_reason in ("stop", "length")
    _check_usage(resp.usage, 8, resp.choices[0].finish_reason)


def test_completion_streaming_with_usage(client: openai.OpenAI) -> None:
    args = dict(model="smollm2", prompt="Once upon a time", max_tokens=10, temperature=0,
                extra_body={"ignore_eos": True})
    whole = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    *body, usage_chunk = chunks
    assert usage_chunk.choices == []
    _check_usage(usage_chunk.usage, 10, "length")
    assert body[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in body[:-1])
    assert "".join(c.choices[0].text for c in body) == whole.choices[0].text
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens == 10


# ---------------------------------------------------------------------- sampling parameters


@pytest.mark.parametrize("temperature,seed", [(0.0, 7), (1.0, 42)])
def test_same_seed_same_output(client: openai.OpenAI, temperature: float, seed: int) -> None:
    outs = [client.chat.completions.create(model="smollm2", messages=STORY, max_tokens=20,
                                           temperature=temperature, seed=seed).choices[0].message.content
            for _ in range(2)]
    assert outs[0] and outs[0] == outs[1]


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_is_honoured_and_not_returned(client: openai.OpenAI, stream: bool) -> None:
    args = dict(model="smollm2", prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0)
    free = client.completions.create(**args).choices[0].text
    words = free.split()
    assert len(words) >= 4, free
    stop = words[len(words) // 2]          # a string the unconstrained output reaches mid-way
    if stream:
        chunks = list(client.completions.create(**args, stop=[stop], stream=True))
        text = "".join(c.choices[0].text for c in chunks)
        finish = chunks[-1].choices[0].finish_reason
    else:
        resp = client.completions.create(**args, stop=[stop])
        text, finish = resp.choices[0].text, resp.choices[0].finish_reason
    assert finish == "stop"
    assert stop not in text
    assert text == free[: free.index(stop)]


def test_stop_string_in_chat(client: openai.OpenAI) -> None:
    args = dict(model="smollm2", messages=STORY, max_tokens=20, temperature=0)
    free = client.chat.completions.create(**args).choices[0].message.content
    words = free.split()
    assert len(words) >= 4, free
    stop = words[2]
    resp = client.chat.completions.create(**args, stop=stop)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == free[: free.index(stop)]


def test_response_format_json_object(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="smollm2", messages=JSON_PROMPT, max_tokens=24, temperature=0,
                                          response_format={"type": "json_object"})
    assert resp.choices[0].finish_reason == "stop", resp.choices[0].message.content
    assert isinstance(json.loads(resp.choices[0].message.content), dict)


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="smollm2", messages=JSON_PROMPT, max_tokens=24, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "greeting", "schema": SCHEMA,
                                                                "strict": True}})
    content = resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop", content
    jsonschema.validate(json.loads(content), SCHEMA)


def test_max_completion_tokens(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="smollm2", messages=STORY, max_completion_tokens=5,
                                          temperature=0, extra_body={"ignore_eos": True})
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 5


def test_max_tokens_and_max_completion_tokens_must_agree(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=5, max_completion_tokens=6)
    assert info.value.param == "max_completion_tokens"


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_logit_bias_forces_a_token(client: openai.OpenAI, smollm, endpoint: str) -> None:
    ids = smollm.tokenize(" banana", False, False)
    assert len(ids) == 1
    expected = smollm.detokenize(ids * 4)
    bias = {str(ids[0]): 100}
    if endpoint == "chat":
        resp = client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=4, temperature=0,
                                              logit_bias=bias)
        text = resp.choices[0].message.content
    else:
        resp = client.completions.create(model="smollm2", prompt="My favourite", max_tokens=4, temperature=0,
                                         logit_bias=bias)
        text = resp.choices[0].text
    assert text == expected
    assert resp.usage.completion_tokens == 4


def test_logit_bias_bans_the_greedy_token(client: openai.OpenAI, smollm) -> None:
    args = dict(model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0)
    free = client.completions.create(**args).choices[0].text
    first = smollm.tokenize(free, False, False)[0]
    piece = smollm.detokenize([first])
    assert piece.strip(), free
    banned = client.completions.create(**args, logit_bias={str(first): -100}).choices[0].text
    assert not banned.startswith(piece), (free, banned)


# ---------------------------------------------------------------------- embeddings


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    inputs = ["The cat sat on the mat.", "Stock markets fell sharply today."]
    floats = client.embeddings.create(model="smollm2", input=inputs, encoding_format="float")
    assert floats.model == DEFAULT
    assert [d.index for d in floats.data] == [0, 1]
    vectors = [d.embedding for d in floats.data]
    assert len(vectors[0]) == len(vectors[1]) > 0
    for v in vectors:
        assert all(math.isfinite(x) for x in v)
        assert any(x != 0.0 for x in v)
    assert vectors[0] != vectors[1]
    assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens

    # the SDK's default asks for base64 and decodes it: the same vectors, to float32 precision
    decoded = client.embeddings.create(model="smollm2", input=inputs)
    for a, b in zip(vectors, (d.embedding for d in decoded.data)):
        assert len(a) == len(b)
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5

    # asked for explicitly, base64 comes back as the string itself
    raw = client.embeddings.create(model="smollm2", input=inputs[0], encoding_format="base64")
    text = raw.data[0].embedding
    assert isinstance(text, str)
    unpacked = _decode_b64(text)
    assert len(unpacked) == len(vectors[0])
    assert max(abs(x - y) for x, y in zip(unpacked, vectors[0])) < 1e-5


def test_embeddings_of_the_other_variant(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model=Q8, input="hello world", encoding_format="float")
    assert resp.model == Q8
    assert any(x != 0.0 for x in resp.data[0].embedding)


# ---------------------------------------------------------------------- models


def test_models_list_has_both_variants(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert DEFAULT in ids and Q8 in ids
    assert len(ids) == len(set(ids))


def test_models_retrieve(client: openai.OpenAI) -> None:
    model = client.models.retrieve(Q8)
    assert model.id == Q8
    assert model.object == "model"
    assert model.owned_by


def test_models_retrieve_unknown(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model:q4_0")


@pytest.mark.parametrize("asked,served", [("smollm2", DEFAULT), ("smollm2:latest", DEFAULT),
                                          (DEFAULT, DEFAULT), (Q8, Q8), ("SmolLM2:Q8_0", Q8)])
def test_model_choice(client: openai.OpenAI, asked: str, served: str) -> None:
    resp = client.chat.completions.create(model=asked, messages=HELLO, max_tokens=4, temperature=0)
    assert resp.model == served
    assert resp.choices[0].message.content

