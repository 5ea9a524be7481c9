"""The cost model a simulation runs on: what one engine step, a first token and a model load cost.

A ``Profile`` holds one ``ModelCost`` per model (``"*"`` stands for any model not named), saved as
JSON by ``mullama sim calibrate`` or written by hand for hardware this machine is not (docs/research.md
has the format). All times are wall milliseconds or seconds on the profiled machine, with its threads.

One engine step (the C++ batcher's ``step()``: a token for every decoding slot plus prompt chunks
filling the rest of the batch) costs ``step_ms(tokens) + ctx_ms_per_token × context`` where ``tokens``
is the batch size and ``context`` the tokens the decoding slots already hold. ``step_ms`` is a
measured table, interpolated linearly and extrapolated from its last two points: one decode token
and a 512-token prompt chunk cost very different amounts per token, so no single line fits both.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from pathlib import Path
from typing import Literal

import msgspec

from mullama.core.errors import ConfigError


class ModelCost(msgspec.Struct, frozen=True, kw_only=True):
    step_ms: list[tuple[int, float]]   # (tokens in the batch, ms): increasing tokens
    ctx_ms_per_token: float = 0.0      # extra ms per step per token of context held by decoding slots
    first_token_ms: float = 0.0        # serving overhead before the first token (HTTP, template, tokenize)
    template_tokens: int = 0           # the chat template's tokens around a one-message prompt
    load_s: float = 1.0                # start a runner and load the weights, until ready
    swap_extra_s: float = 0.0          # what a load that evicts another model takes beyond ``load_s`` (measured
    #                                    by loading it while another is loaded, one model at a time)
    unload_s: float = 0.1
    memory_bytes: int = 0              # what the loaded model holds (weights, KV cache, buffers)

    def __post_init__(self) -> None:
        pts = self.step_ms
        if not pts:
            raise ConfigError("a model cost needs at least one step_ms point")
        if any(b[0] <= a[0] for a, b in itertools.pairwise(pts)) or pts[0][0] < 1 or any(ms <= 0 for _, ms in pts):
            raise ConfigError(f"step_ms: tokens must increase from 1 and times be positive, got {pts}")

    def step(self, tokens: int, context: int = 0) -> float:
        """Milliseconds of one step with ``tokens`` in the batch and ``context`` tokens held by its decoders."""
        return _interpolate(self.step_ms, tokens) + self.ctx_ms_per_token * context


def _interpolate(pts: list[tuple[int, float]], x: float) -> float:
    if len(pts) == 1:
        return pts[0][1] * x / pts[0][0] if x > pts[0][0] else pts[0][1]
    if x <= pts[0][0]:
        return pts[0][1]
    i = min(max(1, bisect_left([p[0] for p in pts], x)), len(pts) - 1)
    (x0, y0), (x1, y1) = pts[i - 1], pts[i]
    return max(y0 + (y1 - y0) * (x - x0) / (x1 - x0), 1e-3)


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    machine: str = ""
    threads: int | None = None
    notes: str = ""
    compute: Literal["shared", "exclusive"] = "shared"  # shared: loaded runners split the cores (a CPU box,
    #                                                     steps slow down by their number); exclusive: one device each
    models: dict[str, ModelCost]
    default: str = ""   # the model a request that names none goes to (the server's default model)

    def resolve(self, model: str) -> str:
        """The profile's name for a requested model: itself, the default for "", else ``*``."""
        if model in self.models:
            return model
        if not model and self.default:
            return self.default
        if "*" in self.models:
            return model or "*"
        raise ConfigError(f"profile {self.name!r} has no cost for model {model or '(the default)'!r} (it has "
                          f"{', '.join(sorted(self.models))}; add a '*' entry for any model)")

    def cost(self, model: str) -> ModelCost:
        found = self.models.get(self.resolve(model)) or self.models.get("*")
        if found is None:
            raise ConfigError(f"profile {self.name!r} has no cost for model {model!r} (it has "
                              f"{', '.join(sorted(self.models))}; add a '*' entry for any model)")
        return found


def load(path: Path) -> Profile:
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=Profile)
    except FileNotFoundError:
        raise ConfigError(f"no simulator profile at {path} (make one with `mullama sim calibrate`)") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: not a simulator profile: {exc}") from None


def save(profile: Profile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(profile), indent=1) + b"\n")
    return path
