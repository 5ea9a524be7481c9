"""llama.cpp's samplers beyond OpenAI's through the real server (issue 19): by llama-server's names on the
OpenAI routes, by Ollama's option names through the ``ollama`` client; an unknown sampler name, an
out-of-range value or an option of a sampler llama.cpp removed is a clear 400, never a 5xx."""

from __future__ import annotations

import ollama
import openai
import pytest
from supervisor_harness import module_server, openai_client

MODEL = "smollm2:q4_1"
ASK = [{"role": "user", "content": "Name three colours."}]


server = module_server("samplers", n_parallel=2)


@pytest.fixture
def client(server):
    with openai_client(server) as c:
        yield c


@pytest.mark.parametrize("extra", [
    {"mirostat": 2, "mirostat_tau": 4.0, "mirostat_eta": 0.2},
    {"xtc_probability": 0.5, "xtc_threshold": 0.1, "dry_multiplier": 0.8, "dry_sequence_breakers": ["\n"]},
    {"top_n_sigma": 1.5, "dynatemp_range": 0.5, "typical_p": 0.9, "min_keep": 1},
    {"samplers": ["min_p", "temperature"], "min_p": 0.1},
])
def test_llama_server_sampler_fields_generate(client, extra):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, seed=1, extra_body=extra)
    assert r.choices[0].message.content and r.usage.completion_tokens > 0
    c = client.completions.create(model=MODEL, prompt="Colours:", max_tokens=4, seed=1, extra_body=extra)
    assert c.usage.completion_tokens > 0


@pytest.mark.parametrize("extra, fragment", [
    ({"mirostat": 3}, "mirostat"), ({"xtc_probability": 1.5}, "xtc_probability"),
    ({"dry_sequence_breakers": [""]}, "dry_sequence_breakers"), ({"samplers": ["bogus"]}, "bogus"),
])
def test_bad_sampler_values_are_400(client, extra, fragment):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, extra_body=extra)
    assert fragment in e.value.message


def test_ollama_sampler_options_are_used_or_refused(server):
    c = ollama.Client(host=server.url)
    r = c.chat(model=MODEL, messages=ASK, options={"mirostat": 2, "mirostat_tau": 3.0, "typical_p": 0.9,
                                                   "num_predict": 6, "tfs_z": 1.0, "penalize_newline": False})
    assert r.done and r.eval_count > 0
    with pytest.raises(ollama.ResponseError) as e:
        c.chat(model=MODEL, messages=ASK, options={"tfs_z": 0.9, "num_predict": 2})
    assert e.value.status_code == 400 and "tfs_z" in str(e.value)
