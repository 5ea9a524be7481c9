"""Ollama's load-time options checked against how the model is loaded (pure, no I/O).

A model is loaded with its settings from the server's config (``[models."NAME"]``), never with a
request's: a request that names a load-time option gets what it asks for only if the model's settings
already give it, and is refused (400, naming the option, the model's setting and what to change)
otherwise. ``request.parse_options`` type-checks the values and hands them here apart from the
sampling options, once the routes know the model (docs/ollama.md, "Options").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from mullama.http.openai.body import bad

if TYPE_CHECKING:
    from mullama.config import RunnerConfig

#: (satisfied?, what the model is loaded with, the [models] setting that changes it)
_Rule = Callable[[Any, "RunnerConfig"], tuple[bool, str, str]]


def _ctx(value: int, c: RunnerConfig) -> tuple[bool, str, str]:
    # slots sharing one KV cache (kv_unified): a request alone may fill all n_ctx cells; else each slot has
    # n_ctx / n_parallel (0: Ollama's default)
    if c.kv_unified:
        has = f"serves at most {c.n_ctx} tokens per request (n_ctx {c.n_ctx}, one KV cache its {c.n_parallel} " \
              "slots share)"
        return (value <= c.n_ctx, has, "n_ctx")
    per_slot = c.n_ctx // c.n_parallel
    has = f"serves at most {per_slot} tokens per request (n_ctx {c.n_ctx} split into {c.n_parallel} slots)"
    return (value <= per_slot, has, "n_ctx (or n_parallel)")


def _f16(value: bool, c: RunnerConfig) -> tuple[bool, str, str]:
    want = "f16" if value else "f32"   # llama.cpp's f16_kv false was an f32 cache (--memory-f32)
    k, v = c.cache_type_k.lower(), c.cache_type_v.lower()
    return (k == v == want, f"has a KV cache of {k} (K) and {v} (V)", "cache_type_k and cache_type_v")


def _gpu(value: int, c: RunnerConfig) -> tuple[bool, str, str]:
    has = ("has its GPU layers chosen by the placement planner (n_gpu_layers -1)" if c.n_gpu_layers < 0
           else f"is loaded with n_gpu_layers {c.n_gpu_layers}")
    return (value in (-1, c.n_gpu_layers), has, "n_gpu_layers")    # -1: Ollama's "decide for me"


def _threads(value: int, c: RunnerConfig) -> tuple[bool, str, str]:
    has = "uses llama.cpp's default thread count (threads 0)" if c.threads == 0 else f"uses {c.threads} threads"
    return (value == c.threads, has, "threads")                     # 0 on both sides: the default


RULES: dict[str, _Rule] = {
    "num_ctx": _ctx,
    "num_batch": lambda v, c: (v == c.n_batch, f"is loaded with n_batch {c.n_batch}", "n_batch"),
    "num_gpu": _gpu,
    "main_gpu": lambda v, c: (v == c.main_gpu, f"is loaded with main_gpu {c.main_gpu}", "main_gpu"),
    "num_thread": _threads,
    "numa": lambda v, c: (v == (c.numa != "off"), f"is loaded with numa \"{c.numa}\"", "numa"),
    "low_vram": lambda v, c: (v == (not c.kv_offload), "keeps its KV cache with its GPU layers (kv_offload true)"
                              if c.kv_offload else "keeps its KV cache in RAM (kv_offload false)", "kv_offload"),
    "f16_kv": _f16,
    "use_mmap": lambda v, c: (v == c.use_mmap, f"is loaded with use_mmap {str(c.use_mmap).lower()}", "use_mmap"),
    "use_mlock": lambda v, c: (v == c.use_mlock, f"is loaded with use_mlock {str(c.use_mlock).lower()}",
                               "use_mlock"),
}
#: options that only ``false`` satisfies, and why nothing else can
ONLY_FALSE = {
    "logits_all": "the runner computes logits for the tokens it samples only; ask for logprobs/top_logprobs",
    "vocab_only": "a model is always loaded with its weights",
    "embedding_only": "every model serves generation and embeddings from one load",
}
NAMES = frozenset(RULES) | frozenset(ONLY_FALSE)


def check(model: str, options: dict[str, Any], cfg: RunnerConfig) -> None:
    """Raise ``InvalidArgument`` (400, ``param`` ``options.<name>``) for the first option of ``options``
    (load-time ones, type-checked) that ``model``, loaded with ``cfg``, does not satisfy."""
    for name, value in options.items():
        given = f"options.{name}={msgspec.json.encode(value).decode()}"
        if name in ONLY_FALSE:
            if value is not False:
                raise bad(f"{given}: not supported: {ONLY_FALSE[name]}.", f"options.{name}")
            continue
        ok, has, setting = RULES[name](value, cfg)
        if not ok:
            raise bad(f"{given}: model \"{model}\" {has}; a request cannot change how a model is loaded: set "
                      f"[models.\"{model}\"] {setting} in the server config.", f"options.{name}")
