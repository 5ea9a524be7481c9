"""The OpenAPI document is structurally sound and complete against the real routes."""

from __future__ import annotations

import json
import re

import jsonschema
import msgspec
import pytest
from aiohttp import web
from openapi_checks import (
    ANTHROPIC_ERROR_REF,
    ERROR_REF,
    OLLAMA_ERROR_REF,
    SPEC,
    deref,
    operations,
    pointer,
    walk,
)

from mullama import config
from mullama.http import internal as internal_api
from mullama.http import manage
from mullama.http.app import create_app
from mullama.http.openai import format as openai
from mullama.http.openai import routes as openai_routes
from mullama.http.openapi import internal as openapi_internal
from mullama.http.openapi import ollama as openapi_ollama
from mullama.http.openapi import spec as openapi_spec

# ---------------------------------------------------------------------- structure


def test_document_basics() -> None:
    assert SPEC["openapi"] == "3.1.0"
    assert SPEC["info"]["title"] == "mullama" and SPEC["info"]["version"]
    msgspec.json.encode(SPEC)                    # the route serves it with msgspec
    assert json.loads(json.dumps(SPEC)) == SPEC  # plain JSON types only


def test_every_ref_resolves() -> None:
    refs = [(where, node["$ref"]) for where, node in walk(SPEC) if isinstance(node, dict) and "$ref" in node]
    assert len(refs) > 30
    for where, ref in refs:
        try:
            pointer(SPEC, ref)
        except (KeyError, AssertionError):
            pytest.fail(f"{where}: $ref {ref} does not resolve")


@pytest.mark.parametrize("name", sorted(SPEC["components"]["schemas"]))
def test_component_is_a_json_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(SPEC["components"]["schemas"][name])


def test_operations_are_complete() -> None:
    ids = []
    for path, method, op in operations():
        where = f"{method.upper()} {path}"
        ids.append(op["operationId"])
        assert op["summary"] and op["tags"], where
        ok = deref(op["responses"]["200"])
        assert set(ok["content"]) & {"application/json", "text/event-stream", "text/plain"}, where
        for media in ok["content"].values():
            jsonschema.Draft202012Validator.check_schema(media["schema"])
        for status, response in op["responses"].items():
            response = deref(response)
            assert response["description"], where
            if status not in ("200", "default") and not (path == "/ready" and status == "503"):
                assert 400 <= int(status) < 600, where
                expected = {"ollama": OLLAMA_ERROR_REF, "anthropic": ANTHROPIC_ERROR_REF}.get(op["tags"][0], ERROR_REF)
                assert response["content"]["application/json"]["schema"] == expected
        names = set(re.findall(r"{(\w+)}", path))
        params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert names == params, where
        for p in op.get("parameters", []):
            assert p["in"] != "path" or p["required"] is True, where
        if "requestBody" in op:
            assert method == "post" or (method, path) == ("delete", "/api/delete"), where  # Ollama's has one
            assert "application/json" in op["requestBody"]["content"], where
    assert len(ids) == len(set(ids))


def app_routes() -> set[tuple[str, str]]:
    """Every route of the supervisor as ``create_app`` wires it."""
    app = create_app(config.load_settings({}, env={}))
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}


def test_every_route_is_documented_and_nothing_else() -> None:
    routes = app_routes()
    assert len(routes) == 47    # 5 OpenAI, 3 Responses, 2 Anthropic, 8 management, 9 internal, 8 Ollama, 3 store,
    #                             1 preset (/api/create), 3 adapters, 3 dashboard (/ui), 2 tokenizer
    assert {(m, p) for p, m, _ in operations()} == routes


def test_both_add_routes_are_covered() -> None:
    """The same, one module at a time: a route added to any route module and not documented fails here too."""
    documented = {(m, p) for p, m, _ in operations()}
    from mullama.http.ollama import routes as ollama_api

    for module in (openai_routes, manage, internal_api, ollama_api):
        app = web.Application()
        module.add_routes(app)
        routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
        assert routes and routes <= documented, routes - documented


