"""JSON-schema and GBNF constrained generation with SmolLM2."""

from __future__ import annotations

import json

import jsonschema
import pytest

from helpers import greedy
from mullama import engine

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _chat(model, text: str) -> str:
    return model.apply_chat_template([{"role": "user", "content": text}], True)


def test_json_schema_output_parses_and_validates(smollm, smollm_ctx):
    prompt = _chat(smollm, "Give me a JSON object for a person named Alice aged 30.")
    r = engine.generate_text(smollm_ctx, smollm, prompt, greedy(64, json_schema=json.dumps(PERSON)))
    assert r.finish_reason == "stop", r.text
    value = json.loads(r.text)
    jsonschema.validate(value, PERSON)


def test_json_schema_enum_and_array(smollm, smollm_ctx):
    schema = {
        "type": "object",
        "properties": {
            "colors": {
                "type": "array",
                "items": {"enum": ["red", "green", "blue"]},
                "minItems": 1,
                "maxItems": 3,
            },
            "ok": {"type": "boolean"},
        },
        "required": ["colors", "ok"],
    }
    prompt = _chat(smollm, "List some primary colors as JSON.")
    r = engine.generate_text(smollm_ctx, smollm, prompt, greedy(64, json_schema=json.dumps(schema)))
    jsonschema.validate(json.loads(r.text), schema)


def test_json_schema_sampling_with_temperature(smollm, smollm_ctx):
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    params = engine.GenerateParams(
        max_tokens=32, sampling=engine.SamplingParams(temperature=1.0, seed=7, json_schema=json.dumps(schema))
    )
    r = engine.generate_text(smollm_ctx, smollm, _chat(smollm, "Pick a number."), params)
    jsonschema.validate(json.loads(r.text), schema)


@pytest.mark.parametrize("question", ["Is Paris in France?", "Is the sun cold?"])
def test_gbnf_yes_no(smollm, smollm_ctx, question):
    prompt = _chat(smollm, question + " Answer yes or no.")
    r = engine.generate_text(smollm_ctx, smollm, prompt, greedy(8, grammar='root ::= "yes" | "no"'))
    assert r.text in ("yes", "no")
    assert r.finish_reason == "stop"


def test_gbnf_pattern(smollm, smollm_ctx):
    import re

    grammar = 'root ::= [0-9] [0-9] "-" [0-9] [0-9]'
    r = engine.generate_text(
        smollm_ctx, smollm, _chat(smollm, "Write a score like 12-34."), greedy(12, grammar=grammar)
    )
    assert re.fullmatch(r"\d\d-\d\d", r.text), r.text


def test_json_schema_to_grammar_round_trip(smollm, smollm_ctx):
    gbnf = engine.json_schema_to_grammar(json.dumps(PERSON))
    prompt = _chat(smollm, "Give me a JSON object for a person named Bob aged 41.")
    r = engine.generate_text(smollm_ctx, smollm, prompt, greedy(64, grammar=gbnf))
    jsonschema.validate(json.loads(r.text), PERSON)
