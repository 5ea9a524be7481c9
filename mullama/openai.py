"""OpenAI API bodies in, internal jobs out; internal results in, OpenAI-shaped JSON and SSE bytes out.

Pure: no I/O. Parsing decodes with msgspec into lenient Structs (unknown fields are ignored,
because tools send extras; ``null`` means "not given", as OpenAI treats it) and then checks
ranges by hand, so every problem is one ``InvalidArgument`` whose message and ``param`` name
the parameter. Sampling fields the client left out stay at the runner's defaults: like
llama-server, we do not send OpenAI's temperature 1 / top_p 1.

Every ``*_chunk`` function and ``sse_error`` return one whole SSE event; the ``*_response``
functions and ``error_body`` return plain JSON.
"""

from __future__ import annotations

import array
import base64
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from mullama import protocol, units
from mullama.errors import InvalidArgument

DONE: bytes = b"data: [DONE]\n\n"
SYSTEM_FINGERPRINT = "mullama"
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Limits:
    """Server-side caps on what one request may ask for."""

    max_tokens: int = 32768
    max_messages: int = 2048
    max_stop: int = 16
    max_stop_len: int = 256
    max_inputs: int = 2048      # embeddings inputs per request (OpenAI's own cap)


@dataclass(frozen=True)
class Job:
    """One generation the supervisor schedules; ``request.stream`` is always True (the runner streams)."""

    kind: Literal["chat", "completion"]
    model: str                          # as the client named it; "" means the server's default
    request: protocol.CompletionRequest
    stream: bool                        # what the client asked
    include_usage: bool                 # stream_options.include_usage
    priority: int = 0
    deadline_ms: float | None = None
    keep_alive: float | None = None     # seconds; -1 forever (units.parse_duration)
    user: str | None = None
    given: frozenset[str] = frozenset()  # request fields the client set (the rest are runner defaults)


@dataclass(frozen=True)
class EmbeddingJob:
    """One /v1/embeddings request: ``inputs`` are strings, or one token-id list per input."""

    model: str
    inputs: list[str] | list[list[int]]
    encoding_format: Literal["float", "base64"]
    user: str | None


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
    function_call: Any = None


class _Body(msgspec.Struct, kw_only=True):
    """Fields both generation endpoints take; types only (ranges are checked in ``_job``)."""

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


class _ChatBody(_Body, kw_only=True):
    messages: list[_Message] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: Any = None
    tool_choice: Any = None
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


def _bad(message: str, param: str | None) -> InvalidArgument:
    exc = InvalidArgument(message)
    exc.param = param  # type: ignore[attr-defined]  # read by the API's error mapper
    return exc


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
        return _missing(name)
    if not path:
        if m := _EXPECTED.match(text):
            got = _WORDS.get(m.group(2), m.group(2))
            return _bad(f"The request body must be a JSON object, got {got}.", None)
        return _bad(f"Invalid request body: {text}.", None)
    if m := _EXPECTED.match(text):
        got = _WORDS.get(m.group(2), m.group(2))
        want = _type_words(m.group(1))
        return _bad(f"Invalid type for '{path}': expected {want}, but got {got} instead.", path)
    return _bad(f"Invalid value for '{path}': {text[:1].lower()}{text[1:]}.", path)


