"""Speculative decoding settings: ``[speculative]`` server-wide or ``[models.NAME.speculative]``, typed
and checked here so that a bad value fails at start, not at a model's load.

Through llama.cpp's ``common/speculative``: its n-gram drafters, which guess the next tokens from the
stream's own context, and ``draft-simple``, a smaller draft model with the same vocabulary. Each step
verifies the guesses in the same batched decode as the other streams (``runner_ext/batcher_spec.cpp``).
The names are llama-server's ``--spec-type`` values.
"""

from __future__ import annotations

import os

import msgspec

from mullama.core.errors import ConfigError

DRAFT_FREE = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")
DRAFT_MODEL = "draft-simple"


class SpeculativeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # drafters, tried in llama.cpp's order, n-gram ones first (--spec-type); unset: draft-simple with a
    # draft model, ngram-map-k without
    types: tuple[str, ...] | None = None
    n_max: int = 16          # draft at most this many tokens per step (--spec-draft-n-max)
    n_min: int = 0           # a shorter draft is not verified (--spec-draft-n-min)
    ngram_n: int = 12        # n-gram drafters: the lookup key's length (--spec-ngram-simple-size-n) ...
    ngram_m: int = 48        # ... the longest continuation proposed (--spec-ngram-simple-size-m) ...
    ngram_min_hits: int = 1  # ... and how often it must have been seen (--spec-ngram-simple-min-hits)
    draft_model: str = ""    # draft-simple: the draft model's GGUF file, same vocabulary (--model-draft)
    draft_gpu_layers: int = -1  # ... its layers on GPUs, -1 all that fit (--gpu-layers-draft)
    draft_p_min: float = 0.0    # ... a drafted token it finds less likely than this ends the draft (--draft-p-min)


OFF = SpeculativeSettings(types=())  # what a model without speculative settings gets


def effective(s: SpeculativeSettings | None) -> SpeculativeSettings:
    """What a model runs with: OFF for none, the default drafters filled in, the draft model's path absolute
    (a runner may start in another directory)."""
    if s is None:
        return OFF
    types = s.types if s.types is not None else (DRAFT_MODEL,) if s.draft_model else ("ngram-map-k",)
    draft = os.path.abspath(os.path.expanduser(s.draft_model)) if s.draft_model else ""
    return msgspec.structs.replace(s, types=types, draft_model=draft)


def check_speculative(s: SpeculativeSettings | None, label: str) -> None:
    if s is None:
        return
    for name in s.types or ():
        if name not in (*DRAFT_FREE, DRAFT_MODEL):
            raise ConfigError(f"{label}.types: {name!r} is not one of {', '.join((*DRAFT_FREE, DRAFT_MODEL))}")
    uses_draft = DRAFT_MODEL in effective(s).types
    if uses_draft and not s.draft_model:
        raise ConfigError(f"{label}.types: {DRAFT_MODEL} needs draft_model, the draft model's GGUF file")
    if s.draft_model and not uses_draft:
        raise ConfigError(f"{label}.draft_model is set but types leaves out {DRAFT_MODEL}: add it (or drop types)")
    if not 0.0 <= s.draft_p_min <= 1.0:
        raise ConfigError(f"{label}.draft_p_min: expected 0..1, got {s.draft_p_min}")
    if s.draft_gpu_layers < -1:
        raise ConfigError(f"{label}.draft_gpu_layers: expected -1 (all that fit) or a layer count, "
                          f"got {s.draft_gpu_layers}")
    if not 1 <= s.n_max <= 256 or not 0 <= s.n_min <= s.n_max:
        raise ConfigError(f"{label}: expected 1 <= n_max <= 256 and 0 <= n_min <= n_max, got n_max={s.n_max}, "
                          f"n_min={s.n_min}")
    for name in ("ngram_n", "ngram_m"):
        if not 1 <= getattr(s, name) <= 1024:
            raise ConfigError(f"{label}.{name}: expected 1..1024, got {getattr(s, name)}")
    if s.ngram_min_hits < 1:
        raise ConfigError(f"{label}.ngram_min_hits: expected >= 1, got {s.ngram_min_hits}")
