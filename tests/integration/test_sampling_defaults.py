"""A model's sampling defaults from the config (``[models.NAME.sampling]``, issue 19) reach its requests on
every API when the request leaves the field out, and never override what a request sets."""

from __future__ import annotations

import ollama
import openai
import pytest
from supervisor_harness import Server, base_settings

from mullama import engine

MODEL = "smollm2:q4_1"
ASK = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = base_settings(n_parallel=2, models={"smollm2": {"sampling": {"stop": ["e"], "temperature": 0},
                                                               "pooling": "last"}})
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


def test_the_model_s_pooling_setting_shapes_its_embeddings(server, smollm):
    """[models.smollm2] pooling = "last": the server's vector is the engine's last-token pooling, not mean."""
    with openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as client:
        got = client.embeddings.create(model=MODEL, input="The sky is blue.").data[0].embedding
    tokens = smollm.tokenize("The sky is blue.", True, False)

    def engine_vector(pooling: str) -> list[float]:
        with engine.Context(smollm, engine.ContextParams(n_ctx=512, n_batch=512, n_ubatch=512, embeddings=True,
                                                         pooling=pooling, n_threads=2)) as ctx:
            return ctx.embed([tokens])[0]

    def close(a: list[float], b: list[float]) -> bool:
        return max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-3

    assert close(got, engine_vector("last")) and not close(got, engine_vector("mean"))