def _decode(body: bytes, kind: type[msgspec.Struct]) -> Any:
    if not body or not body.strip():
        raise _bad("The request body is empty; expected a JSON object.", None)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        raise _translate(e) from None
    except msgspec.DecodeError as e:
        raise _bad(f"The request body is not valid JSON ({e}).", None) from None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _bounds(name: str, value: float | None, lo: float, hi: float = math.inf, *, open_lo: bool = False
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
    raise _bad(f"Invalid value for '{name}': expected a value {want}, got {value!r}.", name)


def _missing(name: str) -> InvalidArgument:
    return _bad(f"Missing required parameter: '{name}'.", name)


def _unsupported(name: str, what: str) -> InvalidArgument:
    return _bad(f"'{name}' is not supported by this server ({what}).", name)


# ---------------------------------------------------------------- parsing


def parse_chat(body: bytes, limits: Limits = Limits()) -> Job:
    """A /v1/chat/completions body as a Job; raises InvalidArgument naming the parameter."""
    b: _ChatBody = _decode(body, _ChatBody)
    if b.logprobs:
        raise _unsupported("logprobs", "no log probabilities")
    if b.top_logprobs:
        raise _unsupported("top_logprobs", "no log probabilities")
    if b.tools or b.functions:
        raise _unsupported("tools" if b.tools else "functions", "no tool calling")
    for name, value in (("tool_choice", b.tool_choice), ("function_call", b.function_call)):
        if value not in (None, "none", "auto"):
            raise _unsupported(name, "no tool calling")
    if b.audio is not None:
        raise _unsupported("audio", "text only")
    if any(m != "text" for m in b.modalities or []):
        raise _unsupported("modalities", "text only")
    messages = _messages(b.messages, limits)
    return _job("chat", b, limits, {"messages": messages})


def parse_completion(body: bytes, limits: Limits = Limits()) -> Job:
    """A /v1/completions body as a Job: a string prompt becomes ``prompt``, token ids ``tokens``."""
    b: _CompletionBody = _decode(body, _CompletionBody)
    if b.echo:
        raise _unsupported("echo", "the prompt is not echoed")
    if b.best_of is not None and b.best_of != 1:
        raise _unsupported("best_of", "only best_of=1")
    if b.suffix:
        raise _unsupported("suffix", "no insertion")
    if b.logprobs:
        raise _unsupported("logprobs", "no log probabilities")
    return _job("completion", b, limits, _prompt(b.prompt))


def parse_embeddings(body: bytes, limits: Limits = Limits()) -> EmbeddingJob:
    """A /v1/embeddings body: inputs are strings, or token-id lists (one list per input)."""
    b: _EmbeddingBody = _decode(body, _EmbeddingBody)
    if b.dimensions is not None:
        raise _unsupported("dimensions", "vectors keep the model's size")
    fmt = b.encoding_format or "float"
    if fmt not in ("float", "base64"):
        raise _bad(f"Invalid value for 'encoding_format': expected 'float' or 'base64', got {fmt!r}.",
                   "encoding_format")
    inputs = _embedding_inputs(b.input)
    if len(inputs) > limits.max_inputs:
        raise _bad(f"Invalid value for 'input': {len(inputs)} inputs, above this server's limit of "
                   f"{limits.max_inputs}.", "input")
    return EmbeddingJob(model=b.model or "", inputs=inputs, encoding_format=fmt,  # type: ignore[arg-type]
                        user=b.user)


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _messages(raw: list[_Message] | None, limits: Limits) -> list[protocol.ChatMessage]:
    if raw is None:
        raise _missing("messages")
    if not raw:
        raise _bad("Invalid value for 'messages': expected a non-empty array.", "messages")
    if len(raw) > limits.max_messages:
        raise _bad(f"Invalid value for 'messages': {len(raw)} messages, above this server's limit of "
                   f"{limits.max_messages}.", "messages")
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if m.role in ("tool", "function"):
            raise _bad(f"Messages with role '{m.role}' are not supported by this server (no tool calling).",
                       f"{where}.role")
        role = _ROLES.get(m.role)
        if role is None:
            raise _bad(f"Invalid value for '{where}.role': expected 'system', 'developer', 'user' or "
                       f"'assistant', got {m.role!r}.", f"{where}.role")
        if m.tool_calls or m.function_call:
            name = "tool_calls" if m.tool_calls else "function_call"
            raise _unsupported(f"{where}.{name}", "no tool calling")
        out.append(protocol.ChatMessage(role=role, content=_content(m.content, role, where)))
    return out


def _content(content: str | list[_Part] | None, role: str, where: str) -> str:
    """Text of one message. Text parts are joined with "\\n", as llama.cpp's server joins them."""
    if isinstance(content, str):
        return content
    if content is None:
        if role == "assistant":
            return ""           # an assistant turn with no text renders as empty, never as "None"
        raise _bad(f"Invalid type for '{where}.content': expected a string or an array of content parts, "
                   "but got null instead.", f"{where}.content")
    if not content:
        raise _bad(f"Invalid value for '{where}.content': expected a non-empty array.", f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        if part.type != "text":
            raise _bad(f"Content parts of type {part.type!r} are not supported by this server (text only).",
                       f"{where}.content[{j}].type")
        if part.text is None:
            raise _missing(f"{where}.content[{j}].text")
        texts.append(part.text)
    return "\n".join(texts)


def _token_ids(value: list[Any], param: str) -> list[int]:
    if not value:
        raise _bad(f"Invalid value for '{param}': expected a non-empty array of token ids.", param)
    for t in value:
        if type(t) is not int or not 0 <= t <= _INT32_MAX:
            raise _bad(f"Invalid value for '{param}': token ids are integers from 0 to {_INT32_MAX}, "
                       f"got {t!r}.", param)
    return value


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int for t in value)


def _prompt(prompt: Any) -> dict[str, Any]:
    """str | [str] | [int, ...] | [[int, ...]] -> {"prompt": ...} or {"tokens": ...}."""
    if prompt is None:
        raise _missing("prompt")
    if isinstance(prompt, str):
        return {"prompt": prompt}
    if isinstance(prompt, list) and not prompt:
        raise _bad("Invalid value for 'prompt': expected a non-empty array.", "prompt")
    if _is_int_list(prompt):
        return {"tokens": _token_ids(prompt, "prompt")}
    if isinstance(prompt, list) and (all(isinstance(p, str) for p in prompt)
                                     or all(isinstance(p, list) for p in prompt)):
        if len(prompt) > 1:
            raise _bad("Invalid value for 'prompt': batched prompts are not supported; send one prompt per "
                       "request.", "prompt")
        first = prompt[0]
        return {"prompt": first} if isinstance(first, str) else {"tokens": _token_ids(first, "prompt[0]")}
    raise _bad("Invalid type for 'prompt': expected a string, an array of strings, an array of token ids or "
               "an array of token-id arrays.", "prompt")


def _embedding_inputs(value: Any) -> list[str] | list[list[int]]:
    if value is None:
        raise _missing("input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _bad("Invalid type for 'input': expected a string, an array of strings or an array of token "
                   "ids.", "input")
    if not value:
        raise _bad("Invalid value for 'input': expected a non-empty array.", "input")
    if _is_int_list(value):
        return [_token_ids(value, "input")]
    if all(isinstance(v, str) for v in value):
        for i, v in enumerate(value):
            if not v:
                raise _bad(f"Invalid value for 'input[{i}]': expected a non-empty string.", f"input[{i}]")
        return value
    if all(isinstance(v, list) for v in value):
        return [_token_ids(v, f"input[{i}]") for i, v in enumerate(value)]
    raise _bad("Invalid type for 'input': expected a string, an array of strings, an array of token ids or "
               "an array of token-id arrays (not a mix).", "input")


def _max_tokens(b: _Body, limits: Limits) -> int:
    mt, mct = b.max_tokens, b.max_completion_tokens
    if mt is not None and mct is not None and mt != mct:
        raise _bad(f"'max_tokens' ({mt}) and 'max_completion_tokens' ({mct}) disagree; give only one.",
                   "max_completion_tokens")
    name, value = ("max_completion_tokens", mct) if mct is not None else ("max_tokens", mt)
    if value is None:
        return -1           # until a stop or the end of the context
    if value <= 0:
        raise _bad(f"Invalid value for '{name}': expected an integer of at least 1, got {value}.", name)
    if value > limits.max_tokens:
        raise _bad(f"Invalid value for '{name}': {value} is above this server's limit of "
                   f"{limits.max_tokens}.", name)
    return value


def _stops(stop: str | list[str] | None, limits: Limits) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > limits.max_stop:
        raise _bad(f"Invalid value for 'stop': {len(stops)} stop sequences, above this server's limit of "
                   f"{limits.max_stop}.", "stop")
    for s in stops:
        if not s or len(s) > limits.max_stop_len:
            raise _bad(f"Invalid value for 'stop': each stop sequence must have 1 to {limits.max_stop_len} "
                       f"characters, got {len(s)}.", "stop")
    return stops


def _logit_bias(bias: dict[str, float] | None) -> dict[str, float]:
    out = {}
    for key, value in (bias or {}).items():
        if not (key.isascii() and key.isdigit()) or int(key) > _INT32_MAX:
            raise _bad(f"Invalid value for 'logit_bias': keys are token ids, got {key!r}.", "logit_bias")
        if not -100 <= value <= 100:
            raise _bad(f"Invalid value for 'logit_bias': biases are between -100 and 100, got {value!r} for "
                       f"token {key}.", "logit_bias")
        out[str(int(key))] = value
    return out


def _json_schema(rf: _ResponseFormat | None) -> dict[str, Any] | bool | None:
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return rf.schema if rf.schema is not None else {"type": "object"}
    if rf.type == "json_schema":
        if rf.json_schema is None:
            raise _missing("response_format.json_schema")
        if rf.json_schema.schema is None:
            raise _missing("response_format.json_schema.schema")
        return rf.json_schema.schema
    raise _bad(f"Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema', "
               f"got {rf.type!r}.", "response_format.type")


_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
             "frequency_penalty", "seed")


