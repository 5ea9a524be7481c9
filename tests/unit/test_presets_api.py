"""Presets over the API on the real app (no runner): /api/create in both of Ollama's body forms, the listings,
/api/show, delete and copy, the refusals, and that a created preset is a file that outlives the server."""

from __future__ import annotations

import json
from typing import Any

import openapi_checks
import pytest
from openapi_checks import check

from mullama.config.presets import PresetParameters, PresetSettings
from mullama.models.presets import PRESET_DIR, Presets

make_client = openapi_checks.make_client  # the real app over a models dir with "tiny" (tiny:f32) and junk

CONFIGURED = {"fixed": PresetSettings(from_="tiny", system="From the config.",
                                      parameters=PresetParameters(temperature=0.0))}
MODELFILE = '''# a preset of tiny
FROM tiny
SYSTEM """You answer in French."""
PARAMETER temperature 0.2
PARAMETER stop "<|im_end|>"
PARAMETER stop "###"
PARAMETER num_predict 32
MESSAGE user Bonjour
MESSAGE assistant """Bonjour !"""
'''


async def _client(make_client):
    return await make_client(presets=CONFIGURED)


async def _create(client, body: dict[str, Any], status: int = 200) -> Any:
    return await check(client, "post", "/api/create", "/api/create", {"stream": False, **body}, status)


async def test_create_from_fields_lists_and_shows_the_preset(make_client, tmp_path) -> None:
    client = await _client(make_client)
    try:
        body = {"model": "Coder", "from": "tiny", "system": "You write code.",
                "parameters": {"temperature": 0.3, "stop": ["\n\n"], "num_predict": 50},
                "messages": [{"role": "user", "content": "hi"}], "adapters": {"sql.gguf": "sha256:00"},
                "license": ["MIT", "Apache-2.0"]}
        assert await _create(client, body) == {"status": "success"}
        saved = json.loads(next((tmp_path / PRESET_DIR).glob("coder-*.json")).read_text())
        assert saved["name"] == "coder" and saved["preset"]["from"] == "tiny"

        tags = {m["name"]: m for m in (await check(client, "get", "/api/tags", "/api/tags", None, 200))["models"]}
        assert tags["coder"]["details"]["parent_model"] == "tiny:f32" and "fixed" in tags
        assert tags["coder"]["size"] == tags["tiny:f32"]["size"]
        models = {m["id"]: m for m in (await check(client, "get", "/v1/models", "/v1/models", None, 200))["data"]}
        assert models["coder"]["base"] == "tiny:f32" and "fixed" in models
        one = await check(client, "get", "/v1/models/{name}", "/v1/models/coder:latest", None, 200)
        assert one["id"] == "coder"
        catalog = {m["name"]: m for m in (await check(client, "get", "/api/models", "/api/models", None, 200))["models"]}
        assert catalog["coder"]["source"] == "preset" and catalog["coder"]["base"] == "tiny:f32"
        assert catalog["coder"]["preset"]["system"] == "You write code."

        shown = await check(client, "post", "/api/show", "/api/show", {"model": "coder"}, 200)
        assert shown["system"] == "You write code." and shown["license"] == "MIT\nApache-2.0"
        assert shown["messages"] == [{"role": "user", "content": "hi"}]
        assert shown["details"]["parent_model"] == "tiny:f32"
        params = shown["parameters"].splitlines()
        assert {"temperature 0.3", 'stop "\\n\\n"', "num_predict 50"} <= set(params)
        assert params[-1].startswith("num_ctx ")
        assert "FROM tiny\n" in shown["modelfile"] and "ADAPTER sql\n" in shown["modelfile"]
        assert shown["model_info"] and shown["template"].startswith("{% for message")  # the base's
    finally:
        await client.close()


async def test_create_from_a_modelfile_streams_ollama_s_status_lines(make_client, tmp_path) -> None:
    client = await _client(make_client)
    try:
        resp = await client.post("/api/create", json={"name": "french", "modelfile": MODELFILE})
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert lines[0]["status"].startswith("using existing layer sha256:") and lines[-1] == {"status": "success"}
        preset = Presets({}, tmp_path / PRESET_DIR).get("french")  # what a restarted server reads
        assert preset is not None and preset.source == "created"
        assert preset.settings.parameters.stop == ("<|im_end|>", "###")
        assert preset.settings.parameters.max_tokens == 32 and len(preset.settings.messages) == 2
        shown = await check(client, "post", "/api/show", "/api/show", {"model": "french"}, 200)
        again = await _create(client, {"model": "french2", "modelfile": shown["modelfile"]})  # it round-trips
        assert again == {"status": "success"}
        assert Presets({}, tmp_path / PRESET_DIR).get("french2").settings == preset.settings
    finally:
        await client.close()


