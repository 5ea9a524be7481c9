"""Ollama request bodies in, jobs out: the parsing half of the Ollama front end (pure, no I/O).

``parse_generate`` and ``parse_chat`` turn ``/api/generate`` and ``/api/chat`` bodies into the same
``openai_request.Job`` the OpenAI routes schedule, so both front ends share one generation path
(``api.generate``). ``options`` map onto ``wire.CompletionRequest``; load-time options such as
``num_ctx`` come back apart (``load``), for the routes to check against the model's settings
(``load_options.check``) once they know the model; unknown names come back too (``unknown``: Ollama
warns about them and goes on). A wrong type or range is one ``InvalidArgument`` (400) naming
``options.<name>``.
``ollama.py`` formats the responses and re-exports these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from mullama import wire
from mullama.http.ollama.load_options import NAMES as LOAD_OPTIONS
from mullama.http.openai import request as openai_request
from mullama.http.openai.body import INT32_MAX, bad, decode, unsupported
from mullama.http.openai.tools import parse_tool_calls, parse_tools

_LIMITS = openai_request.Limits()


# ---------------------------------------------------------------------- request shapes (types only)


class _Message(msgspec.Struct, kw_only=True):
    role: str
    content: str | None = None
    images: list[Any] | None = None
    tool_calls: list[Any] | None = None
    tool_name: str | None = None
    thinking: str | None = None     # a previous answer's thinking: for templates that reason


class _Common(msgspec.Struct, kw_only=True):
    model: str | None = None
    stream: bool | None = None      # Ollama streams unless told ``false``
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    keep_alive: str | float | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | float | None = None  # JSON has one number type: 2.0 is the integer 2


class GenerateBody(_Common, kw_only=True):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[Any] | None = None


class ChatBody(_Common, kw_only=True):
    messages: list[_Message] | None = None
    tools: list[Any] | None = None


class EmbedBody(msgspec.Struct, kw_only=True):
    model: str | None = None
    input: str | list[str] | None = None
    truncate: bool | None = None
    options: dict[str, Any] | None = None
    keep_alive: str | float | None = None
    dimensions: int | float | None = None  # JSON has one number type: 2.0 is the integer 2 (as the schema says)


class EmbeddingsBody(msgspec.Struct, kw_only=True):
    model: str | None = None
    prompt: str | None = None
    options: dict[str, Any] | None = None
    keep_alive: str | float | None = None


class ModelBody(msgspec.Struct, kw_only=True):
    """/api/show: ``model`` (``name`` is the older spelling); ``verbose`` is accepted."""

    model: str | None = None
    name: str | None = None
    verbose: bool | None = None


# ---------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Generation:
    """One /api/generate or /api/chat request. ``job`` is None when there is nothing to generate (no
    prompt, no messages): Ollama then loads the model, or unloads it with ``keep_alive`` 0."""

    kind: Literal["generate", "chat"]
    model: str
    job: openai_request.Job | None
    stream: bool
    keep_alive: float | None
    load: dict[str, Any] = field(default_factory=dict)  # load-time options, for load_options.check
    unknown: tuple[str, ...] = ()   # option names Ollama does not have (logged, as Ollama warns)


@dataclass(frozen=True)
class EmbedJob:
    model: str
    inputs: list[str]               # empty: only load the model
    keep_alive: float | None
    dimensions: int | None
    load: dict[str, Any] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()


# ---------------------------------------------------------------------- options

_Kind = Literal["int", "float", "bool", "stop"]
#: option -> (type, CompletionRequest field, lowest, highest); field None: a load-time option (LOAD_OPTIONS)
#: or a removed sampler (REMOVED).
OPTIONS: dict[str, tuple[_Kind, str | None, float, float]] = {
    "num_predict": ("int", "max_tokens", -2, INT32_MAX),
    "temperature": ("float", "temperature", 0, math.inf),
    "top_k": ("int", "top_k", 0, INT32_MAX),
    "top_p": ("float", "top_p", 0, 1),
    "min_p": ("float", "min_p", 0, 1),
    "repeat_penalty": ("float", "repeat_penalty", 0, math.inf),     # > 0, checked below
    "repeat_last_n": ("int", "repeat_last_n", -1, INT32_MAX),
    "presence_penalty": ("float", "presence_penalty", -math.inf, math.inf),
    "frequency_penalty": ("float", "frequency_penalty", -math.inf, math.inf),
    "seed": ("int", "seed", -(2**63), 2**32 - 1),
    "stop": ("stop", "stop", 0, 0),
    "typical_p": ("float", "typical_p", 0, 1),
    "mirostat": ("int", "mirostat", 0, 2),
    "mirostat_tau": ("float", "mirostat_tau", 0, 1e6),
    "mirostat_eta": ("float", "mirostat_eta", 0, 1),
    # samplers llama.cpp no longer has: refused unless they say "off" (REMOVED)
    "tfs_z": ("float", None, 0, math.inf),
    "penalize_newline": ("bool", None, 0, 0),
    "num_keep": ("int", "n_keep", -1, INT32_MAX),
    # load-time options: checked against the model's settings from the server's config (load_options.py)
    "num_ctx": ("int", None, 0, INT32_MAX),
    "num_batch": ("int", None, 0, INT32_MAX),
    "num_gpu": ("int", None, -1, INT32_MAX),
    "main_gpu": ("int", None, 0, INT32_MAX),
    "num_thread": ("int", None, 0, INT32_MAX),
    "numa": ("bool", None, 0, 0),
    "low_vram": ("bool", None, 0, 0),
    "f16_kv": ("bool", None, 0, 0),
    "logits_all": ("bool", None, 0, 0),
    "vocab_only": ("bool", None, 0, 0),
    "use_mmap": ("bool", None, 0, 0),
    "use_mlock": ("bool", None, 0, 0),
    "embedding_only": ("bool", None, 0, 0),
}
OPTION_NAMES = tuple(OPTIONS)
#: options of samplers llama.cpp removed, and the value that means "off" (the only one accepted)
REMOVED: dict[str, Any] = {"tfs_z": 1.0, "penalize_newline": False}


def json_word(value: Any) -> str:
    return "false" if value is False else "true" if value is True else _number(value)


def _option(name: str, value: Any, limits: openai_request.Limits) -> Any:
    kind, _, lo, hi = OPTIONS[name]
    param = f"options.{name}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad(f"Invalid type for '{param}': expected a boolean, got {value!r}.", param)
        return value
    if kind == "stop":
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad(f"Invalid type for '{param}': expected a string or an array of strings.", param)
        if len(stops) > limits.max_stop:
            raise bad(f"Invalid value for '{param}': {len(stops)} stop sequences, above this server's limit "
                      f"of {limits.max_stop}.", param)
        for s in stops:  # the OpenAI routes' rule: an empty stop string is no stop string
            if not s or len(s) > limits.max_stop_len:
                raise bad(f"Invalid value for '{param}': each stop sequence must have 1 to {limits.max_stop_len} "
                          f"characters, got {len(s)}.", param)
        return stops
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        word = "an integer" if kind == "int" else "a number"
        raise bad(f"Invalid type for '{param}': expected {word}, got {value!r}.", param)
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise bad(f"Invalid type for '{param}': expected an integer, got {value!r}.", param)
            value = int(value)
    elif not math.isfinite(value):
        raise bad(f"Invalid value for '{param}': expected a finite number, got {value!r}.", param)
    if name == "num_predict" and value == 0:  # the OpenAI routes refuse max_tokens 0 too
        raise bad(f"Invalid value for '{param}': expected -1, -2 or an integer of at least 1, got 0.", param)
    if not lo <= value <= hi or (name == "repeat_penalty" and value <= 0):
        want = "greater than 0" if name == "repeat_penalty" else (
            f"of at least {_number(lo)}" if hi == math.inf else f"between {_number(lo)} and {_number(hi)}")
        raise bad(f"Invalid value for '{param}': expected a value {want}, got {value!r}.", param)
    return value


def _number(x: float) -> str:
    """A bound as people write it: -9223372036854775808, not -9.22337e+18."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def parse_options(options: dict[str, Any] | None, limits: openai_request.Limits = _LIMITS
                  ) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """``options`` as CompletionRequest fields, the load-time options (for ``load_options.check``) and
    the unknown names (which Ollama ignores with a warning). ``null`` values mean "not given"."""
    fields: dict[str, Any] = {}
    load: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in (options or {}).items():
        if value is None:
            continue
        if name not in OPTIONS:
            unknown.append(name)
            continue
        value = _option(name, value, limits)
        if name in REMOVED and value != REMOVED[name]:
            raise bad(f"Invalid value for 'options.{name}': llama.cpp no longer has this sampler; only "
                      f"{json_word(REMOVED[name])} (off) is accepted.", f"options.{name}")
        if name in LOAD_OPTIONS:
            load[name] = value
            continue
        target = OPTIONS[name][1]
        if target is None:                          # a removed sampler, off
            continue
        if name == "num_predict":
            if value > limits.max_tokens:
                raise bad(f"Invalid value for 'options.num_predict': {value} is above this server's limit of "
                          f"{limits.max_tokens}.", "options.num_predict")
            value = -1 if value < 0 else value      # -1 infinite, -2 fill the context: both until it is full
        if name == "seed" and value < 0:
            value = -1                              # any negative seed: random, as in Ollama
        if name == "stop" and not value:
            continue
        fields[target] = value
    return fields, load, tuple(unknown)


