"""The Anthropic Messages API through the official ``anthropic`` SDK, on a real server with the real
SmolLM2: messages (plain, system, stop sequences, max_tokens), streaming with the SDK's helper, tools
(forced, named, a round trip with tool_result, streamed as input_json_delta), count_tokens, API keys, and
every bad input a 4xx in Anthropic's shape. SmolLM2's template knows no tools: they take the generic JSON
format, where tool_choice any/tool makes the grammar force a call that fits the tool's input_schema.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import jsonschema
import pytest
from supervisor_harness import Server, base_settings

MODEL = "smollm2:q4_1"
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
STORY = [{"role": "user", "content": "Tell me a story about a dragon."}]
WEATHER = {"name": "get_weather", "description": "The current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                             "unit": {"enum": ["celsius", "fahrenheit"]}},
                            "required": ["city", "unit"], "additionalProperties": False}}
TIME = {"name": "get_time", "description": "The local time in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
#: this SDK has no sampling arguments any more; the API (and this server) still takes them in the body
GREEDY: dict[str, Any] = {"model": MODEL, "max_tokens": 96, "extra_body": {"temperature": 0}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("anthropic"), base_settings(n_parallel=2))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0, timeout=120) as c:
        yield c


def _tool_uses(message, tool: dict) -> list[Any]:
    """The message's tool_use blocks (parallel calls are allowed unless disabled), each fitting the schema."""
    calls = [b for b in message.content if b.type == "tool_use"]
    assert calls and len({c.id for c in calls}) == len(calls)
    for call in calls:
        assert call.id.startswith("toolu_") and call.name == tool["name"]
        jsonschema.validate(call.input, tool["input_schema"])
    return calls


# ---------------------------------------------------------------------- messages


def test_a_message(client):
    r = client.messages.create(messages=HELLO, **GREEDY)
    assert r.type == "message" and r.role == "assistant" and r.id.startswith("msg_") and r.model == MODEL
    (block,) = r.content
    assert block.type == "text" and block.text.strip()
    assert r.stop_reason in ("end_turn", "max_tokens") and r.stop_sequence is None
    assert r.usage.input_tokens + (r.usage.cache_read_input_tokens or 0) > 0 and r.usage.output_tokens > 0


def test_system_and_headers_are_taken(client):
    r = client.messages.create(system=[{"type": "text", "text": "You only answer in French."}], messages=HELLO,
                               extra_headers={"anthropic-beta": "tools-2024-04-04"}, **GREEDY)
    assert r.content[0].text.strip()


def test_max_tokens_is_the_stop_reason(client):
    r = client.messages.create(model=MODEL, messages=STORY, max_tokens=3)
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3


def test_a_stop_sequence_ends_the_answer(client):
    text = client.messages.create(messages=STORY, **GREEDY).content[0].text
    word = text.split()[2]
    r = client.messages.create(messages=STORY, stop_sequences=[word], **GREEDY)
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == word
    assert word not in r.content[0].text and text.startswith(r.content[0].text)