async def test_a_preset_made_from_a_preset_is_stored_whole(make_client) -> None:
    client = await _client(make_client)
    try:
        await _create(client, {"model": "a", "from": "tiny", "system": "A.", "parameters": {"top_k": 5}})
        await _create(client, {"model": "b", "from": "a", "parameters": {"temperature": 0.1}})
        await _create(client, {"model": "c", "from": "fixed"})
        assert (await check(client, "delete", "/api/delete", "/api/delete", {"model": "a"}, 200))["model"] == "a"
        shown = await check(client, "post", "/api/show", "/api/show", {"model": "b"}, 200)
        assert shown["system"] == "A." and "FROM tiny\n" in shown["modelfile"]
        assert {"top_k 5", "temperature 0.1"} <= set(shown["parameters"].splitlines())
        shown = await check(client, "post", "/api/show", "/api/show", {"model": "c"}, 200)
        assert shown["system"] == "From the config." and "temperature 0.0" in shown["parameters"]
        await check(client, "post", "/api/show", "/api/show", {"model": "a"}, 404)
    finally:
        await client.close()


async def test_delete_and_copy(make_client) -> None:
    client = await _client(make_client)
    try:
        await _create(client, {"model": "mine", "from": "tiny", "system": "Mine."})
        copied = await check(client, "post", "/api/copy", "/api/copy", {"source": "mine", "destination": "yours"}, 200)
        assert copied["model"] == "yours"
        assert (await check(client, "post", "/api/show", "/api/show", {"model": "yours"}, 200))["system"] == "Mine."
        await check(client, "delete", "/api/delete", "/api/delete", {"model": "mine"}, 200)
        await check(client, "post", "/api/show", "/api/show", {"model": "mine"}, 404)
        refused = await check(client, "delete", "/api/delete", "/api/delete", {"model": "fixed"}, 409)
        assert "config" in refused["error"]
        refused = await check(client, "post", "/api/copy", "/api/copy", {"source": "tiny", "destination": "yours"}, 409)
        assert "preset" in refused["error"]
    finally:
        await client.close()


REFUSED = [
    ({"model": "x", "from": "tiny", "template": "{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}"}, 400,
     "Go template"),
    ({"model": "x", "modelfile": 'FROM tiny\nTEMPLATE """{{ .Prompt }}"""'}, 400, "TEMPLATE: this is a Go template"),
    ({"model": "x", "modelfile": "FROM tiny\nPARAMETER warmth 1\nPARAMETER top_k 2\nPARAMETER chill 3"}, 400,
     "PARAMETER warmth, PARAMETER chill: unknown parameters"),
    ({"model": "x", "from": "tiny", "parameters": {"num_ctx": 4096}}, 400, "parameters.num_ctx: a load setting"),
    ({"model": "x", "from": "tiny", "parameters": {"temperature": "hot"}}, 400, "parameters.temperature"),
    ({"model": "x", "modelfile": "FROM tiny\nPARAMETER temperature -2"}, 400, "PARAMETER temperature: expected"),
    ({"model": "x", "from": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ({"model": "x", "from": "tiny", "quantize": "q4_K_M"}, 400, "quantize"),
    ({"model": "x", "files": {"model.gguf": "sha256:00"}}, 400, "files"),
    ({"model": "x"}, 400, "from is required"),
    ({"from": "tiny"}, 400, "model is required"),
    ({"model": "x", "from": "tiny", "modelfile": "FROM tiny"}, 400, "either a modelfile"),
    ({"model": "x", "modelfile": "SYSTEM hi"}, 400, "no FROM line"),
    ({"model": "x", "modelfile": "FROM tiny\nWHAT now"}, 400, "line 2: unknown instruction"),
    ({"model": "a b", "from": "tiny"}, 400, "invalid preset name"),
    ({"model": "x", "from": "x"}, 400, "its own base"),
    ({"model": "x", "from": "nothing-like-it"}, 404, "cannot create 'x': its base model 'nothing-like-it'"),
    ({"model": "x", "from": "junk"}, 422, "cannot be served"),
    ({"model": "tiny", "from": "tiny"}, 409, "name of a model"),
    ({"model": "fixed", "from": "tiny"}, 409, "config file"),
]


@pytest.mark.parametrize("body, status, words", REFUSED)
async def test_bad_creates_are_refused_clearly(make_client, tmp_path, body, status, words) -> None:
    client = await _client(make_client)
    try:
        answer = await check(client, "post", "/api/create", "/api/create", {"stream": True, **body}, status)
        assert set(answer) == {"error"} and words in answer["error"], answer
        assert not list((tmp_path / PRESET_DIR).glob("*.json"))
    finally:
        await client.close()


async def test_from_a_file_path_names_the_catalog_model(make_client, tmp_path) -> None:
    client = await _client(make_client)
    try:
        await _create(client, {"model": "byfile", "modelfile": f"FROM {tmp_path / 'tiny.Q8_0.gguf'}"})
        assert Presets({}, tmp_path / PRESET_DIR).get("byfile").settings.from_ == "tiny:f32"
    finally:
        await client.close()
