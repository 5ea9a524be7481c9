"""Presets end to end (docs/presets.md) on one real ``mullama serve`` with SmolLM2: presets from the config
and from /api/create (the ``ollama`` client's body, and ``mullama create -f``) are listed like models, shape
their requests (system prompt, sampling defaults, stop strings, template), answer under their own name,
are served by their base's one runner, survive a restart, and are refused clearly when they are bad."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ollama
import openai
import pytest
from supervisor_harness import REPO_ROOT, Server, base_settings

BASE = "smollm2:q4_1"
SYSTEM = "You are a pirate. Answer like a pirate."
ASK = [{"role": "user", "content": "Say hello in one short sentence."}]
PRESETS = {
    "pirate": {"from": "smollm2", "system": SYSTEM, "parameters": {"temperature": 0, "max_tokens": 16}},
    "stopper": {"from": BASE, "parameters": {"temperature": 0, "stop": ["e"]}},
    "plain": {"from": BASE, "template": "chatml", "parameters": {"temperature": 0}},
}


def _settings(work: Path) -> dict:
    return base_settings(threads=1, threads_batch=1, n_parallel=2, models_dirs=[str(work / "models")],
                         presets=PRESETS)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("presets")
    (work / "models").mkdir()  # created presets go to <models>/.presets; the bundled model is smollm2:q4_1
    return work


@pytest.fixture(scope="module")
def server(work: Path) -> Iterator[Server]:
    srv = Server(work, _settings(work))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as client:
        yield client


def _chat(oai: openai.OpenAI, model: str, messages: list[dict], **kw) -> openai.types.chat.ChatCompletion:
    return oai.chat.completions.create(model=model, messages=messages, **kw)


def test_a_preset_answers_as_its_base_with_its_system_prompt_and_defaults(server: Server, oai) -> None:
    preset = _chat(oai, "pirate", ASK)
    base = _chat(oai, BASE, [{"role": "system", "content": SYSTEM}, *ASK], temperature=0, max_tokens=16)
    assert preset.model == "pirate" and base.model == BASE
    assert preset.choices[0].message.content == base.choices[0].message.content  # greedy, same prompt
    assert preset.usage.prompt_tokens == base.usage.prompt_tokens
    assert preset.usage.completion_tokens <= 16
    own = _chat(oai, "pirate", [{"role": "system", "content": "Be terse."}, *ASK], max_tokens=4)
    assert own.usage.prompt_tokens < preset.usage.prompt_tokens and own.usage.completion_tokens <= 4
    r = ollama.Client(host=server.url).chat(model="pirate", messages=ASK)
    assert r.model == "pirate" and r.message.content == preset.choices[0].message.content


def test_a_preset_s_stop_string_stops_unless_the_request_has_its_own(oai) -> None:
    silent = _chat(oai, "stopper", ASK, max_tokens=16)
    assert "e" not in silent.choices[0].message.content and silent.choices[0].finish_reason == "stop"
    own = _chat(oai, "stopper", ASK, max_tokens=16, stop=["zzz"])
    assert "e" in own.choices[0].message.content


def test_a_preset_s_template_replaces_the_base_s(oai) -> None:
    """SmolLM2's own template adds a default system prompt; llama.cpp's built-in chatml does not."""
    plain = _chat(oai, "plain", ASK, max_tokens=4)
    base = _chat(oai, BASE, ASK, max_tokens=4, temperature=0)
    assert plain.usage.prompt_tokens < base.usage.prompt_tokens


def test_presets_share_their_base_s_runner(server: Server, oai) -> None:
    for model in ("pirate", "stopper", BASE, "smollm2"):
        _chat(oai, model, ASK, max_tokens=2)
    status, body = server.call("GET", "/api/ps")
    assert status == 200 and [m["name"] for m in body["models"]] == [BASE], body
    status, body = server.call("GET", "/internal/models")
    assert status == 200 and [m["name"] for m in body["models"]] == [BASE], body


def test_created_and_configured_presets_are_listed_and_shown(server: Server, oai) -> None:
    client = ollama.Client(host=server.url)
    done = client.create(model="made", from_="smollm2", system="You are terse.", parameters={"temperature": 0.1})
    assert done.status == "success"
    streamed = [p.status for p in client.create(model="made2", from_="made", stream=True,
                                                parameters={"num_predict": 8})]
    assert streamed[0].startswith("using existing layer sha256:") and streamed[-1] == "success"
    listed = {m.model: m for m in client.list().models}
    assert {"pirate", "stopper", "made", "made2", BASE} <= set(listed)
    assert listed["made"].details.parent_model == BASE and listed["made"].size == listed[BASE].size
    assert {"pirate", "made", "made2"} <= {m.id for m in oai.models.list().data}
    shown = client.show("made2")
    assert "temperature 0.1" in shown.parameters and "num_predict 8" in shown.parameters
    assert "FROM smollm2" in shown.modelfile and 'SYSTEM """You are terse."""' in shown.modelfile
    assert client.show("pirate").parameters.splitlines()[:2] == ["temperature 0.0", "num_predict 16"]
    answer = _chat(oai, "made2", ASK)
    assert answer.model == "made2" and answer.usage.completion_tokens <= 8


def test_delete_and_refusals(server: Server) -> None:
    client = ollama.Client(host=server.url)
    client.create(model="doomed", from_=BASE)
    client.delete("doomed")
    assert "doomed" not in {m.model for m in client.list().models}
    for kwargs, status, words in [
        ({"model": "x", "from_": BASE, "template": "{{ .Prompt }}"}, 400, "Go template"),
        ({"model": "x", "from_": BASE, "parameters": {"num_ctx": 4096}}, 400, "num_ctx: a load setting"),
        ({"model": "x", "from_": "no-such-model"}, 404, "no-such-model"),
        ({"model": "x", "from_": BASE, "quantize": "q4_K_M"}, 400, "quantize"),
        ({"model": "smollm2", "from_": BASE}, 409, "name of a model"),
    ]:
        with pytest.raises(ollama.ResponseError) as info:
            client.create(**kwargs)
        assert info.value.status_code == status and words in info.value.error, info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("pirate")
    assert info.value.status_code == 409 and "config file" in info.value.error


def _mullama(server: Server, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MULLAMA_HOST": server.url, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("MULLAMA_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "mullama.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=str(REPO_ROOT), check=False)


def test_mullama_create_and_list(server: Server, work: Path) -> None:
    good = work / "Modelfile"
    good.write_text('FROM smollm2\nSYSTEM """Reply in French."""\nPARAMETER temperature 0\nPARAMETER stop "###"\n')
    out = _mullama(server, "create", "french", "-f", str(good))
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "success", out.stderr
    listed = _mullama(server, "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("french "))
    assert "preset of smollm2:q4_1" in row
    shown = _mullama(server, "show", "french")
    assert shown.returncode == 0 and "Reply in French." in shown.stdout
    bad = work / "Bad"
    bad.write_text("FROM smollm2\nPARAMETER warmth 3\n")
    out = _mullama(server, "create", "bad", "-f", str(bad))
    assert out.returncode == 1 and "PARAMETER warmth: unknown parameter" in out.stderr and "HTTP 400" in out.stderr
    missing = _mullama(server, "create", "bad", "-f", str(work / "absent"))
    assert missing.returncode == 1 and "cannot read the Modelfile" in missing.stderr


def test_created_presets_survive_a_restart(server: Server, work: Path) -> None:
    ollama.Client(host=server.url).create(model="kept", from_=BASE, system="Kept.")
    again = Server(work, _settings(work))
    try:
        status, body = again.call("POST", "/api/show", {"model": "kept"})
        assert status == 200 and body["system"] == "Kept.", body
    finally:
        again.stop()
