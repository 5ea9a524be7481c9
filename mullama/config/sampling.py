"""Per-model sampling defaults: ``[models.NAME.sampling]``, typed and checked against the ranges the
engine accepts (``core.sampling``), so that a bad default fails at start rather than on every request.
``serving.job.with_defaults`` applies them to the fields a request leaves out.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mullama.core import sampling as sampling_limits
from mullama.core.errors import ConfigError


class SamplingDefaults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[models.NAME.sampling]``: what a request to that model gets for a field it does not set itself."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
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
    dry_sequence_breakers: tuple[str, ...] | None = None
    top_n_sigma: float | None = None
    dynatemp_range: float | None = None
    dynatemp_exponent: float | None = None
    samplers: tuple[str, ...] | None = None
    stop: tuple[str, ...] | None = None

    def given(self) -> dict[str, Any]:
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not None}


def check_sampling(d: SamplingDefaults, base: str) -> None:
    """The ranges the engine accepts, so that a bad default fails at start, not on every request."""
    for name, value in d.given().items():
        if name in sampling_limits.LIMITS:
            lo, hi = sampling_limits.LIMITS[name]
            if not lo <= value <= hi:  # NaN fails it too
                raise ConfigError(f"{base}.{name}: expected a value from {lo:g} to {hi:g}, got {value!r}")
        elif any(not s for s in value):
            raise ConfigError(f"{base}.{name}: expected non-empty strings, got {list(value)}")
