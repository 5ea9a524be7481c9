"""OpenAI API bodies in, internal jobs out: ``parse_chat``, ``parse_completion``, ``parse_embeddings``.

Pure: no I/O. A body is decoded into the lenient Structs of ``openai_body.py`` and then checked
here by hand, so every problem is one ``InvalidArgument`` whose message and ``param`` name the
parameter. Sampling fields the client left out stay at the runner's defaults: like llama-server, we
do not send OpenAI's temperature 1 / top_p 1. ``Limits`` are the server's caps on one request;
``Job`` (``serving/job.py``) and ``EmbeddingJob`` are what the supervisor schedules. Formatting the answers is
``openai.py``'s job, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mullama import wire
from mullama.core import sampling as sampling_limits
from mullama.core import units
from mullama.http.openai.body import (
    INT32_MAX,
    _Body,
    _ChatBody,
    _CompletionBody,
    _EmbeddingBody,
    _Message,
    _Part,
    _ResponseFormat,
    bad,
    bounds,
    check_lists,
    decode,
    lora_refs,
    missing,
    unsupported,
)
from mullama.http.openai.tools import parse_tool_calls, parse_tool_choice, parse_tools
from mullama.serving.job import Job

# The request Structs are importable from here too (openapi_spec.py builds its schemas from them).
__all__ = ["MAX_KEEP_ALIVE_S", "EmbeddingJob", "Job", "Limits", "_ChatBody", "_CompletionBody",
           "_EmbeddingBody", "keep_alive_seconds", "parse_chat", "parse_completion", "parse_embeddings"]


@dataclass(frozen=True)
class Limits:
    """Server-side caps on what one request may ask for."""

    max_tokens: int = 32768
    max_messages: int = 2048
    max_stop: int = 16
    max_stop_len: int = 256
    max_inputs: int = 2048      # embeddings inputs per request (OpenAI's own cap)
    max_choices: int = 8        # largest n


#: A keep-alive longer than this (about ten years) means forever: a timestamp that far ahead is no
#: real expiry, and one past the year 9999 could not even be written as a date in /api/ps.
MAX_KEEP_ALIVE_S = units.MAX_KEEP_ALIVE_S
keep_alive_seconds = units.parse_keep_alive


@dataclass(frozen=True)
class EmbeddingJob:
    """One /v1/embeddings request: ``inputs`` are strings, or one token-id list per input."""

    model: str
    inputs: list[str] | list[list[int]]
    encoding_format: Literal["float", "base64"]
    user: str | None


def parse_chat(body: bytes, limits: Limits = Limits()) -> Job:
    """A /v1/chat/completions body as a Job; raises InvalidArgument naming the parameter."""
    b: _ChatBody = decode(body, _ChatBody)
    if b.functions or b.function_call not in (None, "none", "auto"):
        raise unsupported("functions" if b.functions else "function_call", "the deprecated function calling; "
                          "use 'tools' and 'tool_choice'")
    if b.audio is not None:
        raise unsupported("audio", "text only")
    if any(m != "text" for m in b.modalities or []):
        raise unsupported("modalities", "text only")
    source: dict[str, Any] = {"messages": _messages(b.messages, limits), **_reasoning(b)}
    bounds("top_logprobs", b.top_logprobs, 0, 20)  # without logprobs: true it is ignored, as llama-server does
    if b.logprobs:
        source.update(logprobs=True, top_logprobs=b.top_logprobs or 0)
    tools = parse_tools(b.tools) if b.tools is not None else []
    if tools:
        tools, choice = parse_tool_choice(b.tool_choice, tools)
        if choice != "none" and (b.grammar is not None or _json_schema(b.response_format) is not None):
            raise bad("'tools' cannot be combined with 'grammar' or a JSON 'response_format'; use "
                      "tool_choice 'none' to answer in a format.", "tools")
        source.update(tools=tools, tool_choice=choice, parallel_tool_calls=bool(b.parallel_tool_calls))
    elif b.tool_choice not in (None, "none", "auto"):
        raise bad("Invalid value for 'tool_choice': there are no 'tools' to choose from.", "tool_choice")
    return _job("chat", b, limits, source)


def parse_completion(body: bytes, limits: Limits = Limits()) -> Job:
    """A /v1/completions body as a Job: a string prompt becomes ``prompt``, token ids ``tokens``."""
    b: _CompletionBody = decode(body, _CompletionBody)
    if b.best_of is not None and b.best_of != 1:
        raise unsupported("best_of", "only best_of=1")
    if b.suffix:
        raise unsupported("suffix", "no insertion")
    source = _prompt(b.prompt)
    if b.logprobs is not None:
        bounds("logprobs", b.logprobs, 0, 5)  # the legacy API's cap
        source.update(logprobs=True, top_logprobs=b.logprobs)
    if b.echo:
        if "prompt" not in source:
            raise unsupported("echo", "only a text prompt is echoed, not token ids")
        if b.logprobs is not None:
            raise unsupported("echo", "the prompt's own log-probabilities are not computed; echo without logprobs")
    return _job("completion", b, limits, source, echo=bool(b.echo))


def _reasoning(b: _ChatBody) -> dict[str, Any]:
    """How a model that reasons answers: llama-server's ``reasoning_format``, OpenAI's ``reasoning_effort``
    ("none" switches thinking off) and ``chat_template_kwargs.enable_thinking`` (llama-server's, vLLM's)."""
    out: dict[str, Any] = {}
    if b.reasoning_format is not None:
        if b.reasoning_format not in ("none", "auto", "deepseek", "deepseek-legacy"):
            raise bad("Invalid value for 'reasoning_format': expected 'none', 'auto', 'deepseek' or "
                      f"'deepseek-legacy', got {b.reasoning_format!r}.", "reasoning_format")
        out["reasoning_format"] = b.reasoning_format
    if b.reasoning_effort is not None:
        if b.reasoning_effort not in ("none", "minimal", "low", "medium", "high"):
            raise bad("Invalid value for 'reasoning_effort': expected 'none', 'minimal', 'low', 'medium' or "
                      f"'high', got {b.reasoning_effort!r}.", "reasoning_effort")
        out["think"] = b.reasoning_effort != "none"
    for name in ("reasoning_budget_tokens", "thinking_budget_tokens"):
        budget = getattr(b, name)
        if budget is not None:
            bounds(name, budget, -1, INT32_MAX)
            out["reasoning_budget"] = budget
    thinking = (b.chat_template_kwargs or {}).get("enable_thinking")
    if thinking is not None:
        if not isinstance(thinking, bool):
            raise bad("Invalid value for 'chat_template_kwargs.enable_thinking': expected a boolean.",
                      "chat_template_kwargs")
        out["think"] = thinking
    return out


def parse_embeddings(body: bytes, limits: Limits = Limits()) -> EmbeddingJob:
    """A /v1/embeddings body: inputs are strings, or token-id lists (one list per input)."""
    b: _EmbeddingBody = decode(body, _EmbeddingBody)
    if b.dimensions is not None:
        raise unsupported("dimensions", "vectors keep the model's size")
    fmt = b.encoding_format or "float"
    if fmt not in ("float", "base64"):
        raise bad(f"Invalid value for 'encoding_format': expected 'float' or 'base64', got {fmt!r}.",
                  "encoding_format")
    inputs = _embedding_inputs(b.input)
    if len(inputs) > limits.max_inputs:
        raise bad(f"Invalid value for 'input': {len(inputs)} inputs, above this server's limit of "
                  f"{limits.max_inputs}.", "input")
    return EmbeddingJob(model=b.model or "", inputs=inputs, encoding_format=fmt,  # type: ignore[arg-type]
                        user=b.user)


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def _messages(raw: list[_Message] | None, limits: Limits) -> list[wire.ChatMessage]:
    if raw is None:
        raise missing("messages")
    if not raw:
        raise bad("Invalid value for 'messages': expected a non-empty array.", "messages")
    if len(raw) > limits.max_messages:
        raise bad(f"Invalid value for 'messages': {len(raw)} messages, above this server's limit of "
                  f"{limits.max_messages}.", "messages")
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if m.role == "function":
            raise unsupported(f"{where}.role", "the deprecated 'function' role; use 'tool'")
        role = _ROLES.get(m.role)
        if role is None:
            raise bad(f"Invalid value for '{where}.role': expected 'system', 'developer', 'user', "
                      f"'assistant' or 'tool', got {m.role!r}.", f"{where}.role")
        if m.function_call:
            raise unsupported(f"{where}.function_call", "the deprecated function calling; use 'tool_calls'")
        if role == "tool":
            if not m.tool_call_id:
                raise missing(f"{where}.tool_call_id")
            out.append(wire.ChatMessage(role="tool", content=_content(m.content, role, where),
                                        tool_call_id=m.tool_call_id, name=m.name))
        elif m.tool_calls is not None and role == "assistant":
            out.append(wire.ChatMessage(role=role, content=_content(m.content, role, where) or None,
                                        tool_calls=parse_tool_calls(m.tool_calls, f"{where}.tool_calls"),
                                        reasoning_content=m.reasoning_content or None))
        elif m.tool_calls is not None:
            raise bad(f"Invalid value for '{where}.tool_calls': only assistant messages carry tool calls.",
                      f"{where}.tool_calls")
        else:
            thinking = m.reasoning_content or None if role == "assistant" else None
            out.append(wire.ChatMessage(role=role, content=_content(m.content, role, where),
                                        reasoning_content=thinking))
    return out


def _content(content: str | list[_Part] | None, role: str, where: str) -> str:
    """Text of one message. Text parts are joined with "\\n", as llama.cpp's server joins them."""
    if isinstance(content, str):
        return content
    if content is None:
        if role == "assistant":
            return ""           # an assistant turn with no text renders as empty, never as "None"
        raise bad(f"Invalid type for '{where}.content': expected a string or an array of content parts, "
                  "but got null instead.", f"{where}.content")
    if not content:
        raise bad(f"Invalid value for '{where}.content': expected a non-empty array.", f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        if part.type != "text":
            raise bad(f"Content parts of type {part.type!r} are not supported by this server (text only).",
                      f"{where}.content[{j}].type")
        if part.text is None:
            raise missing(f"{where}.content[{j}].text")
        texts.append(part.text)
    return "\n".join(texts)


def _token_ids(value: list[Any], param: str) -> list[int]:
    if not value:
        raise bad(f"Invalid value for '{param}': expected a non-empty array of token ids.", param)
    for t in value:
        if type(t) is not int or not 0 <= t <= INT32_MAX:
            raise bad(f"Invalid value for '{param}': token ids are integers from 0 to {INT32_MAX}, "
                      f"got {t!r}.", param)
    return value


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int for t in value)


