"""Invalid GBNF raises InvalidGrammar; invalid or unsupported JSON schemas raise InvalidSchema."""

from __future__ import annotations

import json

import pytest

from helpers import greedy
from mullama import engine
from mullama.core.errors import InvalidGrammar, InvalidSchema

BAD_GBNF = {
    "unclosed group": "root ::= (",
    "no rule operator": "this is not a grammar",
    "undefined rule": "root ::= item\nitem ::= other",
    "unterminated string": 'root ::= "yes',
    "no root": 'answer ::= "yes"',
}


@pytest.mark.parametrize("grammar", BAD_GBNF.values(), ids=BAD_GBNF.keys())
def test_invalid_gbnf_raises_invalid_grammar(tiny_model, grammar):
    with pytest.raises(InvalidGrammar) as exc_info:
        engine.Sampler(tiny_model, engine.SamplingParams(grammar=grammar))
    assert not isinstance(exc_info.value, InvalidSchema)


def test_invalid_gbnf_in_generate_raises_invalid_grammar(tiny_ctx, tiny_model):
    with pytest.raises(InvalidGrammar):
        tiny_ctx.generate(tiny_model, [[1, 5]], [greedy(4, grammar="root ::= (")])


def test_valid_gbnf_is_accepted(tiny_model):
    engine.Sampler(tiny_model, engine.SamplingParams(grammar='root ::= "yes" | "no"'))


BAD_SCHEMA_TEXT = {"not json": "{not json", "truncated": '{"type": "object"', "trailing": "{} x"}
UNSUPPORTED_SCHEMA = {
    "unknown type": {"type": "nosuchtype"},
    "dangling $ref": {"$ref": "#/definitions/missing"},
    "remote $ref": {"$ref": "https://example.com/schema.json"},
    "not an object": [1, 2],
    "a number": 42,
}


@pytest.mark.parametrize("text", BAD_SCHEMA_TEXT.values(), ids=BAD_SCHEMA_TEXT.keys())
def test_schema_that_is_not_json_raises_invalid_schema(tiny_model, text):
    with pytest.raises(InvalidSchema):
        engine.json_schema_to_grammar(text)
    with pytest.raises(InvalidSchema):
        engine.Sampler(tiny_model, engine.SamplingParams(json_schema=text))


@pytest.mark.parametrize("schema", UNSUPPORTED_SCHEMA.values(), ids=UNSUPPORTED_SCHEMA.keys())
def test_unsupported_schema_raises_invalid_schema(tiny_model, schema):
    text = json.dumps(schema)
    with pytest.raises(InvalidSchema):
        engine.json_schema_to_grammar(text)
    with pytest.raises(InvalidSchema):
        engine.Sampler(tiny_model, engine.SamplingParams(json_schema=text))


def test_invalid_schema_is_an_invalid_grammar_and_value_error():
    with pytest.raises(InvalidGrammar):
        engine.json_schema_to_grammar("{not json")
    with pytest.raises(ValueError):
        engine.json_schema_to_grammar("{not json")


def test_json_schema_to_grammar_gives_gbnf_with_a_root_rule():
    gbnf = engine.json_schema_to_grammar(
        json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}})
    )
    assert "root ::=" in gbnf


def test_grammar_constrains_tiny_model_output(tiny_ctx, tiny_model):
    r = tiny_ctx.generate(tiny_model, [[1, 5]], [greedy(8, grammar='root ::= "yes" | "no"')])[0]
    assert r.text in ("yes", "no")
    assert r.finish_reason == "stop"


def test_grammar_that_only_accepts_the_empty_string_stops_at_once(tiny_ctx, tiny_model):
    r = tiny_ctx.generate(tiny_model, [[1, 5]], [greedy(8, grammar='root ::= ""')])[0]
    assert r.finish_reason == "stop"
    assert r.text == "" and r.tokens == []


@pytest.mark.parametrize("grammar,fragment", [
    ("root ::= r0\n" + "".join(f'r{i} ::= r{i + 1} "x"\n' for i in range(120_000)) + 'r120000 ::= "x"\n',
     "above the limit of 1048576"),
    ("root ::= r0\n" + "".join(f'r{i} ::= r{i + 1}\n' for i in range(9_000)) + 'r9000 ::= "x"\n', "9002 rules"),
    ("root ::= " + "(" * 300 + '"a"' + ")" * 300, "nested deeper than 256"),
])
def test_the_runner_refuses_grammars_that_would_overflow_its_stack(grammar: str, fragment: str) -> None:
    """llama.cpp's grammar code recurses per nesting level and per rule of a chain; 120 000 chained
    rules segfaulted a runner. These are refused before they reach it."""
    from mullama import wire
    from mullama.core.errors import InvalidGrammar
    from mullama.runner.server import check_completion

    with pytest.raises(InvalidGrammar, match=fragment):
        check_completion(wire.CompletionRequest(prompt="x", grammar=grammar))


@pytest.mark.parametrize("schema, fragment", [
    ({"enum": list(range(40_000))}, "enum values"),  # issue 16: 39 CPU-seconds after its client left
    ({"type": "object", "properties": {"a": {"enum": list(range(5000))}, "b": {"anyOf": [{"enum": list(range(5000))}]}}},
     "enum values"),
    ({"description": "x" * (300 << 10)}, "bytes"),
])
def test_the_runner_refuses_schemas_too_costly_to_compile(schema: dict, fragment: str) -> None:
    from mullama import wire
    from mullama.runner.server import check_completion

    with pytest.raises(InvalidSchema, match=fragment):
        check_completion(wire.CompletionRequest(prompt="x", json_schema=schema))


def test_schemas_within_the_bounds_pass() -> None:
    from mullama import wire
    from mullama.runner.server import MAX_SCHEMA_ENUM, check_completion

    check_completion(wire.CompletionRequest(prompt="x", json_schema={"enum": list(range(MAX_SCHEMA_ENUM))}))
