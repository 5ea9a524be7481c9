"""The OpenAI request bodies' schemas, for the supervisor's OpenAPI document (``spec``).

Request schemas of the OpenAI routes are generated from the msgspec Structs that ``openai_request.py``
decodes into, so a field added there shows up here; the range and "not supported" checks that
``openai_request.py`` makes by hand are laid over them (``_constraints``), because a schema-driven
fuzzer treats the schema as the contract: what the schema allows must be accepted, what it forbids
must be refused.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from mullama.http.openai import body
from mullama.http.openai import request as openai_request
from mullama.http.openapi.schema import DURATION, Schema

_INT32_MAX = 2**31 - 1
#: logit_bias keys: ASCII digits (leading zeros allowed) naming a token id from 0 to 2**31-1.
TOKEN_ID_KEY = (r"^0*([0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
                r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]"
                r"|214748364[0-7])$")


class _Replace(dict):
    """An overlay that replaces the generated property schema (the Struct says ``Any`` or too little)."""


# Values Python reads as false: openai_request.py refuses only truthy values of unsupported fields.
_FALSY: Schema = {"anyOf": [{"type": "null"}, {"const": False}, {"const": 0}, {"const": ""},
                            {"type": "array", "maxItems": 0}, {"type": "object", "maxProperties": 0}]}
_UNSUPPORTED = _Replace(_FALSY, description="Not supported by this server; only empty or false values.")
_KEEP_ALIVE: Schema = {"pattern": DURATION, "maxLength": 64,
                       "description": "How long the model stays loaded after this request: seconds, or a "
                                      "duration such as '5m' or '1h30m'; negative means forever."}
_TOKEN_ID: Schema = {"type": "integer", "minimum": 0, "maximum": _INT32_MAX}

# openai_request.py's private request Structs -> public component names.
_NAMES = {"_ChatBody": "ChatCompletionRequest", "_CompletionBody": "CompletionRequest",
          "_EmbeddingBody": "EmbeddingRequest", "_Message": "ChatMessage", "_Part": "ContentPart",
          "_ResponseFormat": "ResponseFormat", "_JsonSchema": "JsonSchemaFormat",
          "_StreamOptions": "StreamOptions", "_Lora": "LoraRef"}


TOOL: Schema = {"type": "object", "required": ["type", "function"], "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "description": {"type": "string"},
        "parameters": {"type": ["object", "null"], "description": "JSON schema of the arguments"}}}}}
_TOOLS = {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 128, "items": TOOL}],
          "description": "Functions the model may call (OpenAI's function tools)."}
_NAMED: Schema = {"type": "object", "required": ["type", "function"], "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}
_TOOL_CHOICE = {"anyOf": [{"type": "null"}, {"enum": ["auto", "none", "required"]}, _NAMED],
                "description": "A named function must be one of 'tools'."}
_TOOL_CALLS = {"anyOf": [{"type": "null"}, {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["function"], "properties": {
        "id": {}, "type": {},
        "function": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1}, "arguments": {}}}}}}],
    "description": "Assistant messages only: the calls it made (history)."}


def _shared_constraints(limits: openai_request.Limits) -> dict[str, Schema]:
    """``openai_request._job``'s checks, shared by chat and completion bodies. Keywords of one JSON
    type do not constrain the others, so ``minimum`` merged into ``number | null`` still allows null."""
    max_tokens = {"minimum": 1, "maximum": limits.max_tokens}
    stop_len = {"minLength": 1, "maxLength": limits.max_stop_len}
    return {
        "max_tokens": max_tokens, "max_completion_tokens": max_tokens,
        "temperature": {"minimum": 0, "maximum": 2}, "top_p": {"minimum": 0, "maximum": 1},
        "top_k": {"minimum": 0, "maximum": _INT32_MAX}, "min_p": {"minimum": 0, "maximum": 1},
        "repeat_penalty": {"exclusiveMinimum": 0},
        "presence_penalty": {"minimum": -2, "maximum": 2}, "frequency_penalty": {"minimum": -2, "maximum": 2},
        "seed": {"minimum": -1, "maximum": 2**32 - 1, "description": "-1: random"},
        "stop": {**stop_len, "maxItems": limits.max_stop, "items": {"type": "string", **stop_len}},
        "logit_bias": {"propertyNames": {"pattern": TOKEN_ID_KEY},
                       "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
        **{name: {"minimum": lo, "maximum": hi} for name, (lo, hi) in openai_request.EXTRA_BOUNDS.items()},
        "samplers": {"maxItems": body.MAX_SAMPLERS, "items": {"minLength": 1},
                     "description": "The sampler chain's order by llama.cpp's names (top_k, top_p, min_p, "
                                    "temperature, penalties, dry, xtc, top_n_sigma, typ_p, adaptive_p)."},
        "dry_sequence_breakers": {"maxItems": body.MAX_BREAKERS,
                                  "items": {"minLength": 1, "maxLength": body.MAX_BREAKER_LEN}},
        "n": {"minimum": 1, "maximum": limits.max_choices,
              "description": "Choices sampled from one prefill of the prompt (up to the server's max_choices)."},
        "priority": {"minimum": -1000, "maximum": 1000, "description": "Scheduling priority (mullama)."},
        "deadline_ms": {"exclusiveMinimum": 0, "description": "Give up after this many ms (mullama)."},
        "keep_alive": _KEEP_ALIVE,
        "grammar": {"description": "GBNF grammar (llama.cpp); not together with a JSON response_format."},
        "lora": {"maxItems": body.MAX_ADAPTERS, "description": "LoRA adapters and scales (llama-server's): "
                 "[{id or name, scale}]; not given: each loaded adapter at its default scale."},
        "n_keep": {"minimum": -1, "maximum": _INT32_MAX,
                   "description": "Prompt tokens a context shift keeps (-1: all); see context_shift."},
        "speculative": {"description": "false: no speculative drafts for this request when its model "
                                       "speculates (mullama)."},
    }


def _constraints(limits: openai_request.Limits) -> dict[str, dict[str, Schema]]:
    """Per component, per property: keywords merged into msgspec's schema, or a ``_Replace``."""
    shared = _shared_constraints(limits)
    function_call = {"enum": [None, "none", "auto"]}
    one_prompt = {"type": "array", "minItems": 1, "maxItems": 1}
    return {
        "ChatCompletionRequest": {
            **shared, "messages": {"type": "array", "minItems": 1, "maxItems": limits.max_messages},
            "logprobs": {"description": "Each generated token's log-probability (logprobs.content)."},
            "top_logprobs": {"minimum": 0, "maximum": 20, "description": "With logprobs true: the most likely tokens (else ignored, as llama-server does)."},
            "reasoning_format": {"enum": [None, "none", "auto", "deepseek", "deepseek-legacy"],
                                 "description": "How a model that reasons returns its thinking (llama-server's)."},
            "reasoning_effort": {"enum": [None, "none", "minimal", "low", "medium", "high"],
                                 "description": "'none' switches a reasoning model's thinking off."},
            "reasoning_budget_tokens": {"minimum": -1, "maximum": _INT32_MAX,
                                        "description": "Thinking tokens before the end tag is forced (-1: no limit, "
                                                       "0: no thinking; llama-server's)."},
            "thinking_budget_tokens": {"minimum": -1, "maximum": _INT32_MAX,
                                       "description": "Another name of reasoning_budget_tokens."},
            "chat_template_kwargs": {"properties": {"enable_thinking": {"type": "boolean"}},
                                     "description": "enable_thinking switches a reasoning model's thinking on/off."},
            "tools": _Replace(_TOOLS), "functions": _UNSUPPORTED, "audio": {"type": "null"},
            "tool_choice": _Replace(_TOOL_CHOICE), "function_call": function_call,
            "modalities": {"items": {"const": "text"}},
        },
        "CompletionRequest": {
            **shared,
            "prompt": _Replace(description="A string, or token ids; one prompt per request.", anyOf=[
                {"type": "string"}, {**one_prompt, "items": {"type": "string"}},
                {"type": "array", "minItems": 1, "items": _TOKEN_ID},
                {**one_prompt, "items": {"type": "array", "minItems": 1, "items": _TOKEN_ID}}]),
            "echo": {"description": "The text starts with the prompt (a text prompt, without logprobs)."},
            "best_of": {"minimum": 1, "maximum": 1},
            "suffix": {"maxLength": 0}, "logprobs": {"minimum": 0, "maximum": 5,
                                                      "description": "Log-probabilities with this many alternatives."},
        },
        "EmbeddingRequest": {
            "input": _Replace(description="Text to embed: a string or an array of strings (not token ids).",
                              anyOf=[{"type": "string", "minLength": 1},
                                     {"type": "array", "minItems": 1, "maxItems": limits.max_inputs,
                                      "items": {"type": "string", "minLength": 1}}]),
            "encoding_format": {"enum": [None, "", "float", "base64"], "description": "null or '': float"},
            "dimensions": {"type": "null", "description": "Not supported: vectors keep the model's size."},
        },
        "ChatMessage": {"role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                        "content": {"minItems": 1}, "tool_calls": _Replace(_TOOL_CALLS),
                        "tool_call_id": {"description": "role 'tool': the id of the call this answers"},
                        "function_call": _UNSUPPORTED},
        "ContentPart": {"type": {"const": "text"}, "text": {"type": "string"}},
        "ResponseFormat": {"type": {"enum": ["text", "json_object", "json_schema"]}},
    }