def test_internal_components_do_not_shadow_the_others() -> None:
    internal = set(openapi_internal.schemas())
    assert not internal & (set(openapi_spec.response_schemas()) | set(openapi_spec.request_schemas()))
    assert {"KvView", "SlotView", "RunnerConfig"} <= internal  # generated from the wire types
    assert not set(openapi_internal.paths()) & set(openapi_spec.paths())
    assert [t["name"] for t in SPEC["tags"]] == ["openai", "management", "internal", "ollama", "anthropic"]
    ollama = set(openapi_ollama.schemas())
    assert not ollama & (internal | set(openapi_spec.response_schemas()) | set(openapi_spec.request_schemas()))
    assert not set(openapi_ollama.paths()) & (set(openapi_spec.paths()) | set(openapi_internal.paths()))


@pytest.mark.parametrize("path, statuses", [
    ("/v1/chat/completions", {"400", "401", "404", "413", "422", "429", "500", "502", "503", "507"}),
    ("/v1/completions", {"400", "401", "404", "413", "422", "429", "500", "502", "503", "507"}),
    ("/v1/embeddings", {"400", "401", "404", "413", "422", "429", "500", "502", "503", "507"}),
    ("/api/load", {"400", "401", "404", "413", "422", "500", "502", "503", "507"}),
    ("/api/unload", {"400", "401", "404", "413", "500"}),
    ("/api/models/{name}", {"400", "401", "404", "500"}),
    ("/v1/models/{name}", {"400", "401", "404", "500"}),
    ("/ready", {"401", "503"}),
    ("/internal/models/{family}/variant", {"400", "401", "404", "409", "500", "503", "507"}),
    ("/internal/kv/{model}", {"400", "401", "404", "500", "502", "503"}),
    ("/internal/events", {"401", "500"}),
    ("/metrics", {"401", "500"}),
])
def test_error_statuses(path: str, statuses: set[str]) -> None:
    (op,) = SPEC["paths"][path].values()
    assert statuses <= set(op["responses"])
    assert "default" in op["responses"]


def test_set_policy_statuses() -> None:
    op = SPEC["paths"]["/internal/scheduler"]["post"]
    assert {"200", "400", "401", "500", "default"} <= set(op["responses"])
    assert op["requestBody"]["required"] is True


@pytest.mark.parametrize("path, media", [("/internal/events", "text/event-stream"),
                                         ("/metrics", "text/plain")])
def test_non_json_routes(path: str, media: str) -> None:
    assert set(SPEC["paths"][path]["get"]["responses"]["200"]["content"]) == {media}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_generation_routes_stream(path: str) -> None:
    content = SPEC["paths"][path]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    assert "[DONE]" in content["text/event-stream"]["schema"]["description"]


def test_security_schemes_are_optional() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert {} in SPEC["security"]                # no credentials is a valid choice
    assert SPEC["paths"]["/health"]["get"]["security"] == [{}]


def test_limits_reach_the_schemas() -> None:
    small = openapi_spec.spec(openai.Limits(max_tokens=10, max_messages=3, max_stop=2))
    chat = small["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert chat["max_tokens"]["maximum"] == 10 and chat["max_completion_tokens"]["maximum"] == 10
    assert chat["messages"]["maxItems"] == 3 and chat["stop"]["maxItems"] == 2


def test_every_struct_field_is_described() -> None:
    """The request schemas come from openai.py's Structs: a new field shows up by itself."""
    schemas = SPEC["components"]["schemas"]
    for struct, name in ((openai._ChatBody, "ChatCompletionRequest"),
                         (openai._CompletionBody, "CompletionRequest"),
                         (openai._EmbeddingBody, "EmbeddingRequest")):
        assert set(struct.__struct_fields__) == set(schemas[name]["properties"]), name
    assert not any(n.startswith("_") for n in schemas)
