"""The OpenAPI document: structurally sound, complete against the real routes, and truthful -- a body
the request schema allows is one ``openai.py`` accepts, and what the server sends fits the response schema."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mullama import api, config, internal_api, openai, openapi_internal, openapi_ollama, openapi_spec, protocol, units
from mullama.app import SUPERVISOR, Supervisor, create_app
from mullama.devices import Devices, Host
from mullama.errors import InvalidArgument
from mullama.policies import Request

SPEC = openapi_spec.spec()
ERROR_REF = {"$ref": "#/components/schemas/Error"}
OLLAMA_ERROR_REF = {"$ref": "#/components/schemas/OllamaError"}  # {"error": "message"} on the Ollama routes
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
                expected = OLLAMA_ERROR_REF if op["tags"] == ["ollama"] else ERROR_REF
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
    """Every route of the supervisor as ``create_app`` wires it (api.py's and internal_api.py's)."""
    app = create_app(config.load_settings({}, env={}))
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}


def test_every_route_is_documented_and_nothing_else() -> None:
    routes = app_routes()
    assert len(routes) == 31    # 20 of api.py and internal_api.py, 8 of ollama_api.py, 3 of store_api.py
    assert {(m, p) for p, m, _ in operations()} == routes


def test_both_add_routes_are_covered() -> None:
    """The same, one module at a time: a route added to either file and not documented fails here too."""
    documented = {(m, p) for p, m, _ in operations()}
    from mullama import ollama_api

    for module in (api, internal_api, ollama_api):
        app = web.Application()
        module.add_routes(app)
        routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
        assert routes and routes <= documented, routes - documented


def test_internal_components_do_not_shadow_the_others() -> None:
    internal = set(openapi_internal.schemas())
    assert not internal & (set(openapi_spec.response_schemas()) | set(openapi_spec.request_schemas()))
    assert {"KvView", "SlotView", "RunnerConfig"} <= internal  # generated from the wire types
    assert not set(openapi_internal.paths()) & set(openapi_spec.paths())
    assert [t["name"] for t in SPEC["tags"]] == ["openai", "management", "internal", "ollama"]
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


# ---------------------------------------------------------------------- request examples

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("name, body, ok", [
    ("ChatCompletionRequest", {"messages": MSG}, True),
    ("ChatCompletionRequest", {"model": "smollm2", "messages": MSG, "stream": True, "temperature": 0.7,
                               "max_tokens": 64, "stop": ["\n"], "seed": 42, "keep_alive": "10m",
                               "stream_options": {"include_usage": True}, "priority": 5,
                               "response_format": {"type": "json_object"}, "logit_bias": {"15": -100},
                               "unknown_extra": {"tools send": "extras"}}, True),
    ("ChatCompletionRequest", {"messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                            {"role": "assistant", "content": None}]}, True),
    ("ChatCompletionRequest", {"messages": MSG, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}, True),
    ("ChatCompletionRequest", {"messages": MSG, "tools": [], "tool_choice": "auto", "logprobs": False}, True),
    ("ChatCompletionRequest", {}, False),
    ("ChatCompletionRequest", {"messages": []}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "tool", "content": "x"}]}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": None}]}, False),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, False),
    ("ChatCompletionRequest", {"messages": MSG, "temperature": 2.5}, False),
    ("ChatCompletionRequest", {"messages": MSG, "n": 2}, False),
    ("ChatCompletionRequest", {"messages": MSG, "max_tokens": 0}, False),
    ("ChatCompletionRequest", {"messages": MSG, "stop": [""]}, False),
    ("ChatCompletionRequest", {"messages": MSG, "stream_options": {"include_usage": True}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "keep_alive": "soon"}, False),
    ("ChatCompletionRequest", {"messages": MSG, "logit_bias": {"2147483648": 1}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "tools": [{"type": "function"}]}, False),
    ("ChatCompletionRequest", {"messages": MSG, "grammar": "root ::= \"a\"",
                               "response_format": {"type": "json_object"}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "response_format": {"type": "json_schema"}}, False),
    ("ChatCompletionRequest", {"messages": MSG, "max_tokens": 5, "max_completion_tokens": 6}, False),
    ("ChatCompletionRequest", {"messages": MSG, "max_tokens": 5, "max_completion_tokens": None}, True),
    ("CompletionRequest", {"prompt": "x", "max_tokens": None, "max_completion_tokens": 9}, True),
    ("CompletionRequest", {"prompt": "Once upon"}, True),
    ("CompletionRequest", {"prompt": [1, 2, 3], "max_tokens": 5, "stream": False}, True),
    ("CompletionRequest", {"prompt": [[1, 2]], "echo": False, "best_of": 1}, True),
    ("CompletionRequest", {"prompt": ["a", "b"]}, False),
    ("CompletionRequest", {"prompt": "x", "echo": True}, False),
    ("CompletionRequest", {"prompt": "x", "suffix": "end"}, False),
    ("CompletionRequest", {}, False),
    ("EmbeddingRequest", {"input": "hello"}, True),
    ("EmbeddingRequest", {"input": ["a", "b"], "encoding_format": "base64", "model": "m"}, True),
    ("EmbeddingRequest", {"input": ""}, False),
    ("EmbeddingRequest", {"input": [1, 2]}, False),         # token ids: the route refuses them
    ("EmbeddingRequest", {"input": "a", "dimensions": 8}, False),
    ("EmbeddingRequest", {"input": "a", "encoding_format": "int8"}, False),
    ("ModelRequest", {}, True),
    ("ModelRequest", {"model": "smollm2:q8_0", "keep_alive": "-1"}, True),
    ("ModelRequest", {"model": "smollm2", "keep_alive": 300}, True),
    ("ModelRequest", {"model": "smollm2", "keep_alive": "a while"}, False),
])
def test_request_examples(name: str, body: dict[str, Any], ok: bool) -> None:
    assert component(name).is_valid(body) is ok, list(component(name).iter_errors(body))
    if name in PARSERS:
        assert accepts(name, body) is ok


# ---------------------------------------------------------------------- truthfulness against openai.py


def _embedding(raw: bytes) -> None:
    job = openai.parse_embeddings(raw)
    if not isinstance(job.inputs[0], str):
        raise InvalidArgument("token ids")  # what api.embeddings answers


PARSERS = {"ChatCompletionRequest": openai.parse_chat, "CompletionRequest": openai.parse_completion,
           "EmbeddingRequest": _embedding}


def accepts(name: str, body: Any) -> bool:
    try:
        PARSERS[name](json.dumps(body).encode())
    except InvalidArgument:
        return False
    return True


_EDGE_INTS = [-1001, -1000, -2, -1, 0, 1, 2, 100, 101, 1000, 1001, 32768, 32769, 2**31 - 1, 2**31,
              2**32 - 1, 2**32]
_EDGE_FLOATS = [-100.5, -2.5, -2.0, -0.5, -0.0, 0.5, 1.5, 2.0, 2.000001, 100.0, 100.5, 1e6]
_WORDS = ["", "x", "5m", "1h30m", "-1", "300", "250ms", "soon", "text", "json_object", "json_schema", "auto",
          "none", "float", "base64", "user", "assistant", "system", "developer", "tool", "image_url"]
# JSON Schema counts 2.0 as an integer, msgspec does not: whole floats go only where a number is wanted
# (a fuzzer writes integers as integers, so the difference never reaches the server).
_FRACTIONS = [x for x in _EDGE_FLOATS if not x.is_integer()]
scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(_EDGE_INTS), st.sampled_from(_FRACTIONS),
                    st.integers(-5, 5), st.sampled_from(_WORDS), st.text(max_size=4))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["type", "text", "schema", "1", "x"]),
                                                 inner, max_size=3)), max_leaves=6)
part = st.fixed_dictionaries({}, optional={"type": st.sampled_from(["text", "image_url", 1]),
                                           "text": st.one_of(st.text(max_size=3), st.none())})
message = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "bot", None]),
    "content": st.one_of(st.text(max_size=3), st.none(), st.lists(part, max_size=2), st.just(5)),
    "tool_calls": st.one_of(st.none(), st.just([]), st.just([{"id": "x"}]))})
special = {
    "messages": st.one_of(st.lists(message, max_size=3), values),
    "prompt": st.one_of(st.text(max_size=3), st.lists(st.integers(-1, 3), max_size=3),
                        st.lists(st.text(max_size=2), max_size=2),
                        st.lists(st.lists(st.integers(0, 3), max_size=2), max_size=2), values),
    "input": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=2), max_size=3),
                       st.lists(st.integers(0, 3), max_size=2), values),
    "response_format": st.one_of(values, st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema"])},
        optional={"json_schema": st.none() | st.fixed_dictionaries({}, optional={"schema": values})})),
    "stream_options": st.one_of(st.none(), st.fixed_dictionaries({"include_usage": st.booleans()}), values),
    "logit_bias": st.one_of(values, st.dictionaries(
        st.sampled_from(["1", "01", "2147483647", "2147483648", "-1", "x"]), st.sampled_from(_EDGE_FLOATS))),
}


BASES = {"ChatCompletionRequest": {"messages": MSG}, "CompletionRequest": {"prompt": "Once"},
         "EmbeddingRequest": {"input": "hi"}}


@st.composite
def bodies(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid body with up to three fields replaced, so about as many bodies pass as fail."""
    fields = sorted(SPEC["components"]["schemas"][name]["properties"])
    changes = draw(st.lists(st.sampled_from(fields), max_size=3, unique=True))
    props = SPEC["components"]["schemas"][name]["properties"]
    return {**BASES[name], **{f: draw(special[f] if f in special else typed(props[f])) for f in changes}}