def _prompt(prompt: Any) -> dict[str, Any]:
    """str | [str] | [int, ...] | [[int, ...]] -> {"prompt": ...} or {"tokens": ...}."""
    if prompt is None:
        raise missing("prompt")
    if isinstance(prompt, str):
        return {"prompt": prompt}
    if isinstance(prompt, list) and not prompt:
        raise bad("Invalid value for 'prompt': expected a non-empty array.", "prompt")
    if _is_int_list(prompt):
        return {"tokens": _token_ids(prompt, "prompt")}
    if isinstance(prompt, list) and (all(isinstance(p, str) for p in prompt)
                                     or all(isinstance(p, list) for p in prompt)):
        if len(prompt) > 1:
            raise bad("Invalid value for 'prompt': batched prompts are not supported; send one prompt per "
                      "request.", "prompt")
        first = prompt[0]
        return {"prompt": first} if isinstance(first, str) else {"tokens": _token_ids(first, "prompt[0]")}
    raise bad("Invalid type for 'prompt': expected a string, an array of strings, an array of token ids or "
              "an array of token-id arrays.", "prompt")


def _embedding_inputs(value: Any) -> list[str] | list[list[int]]:
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise bad("Invalid type for 'input': expected a string, an array of strings or an array of token "
                  "ids.", "input")
    if not value:
        raise bad("Invalid value for 'input': expected a non-empty array.", "input")
    if _is_int_list(value):
        return [_token_ids(value, "input")]
    if all(isinstance(v, str) for v in value):
        for i, v in enumerate(value):
            if not v:
                raise bad(f"Invalid value for 'input[{i}]': expected a non-empty string.", f"input[{i}]")
        return value
    if all(isinstance(v, list) for v in value):
        return [_token_ids(v, f"input[{i}]") for i, v in enumerate(value)]
    raise bad("Invalid type for 'input': expected a string, an array of strings, an array of token ids or "
              "an array of token-id arrays (not a mix).", "input")


