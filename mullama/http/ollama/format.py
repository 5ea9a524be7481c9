"""Results in, Ollama-shaped JSON and NDJSON out (pure, no I/O).

Parsing lives in ``ollama_request.py`` (``parse_generate``, ``parse_chat``, ``parse_embed``,
``parse_options``, ...) and is re-exported here, so callers use one ``ollama`` namespace for both
directions, as with ``openai``. Durations in responses are nanoseconds, timestamps RFC 3339 with
nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
import time
from typing import Any, Literal

import msgspec

from mullama import wire
from mullama.http.ollama.request import (  # noqa: F401  (re-exported: one namespace both ways)
    OPTION_NAMES,
    ChatBody,
    EmbedBody,
    EmbeddingsBody,
    EmbedJob,
    GenerateBody,
    Generation,
    ModelBody,
    keep_alive,
    parse_chat,
    parse_embed,
    parse_embeddings,
    parse_generate,
    parse_model,
    parse_options,
)
from mullama.models.gguf_header import GgufHeader, parameters_label

__all__ = [
    "EmbedJob",
    "Generation",
    "chat_chunk",
    "details",
    "done_reason",
    "embed_response",
    "error_body",
    "error_line",
    "final_record",
    "generate_chunk",
    "keep_alive",
    "load_record",
    "model_info",
    "parse_chat",
    "parse_embed",
    "parse_embeddings",
    "parse_generate",
    "parse_model",
    "parse_options",
    "rfc3339",
    "truncate",
]

_NS_PER_MS = 1_000_000


# ---------------------------------------------------------------------- responses


def rfc3339(seconds: float | None = None, ns: int | None = None) -> str:
    """UTC time as RFC 3339 with nanoseconds, as Ollama writes ``created_at`` ("...T10:00:00.123456789Z")."""
    if ns is None:
        ns = time.time_ns() if seconds is None else int(seconds * 1e9)
    whole, frac = divmod(ns, 1_000_000_000)
    return f"{dt.datetime.fromtimestamp(whole, dt.UTC):%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def done_reason(reason: str) -> str:
    """The runner's finish reason in Ollama's words: a full context is a length limit, as on the OpenAI
    routes (the final record adds ``"truncated": true``); cancelled / repeat_limit end the text early and
    read as "stop"."""
    return "length" if reason in ("length", "context_full") else "stop"


def _line(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj) + b"\n"


def _body(kind: str, model: str, text: str, thinking: str = "",
          logprobs: list[wire.TokenLogprob] | None = None) -> dict[str, Any]:
    head: dict[str, Any] = {"model": model, "created_at": rfc3339()}
    if kind == "chat":
        head["message"] = {"role": "assistant", "content": text, **({"thinking": thinking} if thinking else {})}
    else:
        head["response"] = text
        if thinking:
            head["thinking"] = thinking
    if logprobs:
        head["logprobs"] = logprobs_list(logprobs)
    return head


def generate_chunk(model: str, text: str, *, thinking: str = "",
                   logprobs: list[wire.TokenLogprob] | None = None) -> bytes:
    """One streamed /api/generate line (``thinking``: a piece of the model's reasoning)."""
    return _line({**_body("generate", model, text, thinking, logprobs), "done": False})


def chat_chunk(model: str, text: str, *, thinking: str = "", logprobs: list[wire.TokenLogprob] | None = None
               ) -> bytes:
    """One streamed /api/chat line (``thinking``: a piece of the model's reasoning)."""
    return _line({**_body("chat", model, text, thinking, logprobs), "done": False})


def logprobs_list(lps: list[wire.TokenLogprob]) -> list[dict[str, Any]]:
    """Ollama's ``logprobs``: each token's text, log-probability, bytes and the most likely others."""
    return [{"token": t.text, "logprob": t.logprob, "bytes": t.bytes,
             "top_logprobs": [{"token": x.text, "logprob": x.logprob, "bytes": x.bytes} for x in t.top]}
            for t in lps]


def tool_calls(calls: list[wire.ToolFunction]) -> list[dict[str, Any]]:
    """Calls as Ollama writes them: the arguments as an object (``{}`` if the model's were cut short)."""
    out = []
    for c in calls:
        try:
            arguments = msgspec.json.decode(c.arguments)
        except msgspec.DecodeError:
            arguments = {}
        out.append({"function": {"name": c.name, "arguments": arguments if isinstance(arguments, dict) else {}}})
    return out


def calls_chunk(model: str, calls: list[wire.ToolFunction]) -> bytes:
    """A streamed /api/chat line carrying the tool calls (Ollama sends each call whole)."""
    head = _body("chat", model, "")
    head["message"]["tool_calls"] = tool_calls(calls)
    return _line({**head, "done": False})


def final_record(kind: str, model: str, text: str, stats: wire.CompletionStats, finish: str, *,
                 total_ms: float, load_ms: float, extra: dict[str, Any] | None = None,
                 calls: list[wire.ToolFunction] | None = None, thinking: str = "",
                 logprobs: list[wire.TokenLogprob] | None = None) -> dict[str, Any]:
    """The closing object: the whole text, thinking and log-probabilities when not streaming ("" as the
    last line of a stream), the tool calls of a non-streamed chat, and the measurements in nanoseconds:
    total and load time from the supervisor, prompt and decode from the runner."""
    body = _body(kind, model, text, thinking, logprobs)
    if calls:
        body["message"]["tool_calls"] = tool_calls(calls)
    return {**body, "done": True, "done_reason": done_reason(finish),
            **({"truncated": True} if finish == "context_full" else {}),
            "total_duration": int(total_ms * _NS_PER_MS), "load_duration": int(load_ms * _NS_PER_MS),
            "prompt_eval_count": stats.prompt_tokens, "prompt_eval_duration": int(stats.prefill_ms * _NS_PER_MS),
            "eval_count": stats.completion_tokens, "eval_duration": int(stats.decode_ms * _NS_PER_MS),
            **(extra or {})}


def load_record(kind: str, model: str, reason: Literal["load", "unload"]) -> dict[str, Any]:
    """The answer to a request with nothing to generate: the model was loaded (or unloaded)."""
    return {**_body(kind, model, ""), "done": True, "done_reason": reason}


def embed_response(model: str, vectors: list[list[float]], prompt_tokens: int, *, total_ms: float,
                   load_ms: float) -> dict[str, Any]:
    return {"model": model, "embeddings": vectors, "total_duration": int(total_ms * _NS_PER_MS),
            "load_duration": int(load_ms * _NS_PER_MS), "prompt_eval_count": prompt_tokens}


def truncate(vector: list[float], dimensions: int | None) -> list[float]:
    """The first ``dimensions`` values, L2-normalised again (what Ollama's ``dimensions`` does)."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


def error_body(message: str) -> bytes:
    return msgspec.json.encode({"error": message})


def error_line(message: str) -> bytes:
    """An error inside an NDJSON stream; the ollama client raises ResponseError on it."""
    return error_body(message) + b"\n"


# ---------------------------------------------------------------------- models

_ARRAY = re.compile(r"^\[\d+ items\]$")


def details(architecture: str | None, size_label: str, quantization: str) -> dict[str, Any]:
    """Ollama's ``details``: ``family`` is the architecture ("llama"), as Ollama reports it."""
    arch = architecture or ""
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch] if arch else None,
            "parameter_size": size_label, "quantization_level": quantization}


