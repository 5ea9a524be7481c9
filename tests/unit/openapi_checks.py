"""Shared by the OpenAPI and Ollama tests: the document, $ref and validator helpers, and the real app
over tiny models (the ``make_client`` fixture; a test module takes it with
``make_client = openapi_checks.make_client``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from mullama import config
from mullama.hardware.devices import Devices, Host
from mullama.http.app import create_app
from mullama.http.openapi import spec as openapi_spec
from mullama.serving.supervisor import Supervisor

SPEC = openapi_spec.spec()
ERROR_REF = {"$ref": "#/components/schemas/Error"}
OLLAMA_ERROR_REF = {"$ref": "#/components/schemas/OllamaError"}  # {"error": "message"} on the Ollama routes
ANTHROPIC_ERROR_REF = {"$ref": "#/components/schemas/AnthropicError"}  # {"type": "error", "error": {...}}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def walk(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def pointer(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = pointer(SPEC, node["$ref"])
    return node


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a schema that may $ref the spec's components (they resolve against this root)."""
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": SPEC["components"],
            "allOf": [schema]}
    return jsonschema.Draft202012Validator(root)


def component(name: str) -> jsonschema.Draft202012Validator:
    return validator({"$ref": f"#/components/schemas/{name}"})


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def make_client(tmp_path) -> Iterator[Any]:
    """The real supervisor app over a models dir with a tiny model (two variants) and junk. No runner is
    ever started: without ``launch`` nothing loads; with it, ``launch`` makes the runner handles."""
    import gguf_factory
    from aiohttp.test_utils import TestClient, TestServer

    gguf_factory.write_tiny_llama(tmp_path / "tiny.Q8_0.gguf")  # the header says f32: tiny:f32
    gguf_factory.write_not_gguf(tmp_path / "junk.gguf")

    async def make(launch: Any = None, **extra: Any) -> TestClient:
        settings = config.Settings(models_dirs=(str(tmp_path), str(tmp_path / "absent")), bundled_model=False,
                                   **extra)
        sup = Supervisor(settings, launch=launch, probe=cpu_only) if launch else None
        client = TestClient(TestServer(create_app(settings, supervisor=sup)))
        await client.start_server()
        return client

    yield make


def cpu_only() -> Devices:
    return Devices(gpus=(), host=Host(ram_total=64 << 30, ram_available=64 << 30, swap_total=0, swap_free=0))


def response_validator(path: str, method: str, status: int) -> jsonschema.Draft202012Validator:
    responses = SPEC["paths"][path][method]["responses"]
    response = deref(responses.get(str(status)) or responses["default"])
    return validator(response["content"]["application/json"]["schema"])


async def check(client: Any, method: str, template: str, url: str, body: Any, status: int) -> Any:
    """Call the app; the status must be documented for the route and the JSON body fit its schema."""
    resp = await client.request(method.upper(), url, json=body)
    payload = await resp.json()
    assert resp.status == status, payload
    assert str(status) in SPEC["paths"][template][method]["responses"]
    errors = list(response_validator(template, method, status).iter_errors(payload))
    assert not errors, (payload, errors)
    return payload
