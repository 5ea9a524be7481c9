"""The OpenAI request bodies as msgspec shapes, and decoding into them with errors in OpenAI's words.

Types only: the Structs are lenient (unknown fields are ignored, because tools send extras; ``null``
means "not given", as OpenAI treats it), and ranges are checked by hand in ``openai_request.py``. The
helpers here build the one ``InvalidArgument`` every problem becomes, its message and ``param``
naming the parameter. ``openapi_spec.py`` generates the request schemas from these Structs, so their
class names are part of the published document. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from mullama import wire
from mullama.core.errors import InvalidArgument

INT32_MAX = 2**31 - 1


# ---------------------------------------------------------------- request shapes (types only)


class _StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None


class _JsonSchema(msgspec.Struct, kw_only=True):
    name: str | None = None
    schema: dict[str, Any] | bool | None = None
    strict: bool | None = None


class _ResponseFormat(msgspec.Struct, kw_only=True):
    type: str
    json_schema: _JsonSchema | None = None
    schema: dict[str, Any] | bool | None = None     # llama-server's {"type": "json_object", "schema": ...}


class _Part(msgspec.Struct, kw_only=True):
    type: str
    text: str | None = None


class _Message(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[_Part] | None = None
    tool_calls: Any = None
    tool_call_id: str | None = None
    name: str | None = None
    reasoning_content: str | None = None        # assistant: its earlier thinking (llama-server's field)
    function_call: Any = None


class _Lora(msgspec.Struct, kw_only=True):
    """One adapter of a request's LoRA set: llama-server's ``{"id", "scale"}``, or ours by ``name``."""

    id: int | None = None
    name: str | None = None
    scale: float = 1.0


class _Body(msgspec.Struct, kw_only=True):
    """Fields both generation endpoints take; types only (ranges are checked in ``openai_request._job``)."""

    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    # llama.cpp's other samplers, by llama-server's names
    typical_p: float | None = None
    min_keep: int | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    xtc_probability: float | None = None
    xtc_threshold: float | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_penalty_last_n: int | None = None
    dry_sequence_breakers: list[str] | None = None
    top_n_sigma: float | None = None
    dynatemp_range: float | None = None
    dynatemp_exponent: float | None = None
    samplers: list[str] | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    response_format: _ResponseFormat | None = None
    grammar: str | None = None
    ignore_eos: bool | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    user: str | None = None
    priority: int | None = None
    deadline_ms: float | None = None
    keep_alive: str | int | float | None = None
    lora: list[_Lora] | None = None   # the LoRA adapters and scales; not given: each at its default scale
    n_keep: int | None = None         # prompt tokens a context shift keeps (-1: all)
    speculative: bool | None = None   # False: no speculative drafts for this request (mullama)


class _ChatBody(_Body, kw_only=True):
    messages: list[_Message] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    reasoning_format: str | None = None        # llama-server's
    reasoning_effort: str | None = None
    reasoning_budget_tokens: int | None = None  # llama-server's; thinking_budget_tokens is its other name
    thinking_budget_tokens: int | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    modalities: list[str] | None = None


class _CompletionBody(_Body, kw_only=True):
    prompt: Any = None
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None
    logprobs: int | None = None


class _EmbeddingBody(msgspec.Struct, kw_only=True):
    input: Any = None
    model: str | None = None
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None


# ---------------------------------------------------------------- errors


def bad(message: str, param: str | None) -> InvalidArgument:
    return InvalidArgument(message, param=param)


_WORDS = {"float": "a number", "int": "an integer", "str": "a string", "bool": "a boolean",
          "array": "an array", "object": "an object", "null": "null"}
_EXPECTED = re.compile(r"Expected `([^`]*)`, got `([^`]*)`")
_MISSING = re.compile(r"Object missing required field `([^`]*)`")
_AT = re.compile(r" - at `\$\.?([^`]*)`$")


def _type_words(expected: str) -> str:
    names = [n.strip() for n in expected.split("|") if n.strip() != "null"] or ["null"]
    if "int" in names and "float" in names:
        names.remove("int")
    return " or ".join(dict.fromkeys(_WORDS.get(n, n) for n in names))


def _translate(err: msgspec.ValidationError) -> InvalidArgument:
    """msgspec's "Expected `float | null`, got `str` - at `$.temperature`" in OpenAI's words."""
    text = str(err)
    at = _AT.search(text)
    path = at.group(1).replace("[...]", "") if at else ""
    text = text[: at.start()] if at else text
    if m := _MISSING.match(text):
        name = f"{path}.{m.group(1)}" if path else m.group(1)
        return missing(name)
    if not path:
        if m := _EXPECTED.match(text):
            got = _WORDS.get(m.group(2), m.group(2))
            return bad(f"The request body must be a JSON object, got {got}.", None)
        return bad(f"Invalid request body: {text}.", None)
    if m := _EXPECTED.match(text):
        got = _WORDS.get(m.group(2), m.group(2))
        want = _type_words(m.group(1))
        return bad(f"Invalid type for '{path}': expected {want}, but got {got} instead.", path)
    return bad(f"Invalid value for '{path}': {text[:1].lower()}{text[1:]}.", path)


def decode(body: bytes, kind: type[msgspec.Struct]) -> Any:
    """``body`` as a ``kind``; an empty body, bad JSON or UTF-8, nesting deeper than the interpreter's
    recursion limit or a wrong type is an InvalidArgument."""
    if not body or not body.strip():
        raise bad("The request body is empty; expected a JSON object.", None)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        raise _translate(e) from None
    except msgspec.DecodeError as e:
        raise bad(f"The request body is not valid JSON ({e}).", None) from None
    except UnicodeDecodeError:
        raise bad("The request body is not valid UTF-8.", None) from None
    except RecursionError:
        raise bad("The request body is nested too deeply.", None) from None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


MAX_SAMPLERS, MAX_BREAKERS, MAX_BREAKER_LEN = 32, 64, 64


def check_lists(b: _Body) -> None:
    """The sampler order and DRY's sequence breakers, bounded (names are checked by the engine)."""
    if b.samplers is not None and (len(b.samplers) > MAX_SAMPLERS or not all(b.samplers)):
        raise bad(f"Invalid value for 'samplers': up to {MAX_SAMPLERS} sampler names, none empty.", "samplers")
    breakers = b.dry_sequence_breakers
    if breakers is not None and (len(breakers) > MAX_BREAKERS
                                 or not all(1 <= len(s) <= MAX_BREAKER_LEN for s in breakers)):
        raise bad(f"Invalid value for 'dry_sequence_breakers': up to {MAX_BREAKERS} strings of 1 to "
                  f"{MAX_BREAKER_LEN} characters.", "dry_sequence_breakers")