def _max_tokens(b: _Body, limits: Limits) -> int:
    mt, mct = b.max_tokens, b.max_completion_tokens
    if mt is not None and mct is not None and mt != mct:
        raise bad(f"'max_tokens' ({mt}) and 'max_completion_tokens' ({mct}) disagree; give only one.",
                  "max_completion_tokens")
    name, value = ("max_completion_tokens", mct) if mct is not None else ("max_tokens", mt)
    if value is None:
        return -1           # until a stop or the end of the context
    if value <= 0:
        raise bad(f"Invalid value for '{name}': expected an integer of at least 1, got {value}.", name)
    if value > limits.max_tokens:
        raise bad(f"Invalid value for '{name}': {value} is above this server's limit of "
                  f"{limits.max_tokens}.", name)
    return value


def stop_list(stop: str | list[str] | None, limits: Limits, param: str = "stop") -> list[str]:
    """Stop sequences within the server's limits (their count and length); ``param`` names the field."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > limits.max_stop:
        raise bad(f"Invalid value for '{param}': {len(stops)} stop sequences, above this server's limit of "
                  f"{limits.max_stop}.", param)
    for s in stops:
        if not s or len(s) > limits.max_stop_len:
            raise bad(f"Invalid value for '{param}': each stop sequence must have 1 to {limits.max_stop_len} "
                      f"characters, got {len(s)}.", param)
    return stops


def keep_alive_param(value: str | float | None) -> float | None:
    """A request's ``keep_alive`` in seconds (None: not given); a bad one is a 400 naming the field."""
    if value is None:
        return None
    try:
        return keep_alive_seconds(value)
    except ValueError as e:
        raise bad(f"Invalid value for 'keep_alive': {e}.", "keep_alive") from None