def _job(kind: Literal["chat", "completion"], b: _Body, limits: Limits, source: dict[str, Any]) -> Job:
    """Checks shared by both endpoints; only the fields the client gave reach the request."""
    if b.n is not None and b.n != 1:
        raise _bad(f"Invalid value for 'n': only n=1 is supported, got {b.n}.", "n")
    if b.stream_options is not None and not b.stream:
        raise _bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                   "stream_options")
    _bounds("temperature", b.temperature, 0, 2)
    _bounds("top_p", b.top_p, 0, 1)
    _bounds("top_k", b.top_k, 0, _INT32_MAX)
    _bounds("min_p", b.min_p, 0, 1)
    _bounds("repeat_penalty", b.repeat_penalty, 0, open_lo=True)
    _bounds("presence_penalty", b.presence_penalty, -2, 2)
    _bounds("frequency_penalty", b.frequency_penalty, -2, 2)
    _bounds("seed", b.seed, -1, 2**32 - 1)
    _bounds("priority", b.priority, -1000, 1000)
    _bounds("deadline_ms", b.deadline_ms, 0, open_lo=True)
    keep_alive = None
    if b.keep_alive is not None:
        try:
            keep_alive = units.parse_duration(b.keep_alive)
        except ValueError as e:
            raise _bad(f"Invalid value for 'keep_alive': {e}.", "keep_alive") from None
    schema = _json_schema(b.response_format)
    if schema is not None and b.grammar is not None:
        raise _bad("Give either 'grammar' or a JSON 'response_format', not both.", "grammar")
    max_tokens = _max_tokens(b, limits)
    req: dict[str, Any] = {name: getattr(b, name) for name in _SAMPLING if getattr(b, name) is not None}
    if max_tokens > 0:
        req["max_tokens"] = max_tokens
    if stops := _stops(b.stop, limits):
        req["stop"] = stops
    if bias := _logit_bias(b.logit_bias):
        req["logit_bias"] = bias
    if b.ignore_eos is not None:
        req["ignore_eos"] = b.ignore_eos
    if b.grammar is not None:
        req["grammar"] = b.grammar
    if schema is not None:
        req["json_schema"] = schema
    request = protocol.CompletionRequest(**{**source, "stream": True, "max_tokens": max_tokens, **req})
    stream = bool(b.stream)
    return Job(kind=kind, model=b.model or "", request=request, stream=stream,
               include_usage=stream and bool(b.stream_options and b.stream_options.include_usage),
               priority=b.priority or 0, deadline_ms=b.deadline_ms, keep_alive=keep_alive, user=b.user,
               given=frozenset(req))


