"""Speculative decoding settings: ``[speculative]`` server-wide or ``[models.NAME.speculative]``, typed
and checked here so that a bad value fails at start, not at a model's load.

Draft-free only for now: llama.cpp's n-gram drafters (``common/speculative``), which guess the next tokens
from the stream's own context; each step verifies the guesses in the same batched decode as the other
streams (``runner_ext/batcher_spec.cpp``). The names are llama-server's ``--spec-type`` values.
"""

from __future__ import annotations

import msgspec

from mullama.core.errors import ConfigError

DRAFT_FREE = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")


class SpeculativeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    types: tuple[str, ...] = ("ngram-map-k",)  # drafters, tried in llama.cpp's order (--spec-type)
    n_max: int = 16          # draft at most this many tokens per step (--spec-draft-n-max)
    n_min: int = 0           # a shorter draft is not verified (--spec-draft-n-min)
    ngram_n: int = 12        # n-gram drafters: the lookup key's length (--spec-ngram-simple-size-n) ...
    ngram_m: int = 48        # ... the longest continuation proposed (--spec-ngram-simple-size-m) ...
    ngram_min_hits: int = 1  # ... and how often it must have been seen (--spec-ngram-simple-min-hits)


OFF = SpeculativeSettings(types=())  # what a model without speculative settings gets


def check_speculative(s: SpeculativeSettings | None, label: str) -> None:
    if s is None:
        return
    for name in s.types:
        if name not in DRAFT_FREE:
            raise ConfigError(f"{label}.types: {name!r} is not one of {', '.join(DRAFT_FREE)} (a draft model is "
                              "not supported yet)")
    if not 1 <= s.n_max <= 256 or not 0 <= s.n_min <= s.n_max:
        raise ConfigError(f"{label}: expected 1 <= n_max <= 256 and 0 <= n_min <= n_max, got n_max={s.n_max}, "
                          f"n_min={s.n_min}")
    for name in ("ngram_n", "ngram_m"):
        if not 1 <= getattr(s, name) <= 1024:
            raise ConfigError(f"{label}.{name}: expected 1..1024, got {getattr(s, name)}")
    if s.ngram_min_hits < 1:
        raise ConfigError(f"{label}.ngram_min_hits: expected >= 1, got {s.ngram_min_hits}")
