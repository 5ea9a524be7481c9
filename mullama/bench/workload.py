"""Benchmark workloads: the TOML file format (docs/bench.md) as frozen msgspec Structs.

``load(path)`` reads and validates a file; every problem is a ``WorkloadError`` that names the
file and the key (``arrival.rate: Expected `float` > 0, got -1``). ``trace.py`` turns a
validated ``Workload`` into the seeded list of requests that the client replays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import tomllib

from mullama.core.errors import ConfigError

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNeg = Annotated[int, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]


class WorkloadError(ConfigError):
    """A workload file that cannot be read or is not valid; the message names the key."""


class _Dist(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="dist"):
    pass


class Fixed(_Dist, tag="fixed"):
    value: NonNeg


class Uniform(_Dist, tag="uniform"):
    """Integers in [min, max], each equally likely."""

    min: NonNeg
    max: NonNeg


class Normal(_Dist, tag="normal"):
    """Rounded normal draws, clipped to [min, max]."""

    mean: float
    std: Annotated[float, msgspec.Meta(ge=0)]
    min: NonNeg = 1
    max: NonNeg = 4096


class LogNormal(_Dist, tag="lognormal"):
    """Long-tailed: exp(N(ln median, sigma)), rounded, clipped to [min, max]."""

    median: PosFloat
    sigma: Annotated[float, msgspec.Meta(ge=0)]
    min: NonNeg = 1
    max: NonNeg = 4096


class Choice(_Dist, tag="choice"):
    """One of ``values``; ``weights`` (same length) default to equal."""

    values: Annotated[list[NonNeg], msgspec.Meta(min_length=1)]
    weights: list[Annotated[float, msgspec.Meta(ge=0)]] | None = None


Dist = NonNeg | Fixed | Uniform | Normal | LogNormal | Choice
DISTS = ("fixed", "uniform", "normal", "lognormal", "choice")


class Arrival(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How requests are sent. closed: ``concurrency`` clients, each sends its next request when the
    previous one ends (a list is a sweep: one phase per level). poisson: open loop, exponential gaps at
    ``rate`` requests/s (a list: one phase per rate). burst: ``burst_size`` requests at once every
    ``burst_interval_s``. trace: the arrival times and lengths of a real trace (the ``[trace]`` table)."""

    mode: Literal["closed", "poisson", "burst", "trace"] = "closed"
    concurrency: Positive | Annotated[list[Positive], msgspec.Meta(min_length=1)] = 1
    rate: PosFloat | Annotated[list[PosFloat], msgspec.Meta(min_length=1)] = 1.0
    burst_size: Positive = 8
    burst_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0


