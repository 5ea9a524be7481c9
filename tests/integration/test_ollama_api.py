"""The Ollama-compatible routes through the official ``ollama`` Python client (sync and async, streaming
and not) against one real ``mullama serve`` for the module, serving SmolLM2 ("smollm2" = smollm2:q4_1).

The client validates every answer with its pydantic models and raises ``ResponseError(error, status)``
on an error body or an ``{"error": ...}`` line mid-stream, so a shape we get wrong fails here. Outputs
are compared only under greedy decoding (temperature 0); num_predict stays small.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import ollama
import pytest
from supervisor_harness import REPO_ROOT, Server, base_settings

MODEL = "smollm2"
NAME = "smollm2:q4_1"
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
GREEDY = {"temperature": 0, "num_predict": 12}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"}},
          "required": ["name", "ok"], "additionalProperties": False}
NS_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("ollama-api")
    (work / "models").mkdir()   # only the bundled model: one name, smollm2:q4_1
    srv = Server(work, base_settings(threads=1, threads_batch=1, n_parallel=2, models_dirs=[str(work / "models")]))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


def loaded(server: Server) -> set[str]:
    status, body = server.call("GET", "/api/ps")
    assert status == 200, body
    return {m["name"] for m in body["models"]}


def assert_final(r: Any, *, max_eval: int) -> None:
    assert r.done is True and r.done_reason in ("stop", "length")
    assert r.model == NAME and NS_TIME.fullmatch(r.created_at)
    assert 0 < r.prompt_eval_count and 0 < r.eval_count <= max_eval
    assert r.total_duration > 0 and r.prompt_eval_duration > 0 and r.eval_duration > 0
    assert r.load_duration >= 0
    assert r.total_duration >= r.eval_duration  # all nanoseconds, from one clock chain


# ---------------------------------------------------------------------- generate


def test_generate_not_streamed(client: ollama.Client) -> None:
    r = client.generate(model=MODEL, prompt="Say hello.", options=GREEDY)
    assert r.response and isinstance(r.response, str)
    assert_final(r, max_eval=12)
    assert r.context is None                    # token context is not returned (docs/ollama.md)


def test_generate_streamed_matches_the_whole_answer(client: ollama.Client) -> None:
    whole = client.generate(model=MODEL, prompt="Name a colour.", options=GREEDY)
    parts = list(client.generate(model=MODEL, prompt="Name a colour.", options=GREEDY, stream=True))
    assert len(parts) >= 2 and all(p.done is False for p in parts[:-1])
    assert all(NS_TIME.fullmatch(p.created_at) for p in parts)
    assert "".join(p.response for p in parts) == whole.response
    assert parts[-1].response == "" and parts[-1].eval_count == whole.eval_count
    assert_final(parts[-1], max_eval=12)


def test_raw_generate_and_system(client: ollama.Client) -> None:
    raw = client.generate(model=MODEL, prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                          raw=True, options=GREEDY)
    templated = client.generate(model=MODEL, prompt="Hi", system="You are a helpful AI assistant named SmolLM, "
                                "trained by Hugging Face", options=GREEDY)
    assert raw.response and templated.response
    assert raw.prompt_eval_count < templated.prompt_eval_count  # the template adds the system turn


def test_options_reach_the_sampler(client: ollama.Client, server: Server) -> None:
    # num_ctx up to the model's n_ctx (2048 here) and the load settings it has are accepted; num_keep is mapped
    r = client.generate(model=MODEL, prompt="Count: 1, 2, 3,", raw=True,
                        options={"temperature": 0, "num_predict": 3, "num_ctx": 2048, "mirostat": 0, "num_keep": 4,
                                 "use_mmap": True, "num_gpu": -1, "f16_kv": True, "no_such_option": 1})
    assert r.eval_count == 3 and r.done_reason == "length"
    wait_until(lambda: any("ollama_unknown_options" in line and "no_such_option" in line for line in server.lines))
    stopped = client.generate(model=MODEL, prompt="Count: 1, 2, 3,", raw=True,
                              options={"temperature": 0, "num_predict": 12, "stop": [","]})
    assert "," not in stopped.response and stopped.done_reason == "stop"


# ---------------------------------------------------------------------- chat


def test_chat_not_streamed_and_streamed(client: ollama.Client) -> None:
    whole = client.chat(model=MODEL, messages=HELLO, options=GREEDY)
    assert whole.message.role == "assistant" and whole.message.content
    assert_final(whole, max_eval=12)
    parts = list(client.chat(model=MODEL, messages=HELLO, options=GREEDY, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].message.content == ""


def test_async_client(server: Server) -> None:
    async def main() -> None:
        aclient = ollama.AsyncClient(host=server.url, timeout=120)
        whole = await aclient.chat(model=MODEL, messages=HELLO, options=GREEDY)
        parts = [p async for p in await aclient.chat(model=MODEL, messages=HELLO, options=GREEDY, stream=True)]
        assert "".join(p.message.content for p in parts) == whole.message.content
        gen = await aclient.generate(model=MODEL, prompt="Say hello.", options=GREEDY)
        gparts = [p async for p in await aclient.generate(model=MODEL, prompt="Say hello.", options=GREEDY,
                                                          stream=True)]
        assert "".join(p.response for p in gparts) == gen.response
        emb = await aclient.embed(model=MODEL, input=["a", "b"])
        assert len(emb.embeddings) == 2
        tags = await aclient.list()
        assert NAME in {m.model for m in tags.models}
        ps = await aclient.ps()
        assert NAME in {m.model for m in ps.models}
        with pytest.raises(ollama.ResponseError) as info:
            await aclient.chat(model="no-such-model", messages=HELLO)
        assert info.value.status_code == 404

    asyncio.run(main())


def test_format_json_and_schema(client: ollama.Client) -> None:
    prompt = [{"role": "user", "content": 'Reply with JSON: {"name": "Tom", "ok": true}'}]
    r = client.chat(model=MODEL, messages=prompt, format="json", options={"temperature": 0, "num_predict": 24})
    assert isinstance(json.loads(r.message.content), dict)
    r = client.chat(model=MODEL, messages=prompt, format=SCHEMA, options={"temperature": 0, "num_predict": 24})
    jsonschema.validate(json.loads(r.message.content), SCHEMA)


def test_chat_history(client: ollama.Client) -> None:
    history = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Colour of the sky?"}]
    r = client.chat(model=MODEL, messages=history, options=GREEDY)
    assert r.message.content and r.prompt_eval_count > 20


# ---------------------------------------------------------------------- load, unload, keep_alive, ps


def wait_until(done, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_load_unload_and_keep_alive(client: ollama.Client, server: Server) -> None:
    r = client.generate(model=MODEL, keep_alive=0)
    assert r.done and r.done_reason == "unload" and r.model == NAME
    assert NAME not in loaded(server)

    r = client.generate(model=MODEL, keep_alive="10m")
    assert r.done and r.done_reason == "load" and r.response == ""
    ps = client.ps()
    (row,) = [m for m in ps.models if m.model == NAME]
    left = row.expires_at.timestamp() - time.time()
    assert 500 < left <= 600 and row.size > 0 and row.context_length == 2048
    assert row.details.format == "gguf" and row.details.family == "llama" and len(row.digest) == 64

    c = client.chat(model=MODEL, messages=[])
    assert c.done and c.done_reason == "load" and c.message.role == "assistant"

    # a request with keep_alive 0 unloads the model when it is done, as in Ollama
    r = client.chat(model=MODEL, messages=HELLO, options={"num_predict": 2}, keep_alive=0)
    assert r.done
    wait_until(lambda: NAME not in loaded(server))
    r = client.chat(model=MODEL, messages=HELLO, options={"num_predict": 2}, keep_alive=-1)
    assert r.load_duration > 0             # it had to load again: the load time is measured
    (row,) = [m for m in client.ps().models if m.model == NAME]
    assert row.expires_at is None           # forever


def test_ps_serves_both_shapes(client: ollama.Client, server: Server) -> None:
    client.generate(model=MODEL, keep_alive="5m")
    _, body = server.call("GET", "/api/ps")
    row = {m["name"]: m for m in body["models"]}[NAME]
    assert row["state"] == "ready" and row["processor"] == "100% CPU" and isinstance(row["pid"], int)
    assert row["until"].endswith("from now") and row["digest"].startswith(row["id"])
    out = subprocess.run([sys.executable, "-m", "mullama.cli", "ps"], capture_output=True, text=True, timeout=60,
                         check=False, cwd=REPO_ROOT, env={"MULLAMA_HOST": server.url, "PATH": "/usr/bin:/bin",
                                             "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr
    assert NAME in out.stdout and row["id"] in out.stdout


# ---------------------------------------------------------------------- models


def test_tags_show_version(client: ollama.Client, server: Server) -> None:
    tags = client.list()
    (m,) = [m for m in tags.models if m.model == NAME]
    assert m.size > 10 << 20 and m.details.quantization_level == "Q4_1" and m.details.parameter_size == "135M"
    show = client.show(MODEL)
    assert "<|im_start|>" in show.template and show.template.endswith("{% endif %}")
    assert show.modelinfo["llama.context_length"] == 8192 and show.modelinfo["tokenizer.ggml.tokens"] is None
    assert show.capabilities == ["completion"] and show.license == "apache-2.0"
    assert show.details.family == "llama" and show.modified_at is not None
    status, version = server.call("GET", "/api/version")
    assert status == 200 and re.fullmatch(r"\d+\.\d+\.\d+.*", version["version"])
    with pytest.raises(ollama.ResponseError) as info:
        client.show("no-such-model")
    assert info.value.status_code == 404 and "not found" in info.value.error


# ---------------------------------------------------------------------- embeddings


def test_embed_and_legacy_embeddings(client: ollama.Client) -> None:
    r = client.embed(model=MODEL, input=["The cat sat.", "A dog ran."])
    assert r.model == NAME and len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    assert r.prompt_eval_count > 0 and r.total_duration > 0
    assert math.isclose(math.fsum(v * v for v in r.embeddings[0]), 1.0, rel_tol=1e-3)   # L2-normalised
    one = client.embed(model=MODEL, input="The cat sat.")
    assert one.embeddings[0] == pytest.approx(r.embeddings[0], abs=1e-4)
    short = client.embed(model=MODEL, input="The cat sat.", dimensions=8)
    assert len(short.embeddings[0]) == 8
    assert math.isclose(math.fsum(v * v for v in short.embeddings[0]), 1.0, rel_tol=1e-3)
    legacy = client.embeddings(model=MODEL, prompt="The cat sat.")
    assert legacy.embedding == pytest.approx(r.embeddings[0], abs=1e-4)
    assert client.embed(model=MODEL, input="").embeddings == []    # load only


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("call, status, words", [
    (lambda c: c.generate(model="no-such-model", prompt="x"), 404, "not found"),
    (lambda c: list(c.generate(model="no-such-model", prompt="x", stream=True)), 404, "not found"),
    (lambda c: c.chat(model="no-such-model", messages=HELLO), 404, "not found"),
    (lambda c: c.embed(model="no-such-model", input="x"), 404, "not found"),
    (lambda c: c.generate(model=MODEL, prompt="x", options={"temperature": "hot"}), 400, "options.temperature"),
    (lambda c: c.chat(model=MODEL, messages=HELLO, options={"num_predict": 1.5}), 400, "options.num_predict"),
    (lambda c: c.chat(model=MODEL, messages=HELLO, think="max"), 400, "think"),
    (lambda c: c.chat(model=MODEL, messages=HELLO, tools=[{"type": "function", "function": {"name": "f g"}}]),
     400, "tools[0].function.name"),
    (lambda c: c.generate(model=MODEL, prompt="x", keep_alive="soon"), 400, "keep_alive"),
    # load-time options the model (n_ctx 2048, 2 slots) does not satisfy: 400 naming the option and the setting
    (lambda c: c.generate(model=MODEL, prompt="x", options={"num_ctx": 32768}), 400,
     f'options.num_ctx=32768: model "{NAME}" serves at most 2048 tokens per request'),
    (lambda c: list(c.chat(model=MODEL, messages=HELLO, options={"num_ctx": 4096}, stream=True)), 400,
     f'[models."{NAME}"] n_ctx'),
    (lambda c: c.chat(model=MODEL, options={"num_ctx": 4096}), 400, "options.num_ctx"),     # a load, too
    (lambda c: c.embed(model=MODEL, input="x", options={"use_mlock": True}), 400, "options.use_mlock=true"),
    (lambda c: c.embeddings(model=MODEL, prompt="x", options={"vocab_only": True}), 400, "options.vocab_only"),
    (lambda c: c.generate(model="../x", prompt="x"), 400, "path"),
])
def test_errors_reach_the_client(client: ollama.Client, call, status: int, words: str) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        call(client)
    assert info.value.status_code == status and words in info.value.error


def test_root_answers_like_ollama(server: Server) -> None:
    import urllib.request

    with urllib.request.urlopen(server.url + "/", timeout=10) as resp:
        assert resp.status == 200 and resp.read() == b"Ollama is running"