#: Ollama's keep_alive (seconds, or a duration such as "5m"; negative: forever; 0: unload now): ours
keep_alive = openai_request.keep_alive_param


def _format(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``format``: "" none, "json" any JSON object, a JSON schema object that schema."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "object"}
    if isinstance(fmt, dict):
        return fmt
    raise bad(f"Invalid value for 'format': expected \"json\" or a JSON schema object, got {fmt!r}.", "format")


def _common(b: _Common, limits: openai_request.Limits
            ) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...], float | None]:
    fields, load, unknown = parse_options(b.options, limits)
    if b.think is not None and b.think != "":
        if b.think not in (True, False, "low", "medium", "high"):
            raise bad(f"Invalid value for 'think': expected true, false, \"low\", \"medium\" or \"high\", "
                      f"got {b.think!r}.", "think")
        # thinking comes back apart (``thinking``) for a model that reasons; others answer as usual
        fields.update(think=b.think is not False, reasoning_format="deepseek")
    top = b.top_logprobs
    if top is not None and (not 0 <= top <= 20 or top != int(top)):
        raise bad(f"Invalid value for 'top_logprobs': expected an integer from 0 to 20, got {top}.", "top_logprobs")
    if b.logprobs:
        fields.update(logprobs=True, top_logprobs=int(top or 0))
    schema = _format(b.format)
    if schema is not None:
        fields["json_schema"] = schema
    return fields, load, unknown, keep_alive(b.keep_alive)


