"""Log-probabilities and several choices (issue 13) through the official ``openai`` and ``ollama``
clients, on a real server with the real SmolLM2: logprobs agree with the sampled token and between
streaming and not; ``n`` choices share one prefill, are identical when greedy (and to n = 1), differ and
reproduce with a seed; the bounds are clear 400s.
"""

from __future__ import annotations

import json
import math
import time

import ollama
import openai
import pytest
from supervisor_harness import module_server, openai_client

MODEL = "smollm2:q4_1"
STORY = [{"role": "user", "content": "Tell me a story about a dragon."}]
GREEDY = {"temperature": 0, "max_tokens": 12}


# one KV stream per sequence: in a shared (unified) cache llama.cpp's CPU attention numbers depend on the
# other sequences' cells (docs/engine.md), so greedy choices could part after a few tokens
server = module_server("logprobs", n_parallel=4, kv_unified=False)


@pytest.fixture
def client(server):
    with openai_client(server) as c:
        yield c


def _entries(lp) -> list[tuple[str, float]]:
    return [(e.token, e.logprob) for e in lp.content]


def test_chat_logprobs_are_those_of_the_sampled_tokens(client):
    r = client.chat.completions.create(model=MODEL, messages=STORY, logprobs=True, top_logprobs=3, **GREEDY)
    choice = r.choices[0]
    content = choice.logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(e.token for e in content) == choice.message.content
    for e in content:
        assert e.logprob <= 0 and bytes(e.bytes).decode("utf-8", "replace") == e.token
        assert len(e.top_logprobs) == 3
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        # greedy: the sampled token is the most likely one
        assert (e.top_logprobs[0].token, e.top_logprobs[0].logprob) == (e.token, e.logprob)
    assert sum(math.exp(t.logprob) for t in content[0].top_logprobs) <= 1.0001


def test_streamed_logprobs_agree_with_the_whole_answer(client):
    whole = client.chat.completions.create(model=MODEL, messages=STORY, logprobs=True, **GREEDY)
    streamed = []
    with client.chat.completions.create(model=MODEL, messages=STORY, logprobs=True, stream=True, **GREEDY) as s:
        for chunk in s:
            for c in chunk.choices:
                if c.logprobs is not None and c.logprobs.content:
                    streamed += _entries(c.logprobs)
    assert [t for t, _ in streamed] == [t for t, _ in _entries(whole.choices[0].logprobs)]
    assert all(math.isclose(a, b, abs_tol=1e-4) for (_, a), (_, b) in zip(streamed, _entries(
        whole.choices[0].logprobs), strict=True))


def test_without_logprobs_there_are_none(client):
    r = client.chat.completions.create(model=MODEL, messages=STORY, **GREEDY)
    assert r.choices[0].logprobs is None


def test_legacy_completions_logprobs_and_echo(client):
    r = client.completions.create(model=MODEL, prompt="Once upon a time", logprobs=2, **GREEDY)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens
    assert "".join(lp.tokens) == r.choices[0].text and lp.text_offset[0] == 0
    assert all(1 <= len(t) <= 2 for t in lp.top_logprobs)
    echoed = client.completions.create(model=MODEL, prompt="Once upon a time", echo=True, **GREEDY)
    assert echoed.choices[0].text == "Once upon a time" + r.choices[0].text


def test_greedy_choices_are_identical_and_equal_to_one(client):
    one = client.chat.completions.create(model=MODEL, messages=STORY, **GREEDY)
    four = client.chat.completions.create(model=MODEL, messages=STORY, n=4, **GREEDY)
    assert [c.index for c in four.choices] == [0, 1, 2, 3]
    assert {c.message.content for c in four.choices} == {one.choices[0].message.content}
    assert four.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once
    assert four.usage.completion_tokens == 4 * one.usage.completion_tokens


def test_seeded_choices_differ_and_reproduce(client):
    kw = {"model": MODEL, "messages": STORY, "n": 4, "temperature": 1.0, "seed": 7, "max_tokens": 16}
    a = [c.message.content for c in client.chat.completions.create(**kw).choices]
    b = [c.message.content for c in client.chat.completions.create(**kw).choices]
    assert a == b and len(set(a)) > 1


def test_streamed_choices_each_finish_once(client):
    texts, finished = {}, []
    with client.chat.completions.create(model=MODEL, messages=STORY, n=3, stream=True, **GREEDY) as s:
        for chunk in s:
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
                if c.finish_reason:
                    finished.append(c.index)
    assert sorted(finished) == [0, 1, 2] and len(set(texts.values())) == 1


def test_text_completions_take_n_too(client):
    r = client.completions.create(model=MODEL, prompt="Once upon a time", n=2, logprobs=1, **GREEDY)
    assert [c.index for c in r.choices] == [0, 1] and r.choices[0].text == r.choices[1].text
    assert r.choices[1].logprobs.tokens == r.choices[0].logprobs.tokens


@pytest.mark.parametrize("kw, param", [
    ({"n": 9}, "n"), ({"n": 0}, "n"), ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
])
def test_bounds_are_clear_400s(client, kw, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=STORY, **{**GREEDY, **kw})
    assert e.value.status_code == 400 and e.value.body["param"] == param


def test_ollama_logprobs_and_think(server):
    c = ollama.Client(host=server.url)
    r = c.chat(model=MODEL, messages=STORY, logprobs=True, top_logprobs=2, think=False,
               options={"temperature": 0, "num_predict": 8})
    assert len(r.logprobs) == r.eval_count and all(len(e.top_logprobs) == 2 for e in r.logprobs)
    assert "".join(e.token for e in r.logprobs) == r.message.content
    streamed = [e for part in c.chat(model=MODEL, messages=STORY, logprobs=True, stream=True,
                                     options={"temperature": 0, "num_predict": 8}) for e in part.logprobs or []]
    assert [e.token for e in streamed] == [e.token for e in r.logprobs]
    g = c.generate(model=MODEL, prompt="Hi", think=True, options={"num_predict": 4})  # a model that does not reason
    assert g.thinking in (None, "") and g.done
    with pytest.raises(ollama.ResponseError):
        c.chat(model=MODEL, messages=STORY, logprobs=True, top_logprobs=21)


def test_choices_of_a_tool_call_are_each_a_valid_call(client):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                       tools=[tool], tool_choice="required", n=2, temperature=0.9, seed=3,
                                       max_tokens=48)
    assert [c.index for c in r.choices] == [0, 1]
    for c in r.choices:
        (call,) = c.message.tool_calls
        assert c.finish_reason == "tool_calls" and call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert r.choices[0].message.tool_calls[0].id != r.choices[1].message.tool_calls[0].id


def test_a_client_that_leaves_frees_every_choice_s_slot(server, client):
    stream = client.chat.completions.create(model=MODEL, messages=STORY, n=3, max_tokens=2000, temperature=0,
                                            stream=True, extra_body={"ignore_eos": True})
    for received, _ in enumerate(stream, 1):
        if received == 6:
            break
    stream.close()
    deadline = time.monotonic() + 5.0  # left alone, 3 x 2000 tokens would take minutes
    while True:
        status, kv = server.call("GET", f"/internal/kv/{MODEL}")
        busy = [s for s in kv["slots"] if s["state"] != "idle"] if status == 200 else ["?"]
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not busy, busy