_BY_TYPE = {"null": st.none(), "boolean": st.booleans(),
            "string": st.sampled_from(_WORDS) | st.text(max_size=3),
            "integer": st.sampled_from(_EDGE_INTS), "number": st.sampled_from(_EDGE_FLOATS + _EDGE_INTS),
            "array": st.lists(scalars, max_size=2), "object": st.dictionaries(st.text(max_size=2), scalars,
                                                                              max_size=2)}


def typed(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly values of the field's own JSON types (edges included), sometimes anything."""
    kinds = [b["type"] for b in prop.get("anyOf", []) if isinstance(b.get("type"), str)]
    if not kinds:
        return values
    return st.one_of(*[_BY_TYPE[k] for k in kinds]) | values


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_agrees_with_the_parser(name: str, data: st.DataObject) -> None:
    """A fuzzer's contract: schema-valid bodies are accepted, schema-invalid ones refused (400)."""
    body = data.draw(bodies(name))
    # the one known gap: equal max_tokens and max_completion_tokens pass the server, not the schema
    assume(body.get("max_tokens") is None or body.get("max_tokens") != body.get("max_completion_tokens"))
    valid = component(name).is_valid(body)
    why = "" if valid else next(component(name).iter_errors(body)).message
    assert valid is accepts(name, body), f"schema says {valid} ({why}) for {body!r}"


@pytest.mark.parametrize("text", ["5m", "1h30m", "250ms", "300", "1.5", ".5", "1.", "-1", "-5m", "+7", "1e3",
                                  " 5m ", "0", "1H", "2D30M", "", "5 m", "m", "5x", "-", "1e400", "--5m",
                                  "5m-", "inf", "nan", "1_0", "1.2.3"])
def test_duration_pattern_agrees_with_parse_duration(text: str) -> None:
    try:
        units.parse_duration(text)
        ok = True
    except ValueError:
        ok = False
    assert bool(re.search(openapi_spec.DURATION, text)) is ok or text in ("inf", "1_0"), text


@pytest.mark.parametrize("key", ["0", "1", "007", "2147483647", "02147483647", "2147483648", "2147483650",
                                 "9999999999", "3000000000", "214748364", "-1", "1.0", "", " 1", "x"])
def test_token_id_pattern(key: str) -> None:
    ok = key.isascii() and key.isdigit() and int(key) <= 2**31 - 1
    assert bool(re.search(openapi_spec.TOKEN_ID_KEY, key)) is ok


# ---------------------------------------------------------------------- responses the server formats

STATS = protocol.CompletionStats(prompt_tokens=3, cached_tokens=1, completion_tokens=2, queue_ms=0.0,
                                 prefill_ms=1.0, ttft_ms=1.0, decode_ms=1.0, total_ms=2.0,
                                 inter_token_ms_p50=0.5, inter_token_ms_p95=0.9, slot=0, pauses=0, swaps=0)
FINAL = protocol.CompletionFinal(id="r", content="", tokens=[1, 2], finish_reason="length", stats=STATS)
HEAD = {"id": "chatcmpl-1", "created": 1, "model": "smollm2:q8_0"}


def sse(raw: bytes) -> Any:
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    return json.loads(raw[6:])


@pytest.mark.parametrize("name, obj", [
    ("ChatCompletion", json.loads(openai.chat_response(**HEAD, final=FINAL, text="hi"))),
    ("ChatCompletionChunk", sse(openai.chat_chunk(**HEAD, role=True))),
    ("ChatCompletionChunk", sse(openai.chat_chunk(**HEAD, content="x", include_usage=True))),
    ("ChatCompletionChunk", sse(openai.chat_chunk(**HEAD, finish="stop"))),
    ("ChatCompletionChunk", sse(openai.usage_chunk(**HEAD, kind="chat", stats=STATS))),
    ("Completion", json.loads(openai.completion_response(**HEAD, final=FINAL, text="hi"))),
    ("Completion", sse(openai.completion_chunk(**HEAD, content="x"))),
    ("Completion", sse(openai.completion_chunk(**HEAD, finish="length", include_usage=True))),
    ("Completion", sse(openai.usage_chunk(**HEAD, kind="completion", stats=STATS))),
    ("Embeddings", json.loads(openai.embeddings_response(model="m", vectors=[[0.5, -1.0]], prompt_tokens=2,
                                                         encoding_format="float"))),
    ("Embeddings", json.loads(openai.embeddings_response(model="m", vectors=[[0.5]], prompt_tokens=1,
                                                         encoding_format="base64"))),
    ("ModelList", json.loads(openai.models_list([openai.model_object("a:b", 1, extra={
        "family": "a", "variant": "b", "size": 1, "state": "discovered", "quantization": "Q8_0",
        "context_length": None, "architecture": "llama"})]))),
    ("ModelList", json.loads(openai.models_list([]))),
    ("Error", json.loads(openai.error_body("nope", "invalid_request_error", param="temperature"))),
    ("Error", sse(openai.sse_error("boom", "server_error"))),
    ("Health", {"status": "ok"}),
    ("Ready", {"status": "ready", "loaded": ["a"], "uptime_s": 1.5}),
    ("Ready", {"status": "draining", "loaded": []}),
    ("UnloadResponse", {"model": "a", "was": "ready", "state": "unloaded"}),
])
def test_formatted_responses_fit(name: str, obj: Any) -> None:
    errors = list(component(name).iter_errors(obj))
    assert not errors, errors


PS_ROW = {"name": "smollm2:q8_0", "model": "smollm2:q8_0", "id": "0123456789ab", "digest": "0123456789ab",
          "size": 1, "size_vram": 0, "processor": "100% CPU", "context_length": 4096, "expires_at": None,
          "until": "forever", "state": "ready", "progress": 1.0, "pid": None, "port": None, "in_flight": 0,
          "n_parallel": 4, "pinned": False, "details": {"format": "gguf", "family": "smollm2",
                                                        "parameter_size": "", "quantization_level": "Q8_0"}}


@pytest.mark.parametrize("name, obj, ok", [
    ("RunningModels", {"models": [PS_ROW]}, True),
    ("RunningModels", {"models": []}, True),
    ("LoadResponse", {**PS_ROW, "load_ms": 12.5}, True),
    ("LoadResponse", PS_ROW, False),
    ("RunningModels", {"models": [{**PS_ROW, "pid": "12"}]}, False),
    ("Error", {"error": {"message": "x"}}, False),
    ("ChatCompletion", {**HEAD, "object": "chat.completion"}, False),
])
def test_management_examples(name: str, obj: Any, ok: bool) -> None:
    assert component(name).is_valid(obj) is ok


KV = {"slots": [{"index": 0, "state": "idle", "request_id": None, "n_tokens": 0, "n_cached": 0, "n_prompt": 0,
                 "n_generated": 0}], "cells_used": 0, "cells_total": 512, "n_ctx_slot": 512, "prefix_hits": 0,
      "prefix_misses": 0, "prefix_evictions": 0, "cached_tokens": 0, "model": "tiny:f32", "usage_ratio": 0.0}
SWAP = {"family": "tiny", "variant": "f32", "model": "tiny:f32", "previous": "tiny:f32", "mode": "unchanged",
        "swap_ms": 0.0}
SCHED = {"policy": "fifo", "queue": [], "running": {}, "waiting": {}, "counters": {}, "n_parallel": {}}


@pytest.mark.parametrize("name, obj, ok", [
    ("KvCache", KV, True),
    ("KvCache", {**KV, "future_field": 1}, True),
    ("KvCache", {k: v for k, v in KV.items() if k != "model"}, False),
    ("KvCache", {**KV, "slots": [{**KV["slots"][0], "request_id": 5}]}, False),
    ("VariantSwitch", SWAP, True),
    ("VariantSwitch", {**SWAP, "mode": "parallel", "at": 1.5}, True),
    ("VariantSwitch", {**SWAP, "mode": "sideways"}, False),
    ("VariantSwitch", {k: v for k, v in SWAP.items() if k != "previous"}, False),
    ("SchedulerView", SCHED, True),
    ("SchedulerView", {**SCHED, "running": {"m": [{"id": "r", "user": "u", "priority": 0, "age_ms": 1.0,
                                                   "queue_ms": 0.5, "preemptions": 0, "slot": None}]}}, True),
    ("SchedulerView", {**SCHED, "waiting": {"m": "1"}}, False),
    ("SchedulerView", {k: v for k, v in SCHED.items() if k != "n_parallel"}, False),
    ("PolicyChange", {"policy": "fifo", "previous": "priority"}, True),
    ("PolicyChange", {"policy": "fifo"}, False),
    ("Event", {"event": "swap", "mono": 1.5, "time": "2026-05-04T09:12:33.418220+00:00", "model": "m"}, True),
    ("Event", {"event": "swap", "mono": 1.5}, False),
])
def test_internal_examples(name: str, obj: Any, ok: bool) -> None:
    assert component(name).is_valid(obj) is ok


BODIES = {"PolicyRequest": internal_api._PolicyBody, "VariantRequest": internal_api._VariantBody}


@pytest.mark.parametrize("name, body, ok", [
    ("PolicyRequest", {"policy": "fifo"}, True),
    ("PolicyRequest", {"policy": "my.pkg:Policy"}, True),
    ("PolicyRequest", {"policy": ""}, False),        # decodes, then make_policy refuses it
    ("PolicyRequest", {"policy": 5}, False),
    ("PolicyRequest", {"policy": None}, False),
    ("PolicyRequest", {}, False),
    ("PolicyRequest", {"policy": "fifo", "x": 1}, False),
    ("PolicyRequest", ["fifo"], False),
    ("VariantRequest", {"variant": "q8_0"}, True),
    ("VariantRequest", {"variant": 8}, False),
    ("VariantRequest", {"variant": "q8_0", "family": "x"}, False),
    ("VariantRequest", {}, False),
    ("VariantRequest", None, False),
])
def test_internal_request_bodies_agree_with_the_handlers(name: str, body: Any, ok: bool) -> None:
    assert component(name).is_valid(body) is ok
    try:
        msgspec.json.decode(json.dumps(body).encode(), type=BODIES[name])
        decoded = True
    except msgspec.ValidationError:
        decoded = False
    assert decoded is (ok or body == {"policy": ""})


# ---------------------------------------------------------------------- the real app, no runners


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


VARIANT = "/internal/models/{family}/variant"
CALLS = [
    ("get", "/health", "/health", None, 200),
    ("get", "/ready", "/ready", None, 200),
    ("get", "/api/ps", "/api/ps", None, 200),
    ("get", "/api/models", "/api/models", None, 200),
    ("get", "/api/models/{name}", "/api/models/tiny", None, 200),
    ("get", "/api/models/{name}", "/api/models/nope", None, 404),
    ("get", "/api/models/{name}", "/api/models/junk", None, 422),
    ("get", "/v1/models", "/v1/models", None, 200),
    ("get", "/v1/models/{name}", "/v1/models/tiny", None, 200),
    ("get", "/v1/models/{name}", "/v1/models/nope", None, 404),
    ("get", "/openapi.json", "/openapi.json", None, 200),
    ("post", "/api/unload", "/api/unload", {"model": "tiny"}, 200),
    ("post", "/api/unload", "/api/unload", {"model": "nope"}, 404),
    ("post", "/api/unload", "/api/unload", {"model": 5}, 400),
    ("post", "/api/load", "/api/load", {"model": "tiny", "keep_alive": "soon"}, 400),
    ("post", "/v1/chat/completions", "/v1/chat/completions", {"messages": []}, 400),
    ("post", "/v1/chat/completions", "/v1/chat/completions", {"model": "nope", "messages": MSG}, 404),
    ("post", "/v1/completions", "/v1/completions", {"prompt": "x", "echo": True}, 400),
    ("post", "/v1/embeddings", "/v1/embeddings", {"input": [1, 2], "model": "tiny"}, 400),
    ("get", "/internal/scheduler", "/internal/scheduler", None, 200),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "Round-Robin"}, 200),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "preemptive"}, 200),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "nope"}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": ""}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "no.such_module:Policy"}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": 5}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {"policy": "fifo", "extra": 1}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", {}, 400),
    ("post", "/internal/scheduler", "/internal/scheduler", None, 400),
    ("get", "/internal/models", "/internal/models", None, 200),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": "f32"}, 200),   # the one there is
    ("post", VARIANT, "/internal/models/TINY/variant", {"variant": "F32"}, 200),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": "q2_k"}, 404),
    ("post", VARIANT, "/internal/models/nope/variant", {"variant": "f32"}, 404),
    ("post", VARIANT, "/internal/models/junk/variant", {"variant": "default"}, 422),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": 5}, 400),
    ("post", VARIANT, "/internal/models/tiny/variant", {}, 400),
    ("post", VARIANT, "/internal/models/tiny/variant", {"variant": "f32", "now": True}, 400),
    ("get", "/internal/kv/{model}", "/internal/kv/tiny", None, 503),
    ("get", "/internal/kv/{model}", "/internal/kv/tiny:f32", None, 503),
    ("get", "/internal/kv/{model}", "/internal/kv/nope", None, 404),
    ("get", "/internal/kv/{model}", "/internal/kv/junk", None, 422),
    ("get", "/internal/kv/{model}", "/internal/kv/a/b/c", None, 400),
]


