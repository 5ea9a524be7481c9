"""A model's sampling defaults from the config (``[models.NAME.sampling]``, issue 19) reach its requests on
every API when the request leaves the field out, and never override what a request sets."""

from __future__ import annotations

import ollama
import openai
import pytest
from supervisor_harness import Server, base_settings

MODEL = "smollm2:q4_1"
ASK = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = base_settings(n_parallel=2, models={"smollm2": {"sampling": {"stop": ["e"], "temperature": 0}}})
    srv = Server(tmp_path_factory.mktemp("sampling-defaults"), settings)
    yield srv
    srv.stop()


def test_defaults_apply_when_the_request_is_silent_and_yield_when_it_is_not(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as client:
        silent = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16)
        assert "e" not in silent.choices[0].message.content and silent.choices[0].finish_reason == "stop"
        own = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16, stop=["zzz"])
        assert "e" in own.choices[0].message.content
        again = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16)
        assert again.choices[0].message.content == silent.choices[0].message.content  # temperature 0
    r = ollama.Client(host=server.url).chat(model=MODEL, messages=ASK, options={"num_predict": 16})
    assert "e" not in r.message.content and r.done_reason == "stop"