# ---------------------------------------------------------------- formatting

# OpenAI has only "stop" and "length" for a text-only answer. A full context is a length limit;
# cancelled / repeat_limit / error ended the text early without a limit the client set, so they read
# as "stop" (the runner's own reason stays visible in the profile extension).
_FINISH = {"stop": "stop", "length": "length", "context_full": "length", "repeat_limit": "stop",
           "cancelled": "stop", "error": "stop"}


def finish_reason(reason: str) -> str:
    """The runner's finish reason as OpenAI's; OpenAI's own values map to themselves."""
    try:
        return _FINISH[reason]
    except KeyError:
        raise ValueError(f"unknown finish reason {reason!r}") from None


def usage(stats: protocol.CompletionStats) -> dict[str, Any]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": stats.cached_tokens}}


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def _head(id: str, object_: str, created: int, model: str) -> dict[str, Any]:
    return {"id": id, "object": object_, "created": created, "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT}


def chat_response(*, id: str, created: int, model: str, final: protocol.CompletionFinal, text: str,
                  extra: dict[str, Any] | None = None) -> bytes:
    """A whole chat.completion; ``extra`` (e.g. {"profile": ...}) joins the top level."""
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None,
              "finish_reason": finish_reason(final.finish_reason)}
    return msgspec.json.encode({**_head(id, "chat.completion", created, model), "choices": [choice],
                                "usage": usage(final.stats), **(extra or {})})