# Whole-object rules the per-property overlay cannot say.
_REQUIRED = {"ChatCompletionRequest": ["messages"], "CompletionRequest": ["prompt"],
             "EmbeddingRequest": ["input"], "ContentPart": ["type", "text"]}
_ECHO_OF_TEXT: Schema = {
    "if": {"required": ["echo"], "properties": {"echo": {"const": True}}},
    "then": {"properties": {"prompt": {"anyOf": [{"type": "string"},
                                                 {"type": "array", "maxItems": 1, "items": {"type": "string"}}]},
                            "logprobs": {"type": "null"}}}}
_STREAM_OPTIONS_NEED_STREAM: Schema = {
    "if": {"required": ["stream_options"], "properties": {"stream_options": {"type": "object"}}},
    "then": {"required": ["stream"], "properties": {"stream": {"const": True}}}}
_GRAMMAR_OR_JSON: Schema = {"not": {
    "required": ["grammar", "response_format"],
    "properties": {"grammar": {"type": "string"},
                   "response_format": {"type": "object", "required": ["type"],
                                       "properties": {"type": {"enum": ["json_object", "json_schema"]}}}}}}
# Both token caps may be given only when equal; JSON Schema cannot compare two fields, so: give one.
_ONE_TOKEN_CAP: Schema = {"not": {
    "required": ["max_tokens", "max_completion_tokens"],
    "properties": {"max_tokens": {"type": "integer"}, "max_completion_tokens": {"type": "integer"}}}}