MAX_ADAPTERS = 64


def lora_refs(refs: list[_Lora]) -> list[wire.LoraRef]:
    """A request's ``lora`` list, checked: each names one adapter (``id`` or ``name``), with a finite scale."""
    if len(refs) > MAX_ADAPTERS:
        raise bad(f"Invalid value for 'lora': up to {MAX_ADAPTERS} adapters.", "lora")
    for i, ref in enumerate(refs):
        if (ref.id is None) == (ref.name is None):
            raise bad(f"Invalid value for 'lora[{i}]': give either 'id' or 'name'.", f"lora[{i}]")
        bounds(f"lora[{i}].id", ref.id, 0, INT32_MAX)
        if not math.isfinite(ref.scale):
            raise bad(f"Invalid value for 'lora[{i}].scale': expected a finite number.", f"lora[{i}].scale")
    return [wire.LoraRef(id=r.id, name=r.name, scale=r.scale) for r in refs]


def bounds(name: str, value: float | None, lo: float, hi: float = math.inf, *, open_lo: bool = False
           ) -> None:
    """Raise unless lo <= value <= hi (lo < value with ``open_lo``); None passes (not given)."""
    if value is None:
        return
    finite = not isinstance(value, float) or math.isfinite(value)
    if finite and (value > lo if open_lo else value >= lo) and value <= hi:
        return
    if hi == math.inf:
        want = f"greater than {_num(lo)}" if open_lo else f"of at least {_num(lo)}"
    else:
        want = f"between {_num(lo)} and {_num(hi)}"
    raise bad(f"Invalid value for '{name}': expected a value {want}, got {value!r}.", name)


def missing(name: str) -> InvalidArgument:
    return bad(f"Missing required parameter: '{name}'.", name)


def unsupported(name: str, what: str) -> InvalidArgument:
    return bad(f"'{name}' is not supported by this server ({what}).", name)