@pytest.mark.parametrize("method, template, url, body, status", CALLS)
async def test_real_responses_fit(method: str, template: str, url: str, body: Any, status: int,
                                  make_client) -> None:
    client = await make_client()
    try:
        await check(client, method, template, url, body, status)
    finally:
        await client.close()


async def test_policy_switch_answers_what_changed(make_client) -> None:
    client = await make_client(scheduler="fifo")
    try:
        changed = await check(client, "post", "/internal/scheduler", "/internal/scheduler",
                              {"policy": "priority"}, 200)
        assert changed == {"policy": "priority", "previous": "fifo"}
        view = await check(client, "get", "/internal/scheduler", "/internal/scheduler", None, 200)
        assert view["policy"] == "priority"
    finally:
        await client.close()


async def test_metrics_is_prometheus_text(make_client) -> None:
    client = await make_client()
    try:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.content_type in SPEC["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert "# TYPE mullama_build_info gauge" in await resp.text()
    finally:
        await client.close()


async def test_events_is_an_event_stream(make_client) -> None:
    client = await make_client()
    try:
        client.server.app[SUPERVISOR].emit("model_loading", model="tiny:f32", reason="api")
        resp = await client.get("/internal/events", params={"backlog": "1"})
        assert resp.status == 200
        assert resp.content_type in SPEC["paths"]["/internal/events"]["get"]["responses"]["200"]["content"]
        assert await resp.content.readline() == b": mullama events\n"
        await resp.content.readline()
        event = (await resp.content.readline(), await resp.content.readline())
        assert event[0] == b"event: model_loading\n"
        record = json.loads(event[1].removeprefix(b"data: "))
        assert not list(component("Event").iter_errors(record)), record
        resp.close()
    finally:
        await client.close()


# ---------------------------------------------------------------------- the real app, fake runners


class FakeRunner:
    """``lifecycle.Handle`` and its client without a process: loads at once, answers health and /kv with
    ``busy`` (a request id) in slot 0."""

    def __init__(self, pid: int) -> None:
        self.pid, self.port = pid, 40000 + pid
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.tail = collections.deque(["last words"], maxlen=5)
        self.stalled = self.stopping = False
        self.busy: str | None = None
        self.client = self

    async def load(self, params: protocol.LoadParams, timeout: float | None = None) -> protocol.LoadResult:
        cpu = protocol.DeviceMemory(device="CPU", description="cpu", type="cpu", free=0, total=0,
                                    model=1 << 20, context=1 << 18, compute=1 << 16)
        return protocol.LoadResult(op=params.op, status="ready", devices=[cpu], n_ctx=512, n_layer=2)

    async def health(self, timeout: float = 5.0) -> protocol.Health:
        return protocol.Health(status="ready", progress=1.0)

    async def kv(self) -> protocol.KvView:
        slots = [protocol.SlotView(index=0, state="busy", request_id=self.busy, n_tokens=7, n_cached=3,
                                   n_prompt=5, n_generated=2),
                 protocol.SlotView(index=1, state="idle", request_id=None, n_tokens=0, n_cached=0, n_prompt=0,
                                   n_generated=0)]
        return protocol.KvView(slots=slots, cells_used=7, cells_total=512, n_ctx_slot=256, prefix_hits=3,
                               prefix_misses=2, prefix_evictions=0, cached_tokens=3)

    def exit(self, code: int) -> None:
        if not self.exited.done():
            self.exited.set_result(code)

    async def stop(self, drain_timeout: float) -> int:
        self.stopping = True
        self.exit(0)
        return 0

    async def kill(self) -> int:
        self.stopping = True
        self.exit(-9)
        return -9


async def settle(done: Callable[[], bool]) -> None:
    """Let the scheduler and lifecycle tasks run until ``done()`` (no timing is asserted)."""
    for _ in range(2000):
        if done():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the state never settled")


async def test_internal_views_of_loaded_models_fit(make_client, tmp_path) -> None:
    """Models loaded through the real lifecycle (fake runners): KV view, scheduler with a queue and slots,
    models with placement, history, loads, a crash and a variant swap, metrics with gauges."""
    import gguf_factory

    gguf_factory.write_tiny_llama(tmp_path / "tiny.F16.gguf", gguf_factory.TinySpec(dtype="f16"))  # tiny:f16
    runners: list[FakeRunner] = []

    async def launch(name: str) -> FakeRunner:
        runners.append(FakeRunner(len(runners) + 1))
        return runners[-1]

    client = await make_client(launch, n_parallel=1, scheduler="priority")
    sup = client.server.app[SUPERVISOR]
    tasks: list[asyncio.Task] = []
    try:
        await check(client, "post", "/api/load", "/api/load", {"model": "tiny"}, 200)  # the default, tiny:f16
        kv = await check(client, "get", "/internal/kv/{model}", "/internal/kv/tiny", None, 200)
        assert kv["model"] == "tiny:f16" and kv["usage_ratio"] == round(7 / 512, 4)

        # n_parallel 1: r0 runs, r1 and r2 wait
        for i, deadline in enumerate([None, time.monotonic() + 60, None]):
            tasks.append(asyncio.create_task(sup.scheduler.submit(
                Request(id=f"r{i}", model="tiny:f16", user="u", priority=i, deadline=deadline))))
            await settle(lambda i=i: sup.scheduler.running() == {"tiny:f16": 1} and
                         sum(sup.scheduler.waiting().values()) == i)
        runners[0].busy = "r0"
        view = await check(client, "get", "/internal/scheduler", "/internal/scheduler", None, 200)
        assert view["running"]["tiny:f16"][0]["slot"] == 0 and len(view["queue"]) == 2
        queue = [(q["id"], q["deadline_in_ms"] is None) for q in view["queue"]]
        assert queue == [("r2", True), ("r1", False)]

        swap = await check(client, "post", VARIANT, "/internal/models/tiny/variant", {"variant": "f32"}, 200)
        assert swap["mode"] == "parallel" and swap["previous"] == "tiny:f16"
        runners[-1].exit(-9)  # tiny:f32's runner dies
        await settle(lambda: sup.lifecycle.runtimes["tiny:f32"].crashes == 1)
        models = await check(client, "get", "/internal/models", "/internal/models", None, 200)
        by_name = {m["name"]: m for m in models["models"]}
        assert by_name["tiny:f32"]["loads"][-1]["crash"] and by_name["tiny:f16"]["placement"] is None
        assert models["swaps"] == [swap]
        assert models["variants"] == {"tiny": "f32"}

        resp = await client.get("/metrics")
        assert resp.status == 200 and resp.content_type == "text/plain"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


async def test_api_keys_give_documented_401(make_client) -> None:
    client = await make_client(api_keys=("k",))
    try:
        for path, method, _ in operations():
            if path == "/health":
                continue
            url = re.sub(r"{\w+}", "tiny", path)
            resp = await client.request(method.upper(), url, json={})
            assert resp.status == 401, url
            assert not list(response_validator(path, method, 401).iter_errors(await resp.json()))
        resp = await client.get("/api/ps", headers={"X-Api-Key": "k"})
        assert resp.status == 200
    finally:
        await client.close()