def header_details(header: GgufHeader | None) -> dict[str, Any]:
    """``details`` of a catalog entry from its GGUF header (empty strings when it has none)."""
    if header is None:
        return details(None, "", "")
    return details(header.architecture, header.size_label or parameters_label(header.parameters),
                   header.quantization)


def model_info(metadata: dict[str, Any], parameters: int) -> dict[str, Any]:
    """GGUF key/values for /api/show: arrays as null (Ollama leaves them out unless verbose), plus
    ``general.parameter_count``."""
    info = {k: (None if isinstance(v, str) and _ARRAY.match(v) else v) for k, v in metadata.items()}
    info["general.parameter_count"] = parameters
    return info


def digest(path: str | os.PathLike, size: int, mtime: float) -> str:
    """Ollama's 64-hex ``digest`` for a catalog file: sha256 of (real path, size, mtime) -- the catalog's
    ``id`` is its first 12 characters. It names this file as it is now; it is not a hash of the content."""
    real = os.path.realpath(path)
    return hashlib.sha256(f"{real}\0{size}\0{mtime}".encode(errors="surrogateescape")).hexdigest()


def entry_digest(entry: Any) -> str:
    """A catalog entry's ``digest``: the sha256 of the file's content as its pull manifest records it
    (a pulled model), else ``digest`` of its path, size and mtime."""
    origin = getattr(entry, "origin", None)
    for f in origin.files if origin is not None else ():
        if f.sha256 and re.fullmatch(r"[0-9a-f]{64}", f.sha256):
            return f.sha256
    return digest(entry.path, entry.size_bytes, entry.modified)


def capabilities(metadata: dict[str, Any]) -> list[str]:
    """"embedding" for embedding models (their GGUF sets a pooling type), else "completion"."""
    arch = metadata.get("general.architecture")
    return ["embedding"] if f"{arch}.pooling_type" in metadata else ["completion"]


def modelfile(name: str, path: str, parameters: str) -> str:
    """A Modelfile describing the model as served (generated; the chat template is the GGUF's own)."""
    lines = [f"# Modelfile generated by mullama for {name}", f"FROM {path}"]
    lines += [f"PARAMETER {line}" for line in parameters.splitlines()]
    return "\n".join(lines) + "\n"