def _job(kind: Literal["generate", "chat"], b: _Common, fields: dict[str, Any], source: dict[str, Any],
         keep: float | None) -> openai_request.Job:
    request = wire.CompletionRequest(**{**source, **fields, "stream": True,
                                            "max_tokens": fields.get("max_tokens", -1)})
    return openai_request.Job(kind="chat" if kind == "chat" else "completion", model=b.model or "",
                              request=request, stream=b.stream is not False, include_usage=False,
                              keep_alive=keep, given=frozenset(fields))


def parse_generate(body: bytes, limits: openai_request.Limits = _LIMITS) -> Generation:
    """An /api/generate body. Without ``raw`` the prompt (and ``system``) go through the model's chat
    template as a user turn, as Ollama's templates render them; with ``raw`` the prompt is sent as is."""
    b: GenerateBody = decode(body, GenerateBody)
    if b.images:
        raise unsupported("images", "text only: the models this server runs have no vision")
    if b.suffix:
        raise unsupported("suffix", "no fill-in-the-middle")
    if b.template:
        raise unsupported("template", "the model's own chat template is used; Go templates are not run")
    if b.context:
        raise unsupported("context", "send the conversation with /api/chat instead of token context")
    fields, load, unknown, keep = _common(b, limits)
    if not b.prompt:
        return Generation("generate", b.model or "", None, b.stream is not False, keep, load, unknown)
    if b.raw:
        source: dict[str, Any] = {"prompt": b.prompt}
    else:
        turns = [wire.ChatMessage(role="system", content=b.system)] if b.system else []
        source = {"messages": [*turns, wire.ChatMessage(role="user", content=b.prompt)]}
    return Generation("generate", b.model or "", _job("generate", b, fields, source, keep),
                      b.stream is not False, keep, load, unknown)


_ROLES = ("system", "user", "assistant", "tool")


