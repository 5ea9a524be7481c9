"""The Ollama front end without a model: parsing and option mapping (``ollama.py``), the shapes it writes
(checked against the ollama client's own pydantic models and the OpenAPI document), and the routes that
need no runner (tags, show, version, /, errors) on the real app."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import test_openapi_spec as spec_tests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ollama import _types as ot

from mullama import ollama, openai_request, openapi_spec, protocol
from mullama.errors import InvalidArgument

SPEC, check, component = spec_tests.SPEC, spec_tests.check, spec_tests.component
make_client = spec_tests.make_client  # the fixture: the real app over tiny models, no runner

STATS = protocol.CompletionStats(prompt_tokens=7, cached_tokens=2, completion_tokens=3, queue_ms=0.5,
                                 prefill_ms=12.5, ttft_ms=13.0, decode_ms=30.25, total_ms=44.0,
                                 inter_token_ms_p50=10.0, inter_token_ms_p95=12.0, slot=0, pauses=0, swaps=0)


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def refused(parse, raw: bytes, param: str | None) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse(raw)
    assert getattr(info.value, "param", None) == param, str(info.value)
    return str(info.value)


# ---------------------------------------------------------------------- generate / chat


def test_generate_renders_through_the_chat_template() -> None:
    gen = ollama.parse_generate(body(model="smollm2", prompt="hi", system="be brief"))
    assert gen.kind == "generate" and gen.model == "smollm2" and gen.stream is True
    req = gen.job.request
    assert [(m.role, m.content) for m in req.messages] == [("system", "be brief"), ("user", "hi")]
    assert req.prompt is None and req.max_tokens == -1 and req.stream is True
    assert gen.job.kind == "completion" and gen.job.stream is True


def test_raw_generate_sends_the_prompt_as_is() -> None:
    gen = ollama.parse_generate(body(prompt="<|im_start|>user", raw=True, stream=False))
    assert gen.job.request.prompt == "<|im_start|>user" and gen.job.request.messages is None
    assert gen.stream is False and gen.job.stream is False and gen.model == ""


def test_what_the_client_sends_by_default_is_accepted() -> None:
    # ollama.Client.generate sends suffix "" and chat sends tools [] unless given
    assert ollama.parse_generate(body(model="m", prompt="x", suffix="")).job is not None
    assert ollama.parse_chat(body(model="m", messages=[{"role": "user", "content": "x"}], tools=[])).job


@pytest.mark.parametrize("raw", [body(model="m"), body(model="m", prompt=""), body(model="m", keep_alive=0)])
def test_nothing_to_generate_is_a_load(raw: bytes) -> None:
    gen = ollama.parse_generate(raw)
    assert gen.job is None


def test_empty_chat_is_a_load_and_keep_alive_zero_an_unload() -> None:
    assert ollama.parse_chat(body(model="m", messages=[])).job is None
    gen = ollama.parse_chat(body(model="m", keep_alive=0))
    assert gen.job is None and gen.keep_alive == 0


def test_chat_messages() -> None:
    gen = ollama.parse_chat(body(messages=[
        {"role": "system", "content": "s"}, {"role": "user", "content": "u", "images": []},
        {"role": "assistant", "content": None, "thinking": "hmm"}]))
    assert [(m.role, m.content) for m in gen.job.request.messages] == [("system", "s"), ("user", "u"),
                                                                       ("assistant", "")]
    assert gen.job.kind == "chat"


def test_options_map_to_the_request() -> None:
    gen = ollama.parse_chat(body(messages=[{"role": "user", "content": "x"}], options={
        "num_predict": 16, "temperature": 0, "top_k": 5, "top_p": 0.5, "min_p": 0.1, "repeat_penalty": 1.2,
        "repeat_last_n": 32, "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 42, "stop": ["\n", ""]}))
    r = gen.job.request
    assert (r.max_tokens, r.temperature, r.top_k, r.top_p, r.min_p) == (16, 0, 5, 0.5, 0.1)
    assert (r.repeat_penalty, r.repeat_last_n, r.presence_penalty, r.frequency_penalty) == (1.2, 32, 0.5, -0.5)
    assert r.seed == 42 and r.stop == ["\n"] and gen.ignored == ()


def test_ignored_options_are_reported() -> None:
    fields, ignored = ollama.parse_options({"num_ctx": 4096, "mirostat": 2, "typical_p": 0.9, "penalize_newline":
                                            True, "num_gpu": 0, "no_such_option": [1], "temperature": None})
    assert fields == {} and ignored == ("num_ctx", "mirostat", "typical_p", "penalize_newline", "num_gpu",
                                        "no_such_option")


@pytest.mark.parametrize("options, expected", [
    ({"num_predict": -1}, {"max_tokens": -1}), ({"num_predict": -2}, {"max_tokens": -1}),
    ({"num_predict": 0}, {"max_tokens": 0}), ({"num_predict": 8.0}, {"max_tokens": 8}),
    ({"seed": -7}, {"seed": -1}), ({"stop": "END"}, {"stop": ["END"]}), ({"stop": [""]}, {}),
    ({"temperature": 3}, {"temperature": 3}),
])
def test_option_values(options: dict[str, Any], expected: dict[str, Any]) -> None:
    assert ollama.parse_options(options)[0] == expected


@pytest.mark.parametrize("options, param", [
    ({"temperature": "hot"}, "options.temperature"), ({"temperature": True}, "options.temperature"),
    ({"num_predict": 1.5}, "options.num_predict"), ({"num_predict": "8"}, "options.num_predict"),
    ({"num_predict": -3}, "options.num_predict"), ({"num_predict": 10**6}, "options.num_predict"),
    ({"top_p": 1.5}, "options.top_p"), ({"min_p": -0.1}, "options.min_p"), ({"top_k": -1}, "options.top_k"),
    ({"repeat_penalty": 0}, "options.repeat_penalty"), ({"repeat_last_n": -2}, "options.repeat_last_n"),
    ({"seed": 2**32}, "options.seed"), ({"stop": 5}, "options.stop"), ({"stop": ["a", 1]}, "options.stop"),
    ({"stop": ["x"] * 17}, "options.stop"), ({"mirostat": "2"}, "options.mirostat"),
    ({"num_ctx": 1.5}, "options.num_ctx"), ({"use_mmap": 1}, "options.use_mmap"),
])
def test_bad_options_are_400(options: dict[str, Any], param: str) -> None:
    text = refused(ollama.parse_generate, body(prompt="x", options=options), param)
    assert param in text


def test_options_must_be_an_object() -> None:
    refused(ollama.parse_generate, body(prompt="x", options=[1]), "options")


@pytest.mark.parametrize("fmt, schema", [("json", {"type": "object"}), ("", None), (None, None),
                                         ({"type": "object", "properties": {"a": {"type": "integer"}}},
                                          {"type": "object", "properties": {"a": {"type": "integer"}}})])
def test_format(fmt: Any, schema: Any) -> None:
    gen = ollama.parse_chat(body(messages=[{"role": "user", "content": "x"}], format=fmt))
    assert gen.job.request.json_schema == schema


@pytest.mark.parametrize("parse, fields, param", [
    (ollama.parse_generate, {"prompt": "x", "format": "yaml"}, "format"),
    (ollama.parse_generate, {"prompt": "x", "format": 5}, "format"),
    (ollama.parse_generate, {"prompt": "x", "images": ["aGk="]}, "images"),
    (ollama.parse_generate, {"prompt": "x", "suffix": "end"}, "suffix"),
    (ollama.parse_generate, {"prompt": "x", "template": "{{ .Prompt }}"}, "template"),
    (ollama.parse_generate, {"prompt": "x", "context": [1, 2]}, "context"),
    (ollama.parse_generate, {"prompt": "x", "think": True}, "think"),
    (ollama.parse_generate, {"prompt": "x", "logprobs": True}, "logprobs"),
    (ollama.parse_generate, {"prompt": "x", "keep_alive": "soon"}, "keep_alive"),
    (ollama.parse_generate, {"prompt": 5}, "prompt"),
    (ollama.parse_generate, {"prompt": "x", "stream": "yes"}, "stream"),
    (ollama.parse_chat, {"messages": [{"role": "tool", "content": "4"}]}, "messages[0].role"),
    (ollama.parse_chat, {"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
     "messages[0].images"),
    (ollama.parse_chat, {"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
     "messages[0].tool_calls"),
    (ollama.parse_chat, {"messages": [{"content": "x"}]}, "messages[0].role"),
    (ollama.parse_chat, {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     "tools"),
    (ollama.parse_chat, {"messages": "hi"}, "messages"),
])
def test_refusals_name_the_field(parse, fields: dict[str, Any], param: str) -> None:
    refused(parse, body(**fields), param)


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b"null"])
def test_bad_bodies(raw: bytes) -> None:
    refused(ollama.parse_generate, raw, None)


@pytest.mark.parametrize("value, seconds", [(0, 0.0), ("5m", 300.0), (-1, -1.0), ("-1m", -1.0), (30.5, 30.5),
                                            ("1h30m", 5400.0), (None, None)])
def test_keep_alive(value: Any, seconds: float | None) -> None:
    assert ollama.keep_alive(value) == seconds


# ---------------------------------------------------------------------- embeddings


def test_embed_inputs() -> None:
    assert ollama.parse_embed(body(model="m", input="a")).inputs == ["a"]
    assert ollama.parse_embed(body(model="m", input=["a", "b"], truncate=True)).inputs == ["a", "b"]
    assert ollama.parse_embed(body(model="m", input="")).inputs == []     # the client's default: load only
    assert ollama.parse_embed(body(model="m", input=[])).inputs == []
    assert ollama.parse_embed(body(model="m", input="a", dimensions=8)).dimensions == 8
    assert ollama.parse_embeddings(body(model="m", prompt="p")).inputs == ["p"]
    assert ollama.parse_embeddings(body(model="m")).inputs == []


@pytest.mark.parametrize("fields, param", [({"input": ["a", ""]}, "input[1]"), ({"input": 5}, "input"),
                                           ({"input": "a", "dimensions": 0}, "dimensions"),
                                           ({"input": ["a"] * 2049}, "input")])
def test_embed_refusals(fields: dict[str, Any], param: str) -> None:
    refused(ollama.parse_embed, body(**fields), param)


def test_truncate_renormalises() -> None:
    assert ollama.truncate([0.6, 0.8, 0.0], 1) == [1.0]
    assert ollama.truncate([0.6, 0.8], 5) == [0.6, 0.8]
    assert ollama.truncate([0.6, 0.8], None) == [0.6, 0.8]


# ---------------------------------------------------------------------- responses


def test_created_at_is_rfc3339_with_nanoseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", ollama.rfc3339())
    assert ollama.rfc3339(ns=1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"


@pytest.mark.parametrize("reason, expected", [("stop", "stop"), ("length", "length"), ("context_full", "length"),
                                              ("repeat_limit", "stop"), ("cancelled", "stop")])
def test_done_reason(reason: str, expected: str) -> None:
    assert ollama.done_reason(reason) == expected


def test_final_record_carries_real_measurements_in_nanoseconds() -> None:
    rec = ollama.final_record("generate", "m:q", "hello", STATS, "length", total_ms=50.5, load_ms=1.25)
    assert rec["done"] is True and rec["done_reason"] == "length" and rec["response"] == "hello"
    assert rec["total_duration"] == 50_500_000 and rec["load_duration"] == 1_250_000
    assert rec["prompt_eval_count"] == 7 and rec["prompt_eval_duration"] == 12_500_000
    assert rec["eval_count"] == 3 and rec["eval_duration"] == 30_250_000


def lines(raw: bytes) -> dict[str, Any]:
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    return json.loads(raw)


@pytest.mark.parametrize("model, obj", [
    (ot.GenerateResponse, lines(ollama.generate_chunk("m", "he"))),
    (ot.GenerateResponse, ollama.final_record("generate", "m", "", STATS, "stop", total_ms=1, load_ms=0,
                                              extra={"profile": {"x": 1}})),
    (ot.GenerateResponse, ollama.load_record("generate", "m", "load")),
    (ot.ChatResponse, lines(ollama.chat_chunk("m", "he"))),
    (ot.ChatResponse, ollama.final_record("chat", "m", "hello", STATS, "stop", total_ms=1, load_ms=0)),
    (ot.ChatResponse, ollama.load_record("chat", "m", "unload")),
    (ot.EmbedResponse, ollama.embed_response("m", [[0.5, 0.5]], 2, total_ms=3, load_ms=1)),
])
def test_shapes_validate_in_the_client_and_the_spec(model, obj: dict[str, Any]) -> None:
    parsed = model(**obj)
    assert parsed.done is not False or obj["done"] is False
    name = {ot.GenerateResponse: "OllamaGenerateResponse", ot.ChatResponse: "OllamaChatResponse",
            ot.EmbedResponse: "OllamaEmbedResponse"}[model]
    assert not list(component(name).iter_errors(obj))


def test_error_line_raises_in_the_client() -> None:
    assert json.loads(ollama.error_line("boom")) == {"error": "boom"}
    err = ot.ResponseError(ollama.error_body("model 'x' not found").decode(), 404)
    assert err.error == "model 'x' not found" and err.status_code == 404


def test_details_and_model_info() -> None:
    d = ollama.details("llama", "135M", "Q4_1")
    assert ot.ModelDetails(**d).families == ["llama"] and d["family"] == "llama"
    info = ollama.model_info({"general.architecture": "llama", "tokenizer.ggml.tokens": "[49152 items]",
                              "llama.context_length": 8192}, 134_515_008)
    assert info == {"general.architecture": "llama", "tokenizer.ggml.tokens": None, "llama.context_length": 8192,
                    "general.parameter_count": 134_515_008}
    assert ollama.capabilities({"general.architecture": "bert", "bert.pooling_type": 1}) == ["embedding"]
    assert ollama.capabilities({"general.architecture": "llama"}) == ["completion"]


def test_digest_extends_the_catalog_id(tiny_path) -> None:
    from mullama.catalog import Catalog

    (entry,) = [e for e in Catalog.scan([tiny_path.parent]).entries() if e.path == tiny_path]
    full = ollama.digest(entry.path, entry.size_bytes, entry.modified)
    assert re.fullmatch(r"[0-9a-f]{64}", full) and full.startswith(entry.id)


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
    ("post", "/api/chat", "/api/chat", {"model": "tiny", "messages": [{"role": "tool", "content": "x"}]}, 400),
    ("post", "/api/chat", "/api/chat", {"model": "nope"}, 404),
    ("post", "/api/embed", "/api/embed", {"model": "nope", "input": "x"}, 404),
    ("post", "/api/embed", "/api/embed", {"model": "tiny", "input": 5}, 400),
    ("post", "/api/embeddings", "/api/embeddings", {"model": "nope", "prompt": "x"}, 404),
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
    from mullama.gguf_header import STRING_KEEP, read_header

    header = read_header(tiny_path)
    assert header.chat_template.startswith("{% for message in messages %}")
    assert header.chat_template.endswith("{% endif %}")
    assert header.metadata["tokenizer.chat_template"] == header.chat_template[:STRING_KEEP]
