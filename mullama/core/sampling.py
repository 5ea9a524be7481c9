"""The sampling parameters a request or a model's defaults may set, and the ranges the engine (llama.cpp's
common sampler) accepts for each: the API parsers and the config's per-model defaults check against the
same table. OpenAI's own fields keep OpenAI's narrower ranges in its parser (e.g. temperature <= 2).
"""

from __future__ import annotations

import types
from collections.abc import Mapping

INT32_MAX = 2**31 - 1

#: llama.cpp's samplers beyond OpenAI's, by llama-server's names: (lowest, highest)
EXTRA: Mapping[str, tuple[float, float]] = types.MappingProxyType({
    "typical_p": (0, 1), "min_keep": (0, INT32_MAX), "mirostat": (0, 2), "mirostat_tau": (0, 1e6),
    "mirostat_eta": (0, 1), "xtc_probability": (0, 1), "xtc_threshold": (0, 1), "dry_multiplier": (0, 1e6),
    "dry_base": (1, 1e6), "dry_allowed_length": (0, INT32_MAX), "dry_penalty_last_n": (-1, INT32_MAX),
    "top_n_sigma": (-1, 1e6), "dynatemp_range": (0, 1e6), "dynatemp_exponent": (0, 1e6),
})

#: every numeric sampling parameter: (lowest, highest) as the engine checks them
LIMITS: Mapping[str, tuple[float, float]] = types.MappingProxyType({
    "temperature": (0, 1e6), "top_k": (0, INT32_MAX), "top_p": (0, 1), "min_p": (0, 1),
    "repeat_penalty": (0, 1e6), "repeat_last_n": (-1, INT32_MAX), "presence_penalty": (-1e6, 1e6),
    "frequency_penalty": (-1e6, 1e6), "seed": (-1, 2**32 - 1), **EXTRA,
})

#: the parameters that must be integers
INTEGERS = frozenset({"top_k", "repeat_last_n", "seed", "min_keep", "mirostat", "dry_allowed_length",
                      "dry_penalty_last_n"})