_NULL_ONLY_FOR_ASSISTANT: Schema = {
    "if": {"properties": {"role": {"const": "assistant"}}},
    "else": {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}}}
_JSON_SCHEMA_NEEDS_SCHEMA: Schema = {
    "if": {"properties": {"type": {"const": "json_schema"}}},
    "then": {"required": ["json_schema"], "properties": {"json_schema": {
        "type": "object", "required": ["schema"],
        "properties": {"schema": {"type": ["object", "boolean"]}}}}}}
_CHOICE_NEEDS_TOOLS: Schema = {
    "if": {"required": ["tool_choice"],
           "properties": {"tool_choice": {"anyOf": [{"const": "required"}, {"type": "object"}]}}},
    "then": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}}}
_TOOLS_NOT_WITH_A_FORMAT: Schema = {"not": {
    "required": ["tools"],
    "properties": {"tools": {"type": "array", "minItems": 1}, "tool_choice": {"not": {"const": "none"}}},
    "anyOf": [{"required": ["grammar"], "properties": {"grammar": {"type": "string"}}},
              {"required": ["response_format"], "properties": {"response_format": {
                  "type": "object", "required": ["type"],
                  "properties": {"type": {"enum": ["json_object", "json_schema"]}}}}}]}}
_TOOL_TURNS: list[Schema] = [
    {"if": {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array"}}},
     "then": {"properties": {"role": {"const": "assistant"}}}},
    {"if": {"properties": {"role": {"const": "tool"}}},
     "then": {"required": ["tool_call_id"], "properties": {"tool_call_id": {"type": "string", "minLength": 1}}}},
]
_OBJECT_RULES: dict[str, list[Schema]] = {
    "ChatCompletionRequest": [_STREAM_OPTIONS_NEED_STREAM, _GRAMMAR_OR_JSON, _ONE_TOKEN_CAP, _CHOICE_NEEDS_TOOLS,
                              _TOOLS_NOT_WITH_A_FORMAT],
    "CompletionRequest": [_STREAM_OPTIONS_NEED_STREAM, _GRAMMAR_OR_JSON, _ONE_TOKEN_CAP, _ECHO_OF_TEXT],
    "ChatMessage": [_NULL_ONLY_FOR_ASSISTANT, *_TOOL_TURNS],
    "ResponseFormat": [_JSON_SCHEMA_NEEDS_SCHEMA],
    # an adapter is named by id or by name, not both (body.lora_refs)
    "LoraRef": [{"oneOf": [{"required": ["id"], "properties": {"id": {"type": "integer", "minimum": 0}}},
                           {"required": ["name"], "properties": {"name": {"type": "string"}}}]}],
}


def _public(name: str) -> str:
    return _NAMES.get(name, name.lstrip("_"))


def _rename_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                prefix, _, name = value.rpartition("/")
                value = f"{prefix}/{_public(name)}"
            out[key] = _rename_refs(value)
        return out
    if isinstance(node, list):
        return [_rename_refs(v) for v in node]
    return node


def request_schemas(limits: openai_request.Limits | None = None) -> dict[str, Schema]:
    """The OpenAI request bodies as components: ``openai_request.py``'s Structs plus its hand-made checks."""
    limits = limits or openai_request.Limits()
    _, generated = msgspec.json.schema_components(
        # the real shapes, private to the OpenAI request parsing
        [openai_request._ChatBody, openai_request._CompletionBody, openai_request._EmbeddingBody],
        ref_template="#/components/schemas/{name}")
    components = {_public(name): _rename_refs(schema) for name, schema in generated.items()}
    for name, overlay in _constraints(limits).items():
        props = components[name]["properties"]
        for field, extra in overlay.items():
            if isinstance(extra, _Replace):
                props[field] = copy.deepcopy(dict(extra))
            else:
                props[field] = {**props[field], **copy.deepcopy(extra)}
    for name, required in _REQUIRED.items():
        components[name]["required"] = sorted(set(components[name].get("required", [])) | set(required))
    for name, rules in _OBJECT_RULES.items():
        components[name]["allOf"] = copy.deepcopy(rules)
    for schema in components.values():
        schema.pop("title", None)
        if schema.get("required") == []:
            del schema["required"]
    return components