def chat_chunk(*, id: str, created: int, model: str, content: str | None = None, role: bool = False,
               finish: str | None = None, include_usage: bool = False) -> bytes:
    """One chat.completion.chunk event. ``role`` marks the first (delta role+content ""); ``finish`` the last
    (empty delta). With ``include_usage`` the chunk carries "usage": null, as OpenAI's do."""
    delta: dict[str, Any] = {}
    if role:
        delta = {"role": "assistant", "content": content or "", "refusal": None}
    elif content is not None:
        delta = {"content": content}
    choice = {"index": 0, "delta": delta, "logprobs": None,
              "finish_reason": finish_reason(finish) if finish is not None else None}
    obj = {**_head(id, "chat.completion.chunk", created, model), "choices": [choice]}
    if include_usage:
        obj["usage"] = None
    return _sse(obj)


def completion_response(*, id: str, created: int, model: str, final: protocol.CompletionFinal, text: str,
                        extra: dict[str, Any] | None = None) -> bytes:
    """A whole text_completion; ``extra`` joins the top level."""
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason(final.finish_reason)}
    return msgspec.json.encode({**_head(id, "text_completion", created, model), "choices": [choice],
                                "usage": usage(final.stats), **(extra or {})})


def completion_chunk(*, id: str, created: int, model: str, content: str = "", finish: str | None = None,
                     include_usage: bool = False) -> bytes:
    """One streamed text_completion event: the whole response's shape, finish_reason null until the end.
    The text is ``content``, as in chat_chunk, so a caller can stream either kind the same way."""
    choice = {"text": content, "index": 0, "logprobs": None,
              "finish_reason": finish_reason(finish) if finish is not None else None}
    obj = {**_head(id, "text_completion", created, model), "choices": [choice]}
    if include_usage:
        obj["usage"] = None
    return _sse(obj)


def usage_chunk(*, id: str, created: int, model: str, kind: Literal["chat", "completion"],
                stats: protocol.CompletionStats, extra: dict[str, Any] | None = None) -> bytes:
    """The event after the last choice when stream_options.include_usage: no choices, the usage."""
    object_ = "chat.completion.chunk" if kind == "chat" else "text_completion"
    return _sse({**_head(id, object_, created, model), "choices": [], "usage": usage(stats), **(extra or {})})


def _base64_f32(vector: list[float]) -> str:
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()               # the wire format is little-endian float32
    return base64.b64encode(packed.tobytes()).decode("ascii")


def embeddings_response(*, model: str, vectors: list[list[float]], prompt_tokens: int,
                        encoding_format: str) -> bytes:
    """A list of embedding objects; ``base64`` packs each vector as little-endian float32."""
    enc = _base64_f32 if encoding_format == "base64" else list
    data = [{"object": "embedding", "index": i, "embedding": enc(v)} for i, v in enumerate(vectors)]
    return msgspec.json.encode({"object": "list", "data": data, "model": model,
                                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})


def model_object(name: str, created: int, owned_by: str = "mullama", extra: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by, **(extra or {})}


def models_list(objects: list[dict[str, Any]]) -> bytes:
    return msgspec.json.encode({"object": "list", "data": objects})


def _error(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> bytes:
    return msgspec.json.encode(_error(message, type_, param, code))


def sse_error(message: str, type_: str, code: str | None = None) -> bytes:
    """An error inside a stream; the openai SDK raises APIError on an event with an "error" key."""
    return _sse(_error(message, type_, None, code))
