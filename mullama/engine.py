"""The typed, documented Python face of the C++ engine (``mullama._engine``).

Everything heavy runs in C++ with the GIL released: loading, decoding,
sampling, generation, embeddings, fit and quantisation. Errors are the typed
exceptions of :mod:`mullama.core.errors`.

    >>> from mullama import engine
    >>> with engine.Model(path, engine.ModelParams(n_gpu_layers=0)) as model:
    ...     with engine.Context(model, engine.ContextParams(n_ctx=2048)) as ctx:
    ...         result = engine.generate_text(ctx, model, "The capital of France is",
    ...                                       engine.GenerateParams(max_tokens=16))

Objects: :class:`Model` (weights, metadata, tokenizer, chat template),
:class:`Context` (KV cache, batched decode, state save/restore, embeddings,
memory), :class:`Sampler`, :class:`Batch`; functions :func:`fit` (no-alloc dry
run), :func:`quantize`, :func:`devices`. Type stubs: ``_engine.pyi``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from mullama import _engine
from mullama._engine import (  # noqa: F401  (re-exported API)
    LLAMA_CPP_COMMIT,
    Batch,
    ChatParser,
    ChatPrompt,
    Context,
    ContextParams,
    DeviceMemory,
    FitReport,
    GenerateParams,
    GenerateResult,
    Model,
    ModelInfo,
    ModelParams,
    QuantizeParams,
    Sampler,
    SamplingParams,
    apply_chat,
    chat_caps,
    cpu_backend,
    devices,
    fit,
    json_schema_to_grammar,
    quantize,
    quantize_types,
    rpc_add_servers,
    rpc_serve,
    rpc_supported,
    system_info,
    with_chat,
)

__all__ = [
    "LLAMA_CPP_COMMIT", "Batch", "ChatParser", "ChatPrompt", "Context", "ContextParams", "DeviceMemory", "FitReport", "GenerateParams",
    "GenerateResult", "Model", "ModelInfo", "ModelParams", "QuantizeParams", "Sampler", "SamplingParams",
    "cpu_backend", "devices", "embed", "fit", "generate_text", "json_schema_to_grammar", "quantize", "quantize_types",
    "rpc_add_servers", "rpc_serve", "rpc_supported",
    "set_llama_log_level", "system_info", "apply_chat", "chat_caps", "with_chat",
]

_log = logging.getLogger("llama.cpp")
# ggml levels: 1 debug, 2 info, 3 warn, 4 error
_TO_PY = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_FROM_NAME = {"debug": 1, "info": 2, "warning": 3, "warn": 3, "error": 4, "critical": 4}


def _sink(level: int, line: str) -> None:
    _log.log(_TO_PY.get(level, logging.INFO), line)


def set_llama_log_level(level: str | int) -> None:
    """Forward llama.cpp log lines at or above ``level`` ("debug".."error") to the ``llama.cpp`` logger.

    Lines below the level are dropped in C++ without touching Python.
    """
    if isinstance(level, str):
        try:
            level = _FROM_NAME[level.lower()]
        except KeyError:
            raise ValueError(f"unknown log level {level!r}") from None
    _engine.set_log_sink(_sink, int(level))


def follow_log_level(level: str) -> None:
    """llama.cpp's threshold for a process logging at ``level`` (``core.logs.configure``): its info lines
    are load-time chatter, so they show at "debug" only; above that, warnings and worse."""
    numeric = logging.getLevelName(level.upper())
    if isinstance(numeric, int) and numeric <= logging.DEBUG:
        set_llama_log_level("debug")
    else:
        set_llama_log_level(max(level.lower(), "warning", key=lambda name: logging.getLevelName(name.upper())))


set_llama_log_level("warning")


def generate_text(
    ctx: Context,
    model: Model,
    prompt: str,
    params: GenerateParams | None = None,
    *,
    on_text: Callable[[str], bool | None] | None = None,
    add_special: bool = True,
    parse_special: bool = True,
) -> GenerateResult:
    """Tokenize ``prompt`` and generate on sequence 0; ``on_text(piece)`` streams text (False cancels)."""
    tokens = model.tokenize(prompt, add_special, parse_special)
    def forward(_index: int, _token: int, text: str) -> bool | None:
        return on_text(text) if text else None

    callback = forward if on_text is not None else None
    return ctx.generate(model, [tokens], [params or GenerateParams()], on_token=callback)[0]


def embed(ctx: Context, model: Model, texts: Sequence[str]) -> list[list[float]]:
    """Pooled, L2-normalised embeddings of ``texts`` (``ctx`` made with ``embeddings=True``)."""
    inputs = [model.tokenize(t, True, False) for t in texts]
    return ctx.embed(inputs)
