"""Native tool-call formats through the engine (llama.cpp's common/chat, issue 13).

Tiny random-weight GGUFs carry the real chat templates of four families (from the pinned llama.cpp's
``models/templates``); the model's weights never run: the template renders messages and tools, and
canned answers in each family's own format go through the engine's parser, whole and split at every
byte as a stream would deliver them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gguf_factory import write_tiny_llama
from mullama import engine
from mullama.core.errors import InvalidArgument
from mullama.runner.chat import template_id

TEMPLATES = Path(__file__).resolve().parents[2] / "third_party" / "llama.cpp" / "models" / "templates"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
ARGS = {"city": "Paris"}

# family template -> (an answer with one call in its format, the content before the call)
FAMILIES = {
    "Qwen-Qwen2.5-7B-Instruct": (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        "Let me check.\n"),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', ""),
    "meta-llama-Llama-3.1-8B-Instruct": ('{"name": "get_weather", "parameters": {"city": "Paris"}}', ""),
    "mistralai-Mistral-Nemo-Instruct-2407": (
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcdef123"}]', ""),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, engine.Model]:
    d = tmp_path_factory.mktemp("tool-templates")
    out = {}
    for name in FAMILIES:
        path = write_tiny_llama(d / f"{name}.gguf", chat_template=(TEMPLATES / f"{name}.jinja").read_text())
        out[name] = engine.Model(str(path), engine.ModelParams(n_gpu_layers=0))
    yield out
    for m in out.values():
        m.close()


def _render(model: engine.Model, choice: str = "auto", messages: list | None = None) -> engine.ChatPrompt:
    return engine.apply_chat(model, json.dumps(messages or ASK), json.dumps(TOOLS), choice, False)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_template_renders_the_tools_natively(models, family):
    model = models[family]
    assert engine.chat_caps(model)["supports_tool_calls"]
    for choice in ("auto", "required"):
        chat = _render(model, choice)
        assert "get_weather" in chat.prompt and "What is the weather in Paris?" in chat.prompt
        if choice == "required":
            assert chat.grammar and not chat.grammar_lazy  # a call is forced from the first token
        elif chat.grammar_lazy:
            assert chat.triggers  # free text until the family's call marker, then the grammar
    assert "get_weather" not in _render(model, "none").grammar


@pytest.mark.parametrize("family", FAMILIES)
def test_a_canned_call_parses_whole(models, family):
    text, before = FAMILIES[family]
    parser = engine.ChatParser(_render(models[family]))
    parser.feed(text, True)
    result = parser.result()
    assert result.content == before
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("get_weather", ARGS)]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_canned_call_streamed_byte_by_byte_gives_the_same_call(models, family):
    text, before = FAMILIES[family]
    parser = engine.ChatParser(_render(models[family]))
    content, calls = "", {}
    for i in range(1, len(text) + 1):
        for d in parser.feed(text[:i], i == len(text)):
            content += d.content
            if d.tool_index >= 0:
                name, args = calls.get(d.tool_index, ("", ""))
                calls[d.tool_index] = (name + d.name, args + d.arguments)
    assert content == before
    assert {i: (n, json.loads(a)) for i, (n, a) in calls.items()} == {0: ("get_weather", ARGS)}


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_text_is_content(models, family):
    parser = engine.ChatParser(_render(models[family]))
    parser.feed("It is sunny.", True)
    assert parser.result().content == "It is sunny." and not parser.result().tool_calls


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tool_round_trip_renders(models, family):
    call_id = template_id("call_1")  # the runner gives templates 9-character ids (Mistral's demand them)
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "22 C and sunny"}]
    chat = _render(models[family], messages=history)
    assert "22 C and sunny" in chat.prompt


@pytest.mark.parametrize("messages, tools, choice, fragment", [
    ("not json", "[]", "auto", "invalid messages"),
    (json.dumps([{"content": "no role"}]), "[]", "auto", "invalid messages"),
    (json.dumps(ASK), json.dumps([{"type": "function"}]), "auto", "invalid messages or tools"),
    (json.dumps(ASK), "[]", "required", "at least one tool"),
    (json.dumps(ASK), json.dumps(TOOLS), "sometimes", "tool_choice"),
    ("[]", json.dumps(TOOLS), "auto", "no messages"),
])
def test_bad_input_is_a_typed_error(models, messages, tools, choice, fragment):
    model = next(iter(models.values()))
    with pytest.raises(InvalidArgument, match=fragment):
        engine.apply_chat(model, messages, tools, choice, False)


def test_a_reading_that_does_not_extend_the_last_one_never_raises(models):
    """Text read as content can turn out to be something else later (common/chat's diff then throws): the
    parser waits mid-stream, and at the end still sends the call, whole."""
    parser = engine.ChatParser(_render(models["Qwen-Qwen2.5-7B-Instruct"]))
    parser.feed("abc <tool", False)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    deltas = parser.feed("xyz" + call, True)
    assert [(d.tool_index, d.name, json.loads(d.arguments)) for d in deltas if d.tool_index >= 0] == [
        (0, "get_weather", ARGS)]
    assert parser.result().content == "xyz" and parser.result().tool_calls[0].name == "get_weather"