def test_the_sdk_stream_helper_adds_up(client):
    with client.messages.stream(messages=STORY, **GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    assert final.content[0].type == "text"
    whole = client.messages.create(messages=STORY, **GREEDY)
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens == \
        whole.usage.input_tokens + whole.usage.cache_read_input_tokens


# ---------------------------------------------------------------------- tools


def test_any_forces_a_tool_use_that_fits_the_schema(client):
    r = client.messages.create(messages=ASK, tools=[WEATHER], tool_choice={"type": "any"}, **GREEDY)
    assert r.stop_reason == "tool_use"
    _tool_uses(r, WEATHER)


def test_a_named_tool_is_the_one_used(client):
    r = client.messages.create(messages=ASK, tools=[WEATHER, TIME], tool_choice={
        "type": "tool", "name": "get_time", "disable_parallel_tool_use": True}, **GREEDY)
    assert len(_tool_uses(r, TIME)) == 1


def test_a_tool_result_round_trip(client):
    first = client.messages.create(messages=ASK, tools=[WEATHER], tool_choice={"type": "any"}, **GREEDY)
    results = [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"}
               for call in _tool_uses(first, WEATHER)]
    history = [*ASK, {"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
    second = client.messages.create(messages=history, tools=[WEATHER], tool_choice={"type": "none"}, **GREEDY)
    assert second.content and second.content[0].type == "text" and second.content[0].text.strip()
    count = client.messages.count_tokens(model=MODEL, messages=history, tools=[WEATHER],
                                         tool_choice={"type": "none"})
    assert count.input_tokens == second.usage.input_tokens + second.usage.cache_read_input_tokens


def test_a_streamed_tool_use_arrives_as_input_json_deltas(client):
    whole = client.messages.create(messages=ASK, tools=[WEATHER], tool_choice={"type": "any"}, **GREEDY)
    with client.messages.stream(messages=ASK, tools=[WEATHER], tool_choice={"type": "any"}, **GREEDY) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "input_json_delta" in deltas
    assert final.stop_reason == "tool_use"
    assert [c.input for c in _tool_uses(final, WEATHER)] == [c.input for c in _tool_uses(whole, WEATHER)]


# ---------------------------------------------------------------------- count_tokens


def test_count_tokens_is_the_prompt_a_message_uses(client):
    count = client.messages.count_tokens(model=MODEL, system="Be brief.", messages=HELLO)
    r = client.messages.create(system="Be brief.", messages=HELLO, **GREEDY)
    assert count.input_tokens == r.usage.input_tokens + r.usage.cache_read_input_tokens > 0
    with_tools = client.messages.count_tokens(model=MODEL, system="Be brief.", messages=HELLO, tools=[WEATHER])
    assert with_tools.input_tokens > count.input_tokens


# ---------------------------------------------------------------------- errors


def _raw(server: Server, method: str, path: str, data: bytes | None) -> tuple[int, Any]:
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _anthropic_error(body: Any, kind: str) -> str:
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind
    return body["error"]["message"]


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


@pytest.mark.parametrize("kw, words", [
    ({"messages": [{"role": "user", "content": [IMAGE]}]}, "images are not supported"),
    ({"messages": []}, "non-empty"),
    ({"messages": [*HELLO, {"role": "assistant", "content": "Sure"}]}, "prefill"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}]},
     "answers no tool_use"),
    ({"messages": [*ASK, {"role": "assistant", "content": [{"type": "tool_use", "id": "", "name": "get_weather",
                                                            "input": {}}]},
                   {"role": "user", "content": "go on"}]}, "non-empty id"),
    ({"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "not in 'tools'"),
    ({"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "maybe"}}, "'maybe'"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "'video' are not supported"),
    ({"messages": HELLO, "extra_body": {"temperature": 1.5}}, "temperature"),
])
def test_bad_requests_are_400s_the_sdk_raises(client, kw, words):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(**{**GREEDY, **kw})
    assert words in _anthropic_error(info.value.body, "invalid_request_error")


def test_raw_bad_bodies_and_paths(server):
    for data, words in ((b"{nope", "not valid JSON"), (b"", "empty"),
                        (json.dumps({"model": MODEL, "messages": HELLO}).encode(), "'max_tokens'")):
        status, body = _raw(server, "POST", "/v1/messages", data)
        assert status == 400 and words in _anthropic_error(body, "invalid_request_error")
    status, body = _raw(server, "POST", "/v1/messages/count_tokens", json.dumps({"model": MODEL}).encode())
    assert status == 400 and "'messages'" in _anthropic_error(body, "invalid_request_error")
    status, body = _raw(server, "GET", "/v1/messages", None)
    assert status == 405
    _anthropic_error(body, "invalid_request_error")


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(**{**GREEDY, "model": "claude-sonnet-4-5"}, messages=HELLO)
    assert "claude-sonnet-4-5" in _anthropic_error(info.value.body, "not_found_error")


def test_x_api_key_is_checked(tmp_path):
    srv = Server(tmp_path, base_settings(api_keys=["sesame"]))
    try:
        with anthropic.Anthropic(base_url=srv.url, api_key="wrong", max_retries=0) as bad, \
                pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.create(messages=HELLO, **GREEDY)
        _anthropic_error(info.value.body, "authentication_error")
        # the SDK sends the key as x-api-key: past the key check, refused before any model loads
        with anthropic.Anthropic(base_url=srv.url, api_key="sesame", max_retries=0) as good, \
                pytest.raises(anthropic.BadRequestError):
            good.messages.create(**{**GREEDY, "messages": []})
    finally:
        srv.stop()