def parse_chat(body: bytes, limits: openai_request.Limits = _LIMITS) -> Generation:
    """An /api/chat body; no messages means: load (or with keep_alive 0 unload) the model."""
    b: ChatBody = decode(body, ChatBody)
    tools = parse_tools(b.tools) if b.tools else []
    fields, load, unknown, keep = _common(b, limits)
    messages = b.messages or []
    if len(messages) > limits.max_messages:
        raise bad(f"Invalid value for 'messages': {len(messages)} messages, above this server's limit of "
                  f"{limits.max_messages}.", "messages")
    out = []
    unanswered: list[str] = []  # Ollama's calls carry no ids: each result answers the oldest open call
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role not in _ROLES:
            raise bad(f"Invalid value for '{where}.role': expected 'system', 'user', 'assistant' or 'tool', got "
                      f"{m.role!r}.", f"{where}.role")
        if m.images:
            raise unsupported(f"{where}.images", "text only: the models this server runs have no vision")
        if m.tool_calls and m.role != "assistant":
            raise bad(f"Invalid value for '{where}.tool_calls': only assistant messages carry tool calls.",
                      f"{where}.tool_calls")
        if m.tool_calls:
            calls = [msgspec.structs.replace(c, id=f"call_{i}_{j}")
                     for j, c in enumerate(parse_tool_calls(m.tool_calls, f"{where}.tool_calls"))]
            unanswered += [c.id for c in calls]
            out.append(wire.ChatMessage(role="assistant", content=m.content or None, tool_calls=calls,
                                        reasoning_content=m.thinking or None))
        elif m.role == "tool":
            call_id = unanswered.pop(0) if unanswered else f"call_{i}"
            out.append(wire.ChatMessage(role="tool", content=m.content or "", tool_call_id=call_id,
                                        name=m.tool_name))
        else:
            out.append(wire.ChatMessage(role=m.role, content=m.content or "",
                                        reasoning_content=m.thinking or None if m.role == "assistant" else None))
    if not out:
        return Generation("chat", b.model or "", None, b.stream is not False, keep, load, unknown)
    source: dict[str, Any] = {"messages": out}
    if tools:
        source["tools"] = tools
    return Generation("chat", b.model or "", _job("chat", b, fields, source, keep),
                      b.stream is not False, keep, load, unknown)


def parse_embed(body: bytes, limits: openai_request.Limits = _LIMITS) -> EmbedJob:
    """An /api/embed body: ``input`` a string or strings; "" or [] only loads the model."""
    b: EmbedBody = decode(body, EmbedBody)
    inputs = [b.input] if isinstance(b.input, str) else list(b.input or [])
    if len(inputs) > limits.max_inputs:
        raise bad(f"Invalid value for 'input': {len(inputs)} inputs, above this server's limit of "
                  f"{limits.max_inputs}.", "input")
    if isinstance(b.input, str):
        inputs = [s for s in inputs if s]   # "" (the client's default): only load the model
    for i, text in enumerate(inputs):
        if not text:
            raise bad(f"Invalid value for 'input[{i}]': expected a non-empty string.", f"input[{i}]")
    dimensions = b.dimensions
    if dimensions is not None and (isinstance(dimensions, float) and not dimensions.is_integer()
                                   or not 1 <= dimensions <= INT32_MAX):
        raise bad(f"Invalid value for 'dimensions': expected a positive integer, got {dimensions}.", "dimensions")
    _, load, unknown = parse_options(b.options, limits)  # sampling options: nothing to sample, as in Ollama
    return EmbedJob(b.model or "", inputs, keep_alive(b.keep_alive),
                    None if dimensions is None else int(dimensions), load, unknown)


def parse_embeddings(body: bytes, limits: openai_request.Limits = _LIMITS) -> EmbedJob:
    """The legacy /api/embeddings body: one ``prompt``."""
    b: EmbeddingsBody = decode(body, EmbeddingsBody)
    _, load, unknown = parse_options(b.options, limits)
    return EmbedJob(b.model or "", [b.prompt] if b.prompt else [], keep_alive(b.keep_alive), None, load, unknown)


def parse_model(body: bytes) -> str:
    """The model an /api/show body names (``model``, or the older ``name``); "" for the default."""
    b: ModelBody = decode(body or b"{}", ModelBody)
    return b.model or b.name or ""
