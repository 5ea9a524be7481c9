"""The Ollama routes that need no runner (tags, show, version, /, errors) on the real app."""

from __future__ import annotations

from typing import Any

import openapi_checks
import pytest
from ollama import _types as ot
from openapi_checks import check

make_client = openapi_checks.make_client  # the fixture: the real app over tiny models, no runner


# ---------------------------------------------------------------------- the app (no runner needed)


def _errors_in_ollama_shape(payload: Any) -> str:
    assert set(payload) == {"error"} and isinstance(payload["error"], str), payload
    return payload["error"]


CALLS = [
    ("get", "/api/tags", "/api/tags", None, 200),
    ("get", "/api/version", "/api/version", None, 200),
    ("post", "/api/show", "/api/show", {"model": "tiny"}, 200),
    ("post", "/api/show", "/api/show", {"name": "tiny:f32", "verbose": True}, 200),
    ("post", "/api/show", "/api/show", {"model": "nope"}, 404),
    ("post", "/api/show", "/api/show", {"model": "junk"}, 422),
    ("post", "/api/show", "/api/show", {"model": "a/b/../c"}, 400),
    ("post", "/api/show", "/api/show", {"model": 5}, 400),
    ("post", "/api/generate", "/api/generate", {"model": "nope", "prompt": "x"}, 404),
    ("post", "/api/generate", "/api/generate", {"model": "tiny", "prompt": "x", "options": {"top_p": 2}}, 400),
    ("post", "/api/generate", "/api/generate", {"model": "tiny", "prompt": "x", "images": ["aGk="]}, 400),
    ("post", "/api/chat", "/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404),
    ("post", "/api/chat", "/api/chat", {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400),
    ("post", "/api/chat", "/api/chat", {"model": "nope"}, 404),
    ("post", "/api/embed", "/api/embed", {"model": "nope", "input": "x"}, 404),
    ("post", "/api/embed", "/api/embed", {"model": "tiny", "input": 5}, 400),
    ("post", "/api/embeddings", "/api/embeddings", {"model": "nope", "prompt": "x"}, 404),
    # load-time options the model's config does not give: refused before anything loads
    ("post", "/api/generate", "/api/generate", {"model": "tiny", "prompt": "x", "options": {"num_ctx": 10**9}}, 400),
    ("post", "/api/chat", "/api/chat", {"model": "tiny", "options": {"low_vram": True}}, 400),
    ("post", "/api/embed", "/api/embed", {"model": "tiny", "input": "x", "options": {"logits_all": True}}, 400),
    ("post", "/api/embeddings", "/api/embeddings", {"model": "nope", "prompt": "x", "options": {"num_ctx": 1}}, 404),
]


@pytest.mark.parametrize("method, template, url, obj, status", CALLS)
async def test_routes_answer_in_the_documented_shapes(method: str, template: str, url: str, obj: Any, status: int,
                                                      make_client) -> None:
    client = await make_client()
    try:
        payload = await check(client, method, template, url, obj, status)
        if status >= 400:
            _errors_in_ollama_shape(payload)
    finally:
        await client.close()


async def test_tags_show_version_in_the_clients_models(make_client) -> None:
    client = await make_client()
    try:
        tags = ot.ListResponse(**await (await client.get("/api/tags")).json())
        (model,) = tags.models
        assert model.model == "tiny:f32" and model.details.format == "gguf" and model.details.family == "llama"
        assert model.size > 0 and len(model.digest) == 64 and model.modified_at is not None
        show = ot.ShowResponse(**await (await client.post("/api/show", json={"model": "tiny"})).json())
        assert show.details.quantization_level and show.capabilities == ["completion"]
        assert show.modelinfo["general.architecture"] == "llama" and "FROM " in show.modelfile
        assert show.parameters.startswith("num_ctx ")
        assert (await (await client.get("/api/version")).json())["version"]
        ps = ot.ProcessResponse(**await (await client.get("/api/ps")).json())
        assert ps.models == []
    finally:
        await client.close()


async def test_root_says_ollama_is_running(make_client) -> None:
    client = await make_client()
    try:
        for method in ("GET", "HEAD"):
            resp = await client.request(method, "/")
            assert resp.status == 200 and resp.content_type == "text/plain"
            assert await resp.text() == ("Ollama is running" if method == "GET" else "")
    finally:
        await client.close()


@pytest.mark.parametrize("method, path, status", [("GET", "/api/generate", 405), ("GET", "/api/chat", 405),
                                                  ("POST", "/api/tags", 405), ("GET", "/api/show", 405)])
async def test_http_errors_on_ollama_routes_are_ollama_shaped(method: str, path: str, status: int,
                                                              make_client) -> None:
    client = await make_client()
    try:
        resp = await client.request(method, path)
        assert resp.status == status
        _errors_in_ollama_shape(await resp.json())
        resp = await client.request("DELETE", "/api/ps")       # shared with mullama ps: OpenAI's shape stays
        assert resp.status == 405 and set((await resp.json())["error"]) >= {"message", "type"}
    finally:
        await client.close()


async def test_keys_guard_ollama_routes_in_their_shape(make_client) -> None:
    client = await make_client(api_keys=("k",))
    try:
        resp = await client.post("/api/chat", json={})
        assert resp.status == 401 and "API key" in _errors_in_ollama_shape(await resp.json())
        resp = await client.get("/api/tags", headers={"Authorization": "Bearer k"})
        assert resp.status == 200
    finally:
        await client.close()


def test_the_header_keeps_the_whole_chat_template(tiny_path) -> None:
    """/api/show's template comes from the catalog's header: whole there, cut short in ``metadata``."""
    from mullama.models.gguf_header import read_header
    from mullama.models.gguf_parse import STRING_KEEP

    header = read_header(tiny_path)
    assert header.chat_template.startswith("{% for message in messages %}")
    assert header.chat_template.endswith("{% endif %}")
    assert header.metadata["tokenizer.chat_template"] == header.chat_template[:STRING_KEEP]
