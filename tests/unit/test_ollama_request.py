"""The Ollama front end's request parsing and option mapping (``ollama.py``), without a model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mullama.core.errors import InvalidArgument
from mullama.http.ollama import format as ollama


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
    assert [m.reasoning_content for m in gen.job.request.messages] == [None, None, "hmm"]
    assert gen.job.kind == "chat"


def test_options_map_to_the_request() -> None:
    gen = ollama.parse_chat(body(messages=[{"role": "user", "content": "x"}], options={
        "num_predict": 16, "temperature": 0, "top_k": 5, "top_p": 0.5, "min_p": 0.1, "repeat_penalty": 1.2,
        "repeat_last_n": 32, "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 42, "stop": ["\n"]}))
    r = gen.job.request
    assert (r.max_tokens, r.temperature, r.top_k, r.top_p, r.min_p) == (16, 0, 5, 0.5, 0.1)
    assert (r.repeat_penalty, r.repeat_last_n, r.presence_penalty, r.frequency_penalty) == (1.2, 32, 0.5, -0.5)
    assert r.seed == 42 and r.stop == ["\n"] and gen.load == {} and gen.unknown == ()


def test_load_options_and_unknown_names_come_back_apart() -> None:
    fields, load, unknown = ollama.parse_options({"num_ctx": 4096.0, "penalize_newline": False, "tfs_z": 1,
                                                  "num_gpu": 0, "use_mmap": True, "no_such_option": [1],
                                                  "temperature": None})
    assert fields == {}                             # removed samplers at "off": nothing to do
    assert load == {"num_ctx": 4096, "num_gpu": 0, "use_mmap": True} and unknown == ("no_such_option",)
    gen = ollama.parse_generate(body(model="m", options={"num_ctx": 512, "bogus": 1}))   # a load: checked too
    assert gen.job is None and gen.load == {"num_ctx": 512} and gen.unknown == ("bogus",)
    job = ollama.parse_embed(body(model="m", input="a", options={"f16_kv": True, "temperature": 0}))
    assert job.load == {"f16_kv": True} and job.unknown == ()
    assert ollama.parse_embeddings(body(model="m", prompt="a", options={"num_thread": 2})).load == {"num_thread": 2}


@pytest.mark.parametrize("value", [-1, 0, 4, 4.0])
def test_num_keep_maps_to_n_keep(value: Any) -> None:
    gen = ollama.parse_chat(body(messages=[{"role": "user", "content": "x"}], options={"num_keep": value}))
    assert gen.job.request.n_keep == value and gen.load == {} and "n_keep" in gen.job.given


def test_samplers_beyond_openai_s_are_mapped() -> None:
    fields, load, unknown = ollama.parse_options({"mirostat": 2, "mirostat_tau": 4.0, "mirostat_eta": 0.2,
                                                  "typical_p": 0.9})
    assert fields == {"mirostat": 2, "mirostat_tau": 4.0, "mirostat_eta": 0.2, "typical_p": 0.9}
    assert not load and not unknown


@pytest.mark.parametrize("options, expected", [
    ({"num_predict": -1}, {"max_tokens": -1}), ({"num_predict": -2}, {"max_tokens": -1}),
    ({"num_predict": 8.0}, {"max_tokens": 8}),
    ({"seed": -7}, {"seed": -1}), ({"stop": "END"}, {"stop": ["END"]}), ({"stop": []}, {}),
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
    ({"mirostat": 3}, "options.mirostat"), ({"mirostat_eta": 2}, "options.mirostat_eta"),
    ({"tfs_z": 0.9}, "options.tfs_z"), ({"penalize_newline": True}, "options.penalize_newline"),
    ({"num_ctx": 1.5}, "options.num_ctx"), ({"use_mmap": 1}, "options.use_mmap"),
    ({"num_keep": -2}, "options.num_keep"), ({"num_keep": 2**31}, "options.num_keep"),
    # one rule with the OpenAI routes (issue 16): no empty stop string, no zero-token answer
    ({"stop": [""]}, "options.stop"), ({"stop": ""}, "options.stop"), ({"num_predict": 0}, "options.num_predict"),
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
    (ollama.parse_generate, {"prompt": "x", "think": "max"}, "think"),
    (ollama.parse_generate, {"prompt": "x", "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    (ollama.parse_generate, {"prompt": "x", "keep_alive": "soon"}, "keep_alive"),
    (ollama.parse_generate, {"prompt": 5}, "prompt"),
    (ollama.parse_generate, {"prompt": "x", "stream": "yes"}, "stream"),
    (ollama.parse_chat, {"messages": [{"role": "robot", "content": "4"}]}, "messages[0].role"),
    (ollama.parse_chat, {"messages": [{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}]},
     "messages[0].tool_calls"),
    (ollama.parse_chat, {"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
     "messages[0].images"),
    (ollama.parse_chat, {"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
     "messages[0].tool_calls[0].function.name"),
    (ollama.parse_chat, {"messages": [{"content": "x"}]}, "messages[0].role"),
    (ollama.parse_chat, {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     "tools[0].function"),
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


def test_range_messages_print_integers_as_integers() -> None:
    text = refused(ollama.parse_generate, body(prompt="x", options={"seed": 2**32}), "options.seed")
    assert "between -9223372036854775808 and 4294967295" in text and "e+" not in text