class Prompt(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The user message: ``tokens`` words of a fixed vocabulary (about one token each)."""

    tokens: Dist = 32
    system: str | None = None


class Output(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_tokens: Dist = 64
    ignore_eos: bool = True
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.0


class Models(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Multi-model traffic. alternate: names in turn; random: drawn by ``weights``; runs: runs of
    ``run_length`` requests to one model, then the next model in turn; hash: drawn by ``weights`` from a
    hash of the request (a replayed trace's row), so a request keeps its model whatever the window or sample."""

    names: Annotated[list[str], msgspec.Meta(min_length=1)]
    pattern: Literal["alternate", "random", "runs", "hash"] = "alternate"
    weights: list[Annotated[float, msgspec.Meta(ge=0)]] | None = None
    run_length: Dist = 4


class RequestClass(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One class of a priority/deadline mix; each request draws a class by ``weight``."""

    name: str
    weight: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] | None = None
    deadline_ms: PosFloat | None = None
    user: str | None = None
    max_tokens: Dist | None = None
    cancel_after_ms: PosFloat | None = None


class SharedPrefix(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Chat-history traffic: ``groups`` conversations share a system prompt of ``prefix_tokens`` words
    each; turn k of a conversation carries its k earlier turns (user + a synthetic assistant reply)."""

    groups: Positive = 4
    prefix_tokens: NonNeg = 256
    turns: Positive = 4
    reply_tokens: NonNeg = 32


class Trace(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A production trace replayed (``arrival.mode = "trace"``; bench/traces.py): its requests in
    ``[start_s, start_s + duration_s)``, ``speed`` times as fast (0.1: ten times slower), each kept with
    probability ``sample``, token counts times ``token_scale`` and capped (a small model's context, a
    2-core machine). ``model_map``: the trace's model column (BurstGPT) to this server's models."""

    path: str                       # relative to the workload file; a built-in sample by its name
    format: Literal["auto", "azure", "burstgpt"] = "auto"
    start_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    duration_s: PosFloat | None = None
    speed: PosFloat = 1.0
    sample: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    token_scale: PosFloat = 1.0
    max_prompt_tokens: Positive | None = None
    max_output_tokens: Positive | None = None
    model_map: dict[str, str] = {}


class Workload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str = ""
    description: str = ""
    seed: int = 0
    requests: Positive | None = None  # default: groups × turns with shared_prefix, else 16
    model: str = ""
    arrival: Arrival = Arrival()
    prompt: Prompt = Prompt()
    output: Output = Output()
    models: Models | None = None
    classes: list[RequestClass] = []
    shared_prefix: SharedPrefix | None = None
    trace: Trace | None = None
    server: dict[str, object] = {}


def _check(w: Workload) -> None:
    def dist(where: str, d: object) -> None:
        if isinstance(d, (Uniform, Normal, LogNormal)) and d.min > d.max:
            raise WorkloadError(f"{where}: min ({d.min}) is greater than max ({d.max})")
        if isinstance(d, Choice) and d.weights is not None:
            weights(f"{where}.weights", d.weights, len(d.values), "values")

    def weights(where: str, ws: list[float] | None, n: int, of: str) -> None:
        if ws is None:
            return
        if len(ws) != n:
            raise WorkloadError(f"{where}: {len(ws)} weights for {n} {of}")
        if not sum(ws) > 0:
            raise WorkloadError(f"{where}: the weights sum to 0")

    dist("prompt.tokens", w.prompt.tokens)
    dist("output.max_tokens", w.output.max_tokens)
    if w.models is not None:
        weights("models.weights", w.models.weights, len(w.models.names), "models.names")
        dist("models.run_length", w.models.run_length)
        if any(not n.strip() for n in w.models.names):
            raise WorkloadError("models.names: a model name is empty")
    for i, c in enumerate(w.classes):
        if c.max_tokens is not None:
            dist(f"classes[{i}].max_tokens", c.max_tokens)
    if w.classes and not sum(c.weight for c in w.classes) > 0:
        raise WorkloadError("classes: the weights sum to 0")
    if len({c.name for c in w.classes}) != len(w.classes):
        raise WorkloadError("classes: class names must be unique")
    if (w.arrival.mode == "trace") != (w.trace is not None):
        raise WorkloadError("arrival.mode = \"trace\" and a [trace] table go together")
    if w.trace is not None and w.shared_prefix is not None:
        raise WorkloadError("trace: a replayed trace has its own prompts; drop [shared_prefix]")


ENUMS = {"arrival.mode": ("closed", "poisson", "burst", "trace"), "trace.format": ("auto", "azure", "burstgpt"), "models.pattern": ("alternate", "random", "runs", "hash")}


def parse(text: str, *, name: str = "", source: str = "workload") -> Workload:
    """A workload from TOML text; ``source`` prefixes every error message."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkloadError(f"{source}: not valid TOML: {exc}") from None
    try:
        w = msgspec.convert(raw, Workload)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        if " - at `$." in msg:
            msg, where = msg.rsplit(" - at `$.", 1)
            where = where.rstrip("`")
            if where.endswith(".dist") and msg.startswith("Invalid value"):
                msg += f"; expected one of {', '.join(DISTS)} (or an integer for a fixed value)"
            elif where in ENUMS and msg.startswith("Invalid enum value"):
                msg += f"; expected one of {', '.join(ENUMS[where])}"
            msg = f"{where}: {msg}"
        raise WorkloadError(f"{source}: {msg}") from None
    try:
        _check(w)
    except WorkloadError as exc:
        raise WorkloadError(f"{source}: {exc}") from None
    if not w.name and name:
        w = msgspec.structs.replace(w, name=name)
    return w


#: The example workloads that come with the package: ``mullama bench NAME`` runs one by name.
BUILT_IN = Path(__file__).resolve().parent / "workloads"


def built_in() -> list[str]:
    return sorted(p.stem for p in BUILT_IN.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A workload file: the path given, else the built-in workload of that name (``priority_mix``)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".toml" or "/" in name_or_path:
        return path
    candidate = BUILT_IN / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    raise WorkloadError(f"no workload file {name_or_path!r}, and no built-in workload of that name "
                        f"(built in: {', '.join(built_in())})")


def load(path: str | Path) -> Workload:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkloadError(f"cannot read workload file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WorkloadError(f"{path}: not UTF-8 text") from None
    w = parse(text, name=path.stem, source=str(path))
    if w.trace is not None:  # a relative trace path is the workload file's neighbour, or a built-in sample
        w = msgspec.structs.replace(w, trace=msgspec.structs.replace(w.trace, path=str(trace_path(w.trace.path,
                                                                                                   path.parent))))
    return w


def from_trace(path: str, model: str) -> Workload:
    """``mullama bench TRACE.csv``: the whole trace at its own pace, to ``model``, outputs forced to length."""
    p = trace_path(path, Path.cwd())
    return Workload(name=p.stem, description=f"the trace {p.name} replayed", model=model,
                    arrival=Arrival(mode="trace"), trace=Trace(path=str(p)))


#: Samples of real traces that come with the package (their attribution: traces/README.md).
TRACES = Path(__file__).resolve().parent / "traces"


def trace_path(name: str, base: Path) -> Path:
    p = Path(name).expanduser()
    if p.is_absolute():
        return p
    for candidate in (base / p, TRACES / p, TRACES / f"{name}.csv"):
        if candidate.exists():
            return candidate
    return base / p  # reading it says it is not there


def request_count(w: Workload) -> int:
    if w.requests is not None:
        return w.requests
    return w.shared_prefix.groups * w.shared_prefix.turns if w.shared_prefix else 16