def _logit_bias(bias: dict[str, float] | None) -> dict[str, float]:
    out = {}
    for key, value in (bias or {}).items():
        if not (key.isascii() and key.isdigit()) or int(key) > INT32_MAX:
            raise bad(f"Invalid value for 'logit_bias': keys are token ids, got {key!r}.", "logit_bias")
        if not -100 <= value <= 100:
            raise bad(f"Invalid value for 'logit_bias': biases are between -100 and 100, got {value!r} for "
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
            raise missing("response_format.json_schema")
        if rf.json_schema.schema is None:
            raise missing("response_format.json_schema.schema")
        return rf.json_schema.schema
    raise bad(f"Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema', "
              f"got {rf.type!r}.", "response_format.type")


_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
             "frequency_penalty", "seed", "typical_p", "min_keep", "mirostat", "mirostat_tau", "mirostat_eta",
             "xtc_probability", "xtc_threshold", "dry_multiplier", "dry_base", "dry_allowed_length",
             "dry_penalty_last_n", "dry_sequence_breakers", "top_n_sigma", "dynatemp_range", "dynatemp_exponent",
             "samplers")
#: (lowest, highest) of llama.cpp's other samplers, as the engine checks them
EXTRA_BOUNDS = sampling_limits.EXTRA


def _job(kind: Literal["chat", "completion"], b: _Body, limits: Limits, source: dict[str, Any],
         echo: bool = False) -> Job:
    """Checks shared by both endpoints; only the fields the client gave reach the request."""
    if b.n is not None:
        if b.n < 1 or b.n > limits.max_choices:
            raise bad(f"Invalid value for 'n': expected 1 to {limits.max_choices} (this server's max_choices), "
                      f"got {b.n}.", "n")
        source = {**source, "n": b.n}
    if b.stream_options is not None and not b.stream:
        raise bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                  "stream_options")
    bounds("temperature", b.temperature, 0, 2)
    bounds("top_p", b.top_p, 0, 1)
    bounds("top_k", b.top_k, 0, INT32_MAX)
    bounds("min_p", b.min_p, 0, 1)
    bounds("repeat_penalty", b.repeat_penalty, 0, open_lo=True)
    bounds("presence_penalty", b.presence_penalty, -2, 2)
    bounds("frequency_penalty", b.frequency_penalty, -2, 2)
    bounds("seed", b.seed, -1, 2**32 - 1)
    for name, (lo, hi) in EXTRA_BOUNDS.items():
        bounds(name, getattr(b, name), lo, hi)
    check_lists(b)
    bounds("priority", b.priority, -1000, 1000)
    bounds("deadline_ms", b.deadline_ms, 0, open_lo=True)
    keep_alive = keep_alive_param(b.keep_alive)
    schema = _json_schema(b.response_format)
    if schema is not None and b.grammar is not None:
        raise bad("Give either 'grammar' or a JSON 'response_format', not both.", "grammar")
    max_tokens = _max_tokens(b, limits)
    req: dict[str, Any] = {name: getattr(b, name) for name in _SAMPLING if getattr(b, name) is not None}
    if max_tokens > 0:
        req["max_tokens"] = max_tokens
    if stops := stop_list(b.stop, limits):
        req["stop"] = stops
    if bias := _logit_bias(b.logit_bias):
        req["logit_bias"] = bias
    if b.ignore_eos is not None:
        req["ignore_eos"] = b.ignore_eos
    if b.lora is not None:
        req["lora"] = lora_refs(b.lora)
    if b.n_keep is not None:
        bounds("n_keep", b.n_keep, -1, INT32_MAX)
        req["n_keep"] = b.n_keep
    if b.speculative is not None:
        req["speculative"] = b.speculative
    if b.grammar is not None:
        req["grammar"] = b.grammar
    if schema is not None:
        req["json_schema"] = schema
    request = wire.CompletionRequest(**{**source, "stream": True, "max_tokens": max_tokens, **req})
    stream = bool(b.stream)
    return Job(kind=kind, model=b.model or "", request=request, stream=stream,
               include_usage=stream and bool(b.stream_options and b.stream_options.include_usage),
               priority=b.priority or 0, deadline_ms=b.deadline_ms, keep_alive=keep_alive, user=b.user,
               given=frozenset(req), echo=echo)

