"""The OpenAPI document's Ollama request schemas agree with the parsers (``ollama.py``)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ollama import _types as ot
from openapi_checks import SPEC, component

from mullama.core.errors import InvalidArgument
from mullama.http.ollama import format as ollama
from mullama.http.openai import request as openai_request
from mullama.http.openapi import spec as openapi_spec

# ---------------------------------------------------------------------- the spec agrees with the parsers

PARSERS = {"OllamaGenerateRequest": ollama.parse_generate, "OllamaChatRequest": ollama.parse_chat,
           "OllamaEmbedRequest": ollama.parse_embed, "OllamaEmbeddingsRequest": ollama.parse_embeddings}


def accepts(name: str, obj: Any) -> bool:
    try:
        PARSERS[name](json.dumps(obj).encode())
    except InvalidArgument:
        return False
    return True


_ANY = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.5, -0.5, 2.0]),
                              st.sampled_from(["", "json", "5m", "soon", "x", "none", "user", "tool"])),
                    lambda inner: st.one_of(st.lists(inner, max_size=2),
                                            st.dictionaries(st.sampled_from(["type", "role", "content"]), inner,
                                                            max_size=2)), max_leaves=4)
_OPTION_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(
    [0.5, 1.5, -0.5, 2.0, 2**32, -(2**31), 10**6]), st.sampled_from(["x", "", "\n"]),
    st.lists(st.sampled_from(["x", "", 1]), max_size=3))
_FIELDS = {
    "options": st.one_of(_ANY, st.dictionaries(st.sampled_from([*ollama.OPTION_NAMES[:12], "num_ctx", "mirostat",
                                                                "use_mmap", "bogus"]), _OPTION_VALUES, max_size=3)),
    "messages": st.one_of(_ANY, st.lists(st.fixed_dictionaries({}, optional={
        "role": st.sampled_from(["user", "assistant", "system", "tool", 1]),
        "content": st.one_of(st.none(), st.text(max_size=2), st.just(3)),
        "images": st.one_of(st.none(), st.just([]), st.just(["aGk="])),
        "tool_calls": st.one_of(st.none(), st.just([]), st.just([{}]))}), max_size=2)),
    "input": st.one_of(_ANY, st.lists(st.sampled_from(["a", ""]), max_size=3)),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_request_schema_agrees_with_the_parser(name: str, data: st.DataObject) -> None:
    """A fuzzer's contract: schema-valid bodies are accepted, schema-invalid ones refused (400)."""
    fields = sorted(SPEC["components"]["schemas"][name]["properties"])
    chosen = data.draw(st.lists(st.sampled_from(fields), max_size=3, unique=True))
    obj = {f: data.draw(_FIELDS.get(f, _ANY)) for f in chosen}
    valid = component(name).is_valid(obj)
    why = "" if valid else next(component(name).iter_errors(obj)).message
    assert valid is accepts(name, obj), f"schema says {valid} ({why}) for {obj!r}"


def test_every_option_is_in_the_schema() -> None:
    schema = SPEC["components"]["schemas"]["OllamaGenerateRequest"]["properties"]["options"]["anyOf"][1]
    assert set(schema["properties"]) == set(ollama.OPTION_NAMES)
    assert set(ot.Options.model_fields) <= set(ollama.OPTION_NAMES) | {"min_p"}


def test_limits_reach_the_ollama_schemas() -> None:
    small = openapi_spec.spec(openai_request.Limits(max_tokens=10, max_stop=2))
    options = small["components"]["schemas"]["OllamaChatRequest"]["properties"]["options"]["anyOf"][1]
    assert options["properties"]["num_predict"]["anyOf"][1]["maximum"] == 10
    assert options["properties"]["stop"]["anyOf"][1]["anyOf"][1]["maxItems"] == 2


def test_spec_documents_ndjson_streams() -> None:
    for path in ("/api/generate", "/api/chat", "/api/pull"):
        content = SPEC["paths"][path]["post"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "application/x-ndjson"}
        jsonschema.Draft202012Validator.check_schema(content["application/x-ndjson"]["schema"])
