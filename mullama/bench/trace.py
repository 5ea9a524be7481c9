"""A workload → its trace: the seeded, reproducible list of requests, in phases.

Everything random comes from one ``random.Random(seed)`` per stream (prompts, lengths, models,
classes, arrivals), so one seed gives the same trace on every machine and Python 3.11+, and
changing, say, the arrival rate does not change the prompts.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

import msgspec

from mullama.bench import traces
from mullama.bench.workload import Choice, Fixed, LogNormal, Normal, Uniform, Workload, request_count

# Common short English words: in the usual BPE vocabularies nearly all are one token with their space.
_WORDS = """
the of and to in is you that it he was for on are as with his they at be this have from or one had by
word but not what all were we when your can said there use an each which she do how their if will up
other about out many then them these so some her would make like him into time has look two more write
go see number no way could people my than first water been call who oil its now find long down day did
get come made may part over new sound take only little work know place year live me back give most very
after thing our just name good sentence man think say great where help through much before line right
too mean old any same tell boy follow came want show also around form three small set put end does
another well large must big even such because turn here why ask went men read need land different home
us move try kind hand picture again change off play spell air away animal house point page letter mother
answer found study still learn should world high every near add food between own below country plant
last school father keep tree never start city earth eye light thought head under story saw left few
while along might close something seem next hard open example begin life always those both paper
together got group often run
"""
WORDS = tuple(_WORDS.split())


class RequestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One request of a trace. ``arrival_s``: offset from the phase start (open loop; 0 in closed loop)."""

    index: int
    arrival_s: float
    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    ignore_eos: bool
    temperature: float
    prompt_words: int
    klass: str | None = None
    priority: int | None = None
    deadline_ms: float | None = None
    user: str | None = None
    group: int | None = None
    turn: int | None = None
    cancel_after_ms: float | None = None

    def body(self, *, extensions: bool = True) -> dict[str, Any]:
        """The /v1/chat/completions body; ``extensions`` adds mullama's priority/deadline_ms."""
        b: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.ignore_eos:
            b["ignore_eos"] = True
        if self.user is not None:
            b["user"] = self.user
        if extensions and self.priority is not None:
            b["priority"] = self.priority
        if extensions and self.deadline_ms is not None:
            b["deadline_ms"] = self.deadline_ms
        return b


class Phase(msgspec.Struct, frozen=True, kw_only=True):
    """One measured run of the trace: closed loop at ``concurrency``, or open loop (``concurrency`` None)."""

    label: str
    mode: str
    concurrency: int | None
    rate: float | None
    requests: list[RequestSpec]
    source: dict | None = None  # a replayed trace: its statistics, as cut and scaled (bench/traces.py)


def draw(rng: random.Random, d: Any) -> int:
    """One integer from a length distribution (an int is a fixed value)."""
    if isinstance(d, int):
        return d
    if isinstance(d, Fixed):
        return d.value
    if isinstance(d, Uniform):
        return rng.randint(d.min, d.max)
    if isinstance(d, Normal):
        return max(d.min, min(d.max, round(rng.gauss(d.mean, d.std))))
    if isinstance(d, LogNormal):
        return max(d.min, min(d.max, round(rng.lognormvariate(math.log(d.median), d.sigma))))
    if isinstance(d, Choice):
        return rng.choices(d.values, weights=d.weights)[0]
    raise TypeError(f"not a distribution: {d!r}")


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(f"{seed}:{stream}")


def _models(w: Workload, n: int) -> list[str]:
    if w.models is None:
        return [w.model] * n
    m, rng = w.models, _rng(w.seed, "models")
    if m.pattern == "alternate":
        return [m.names[i % len(m.names)] for i in range(n)]
    if m.pattern == "random":
        return rng.choices(m.names, weights=m.weights, k=n)
    if m.pattern == "hash":
        return [hashed(m.names, m.weights, f"{w.seed}:{i}") for i in range(n)]
    out: list[str] = []
    k = 0
    while len(out) < n:
        out += [m.names[k % len(m.names)]] * max(1, draw(rng, m.run_length))
        k += 1
    return out[:n]


def hashed(names: list[str], weights: list[float] | None, key: str) -> str:
    """A name drawn by ``weights`` from a stable hash of ``key`` (the same on every machine and run)."""
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    ws = weights or [1.0] * len(names)
    acc, total = 0.0, sum(ws)
    for name, wt in zip(names, ws):
        acc += wt / total
        if u < acc:
            return name
    return names[-1]


def _messages(w: Workload, n: int) -> list[tuple[list[dict[str, str]], int, int | None, int | None]]:
    """(messages, prompt words, group, turn) per request."""
    rng = _rng(w.seed, "prompts")
    sp = w.shared_prefix
    if sp is None:
        out = []
        for _ in range(n):
            k = draw(rng, w.prompt.tokens)
            msgs = [{"role": "system", "content": w.prompt.system}] if w.prompt.system else []
            out.append((msgs + [{"role": "user", "content": words(rng, k)}], k, None, None))
        return out
    prefixes = [words(rng, sp.prefix_tokens) for _ in range(sp.groups)]
    if w.prompt.system:
        prefixes = [f"{w.prompt.system}\n{p}" for p in prefixes]
    history: dict[int, list[dict[str, str]]] = {}
    out = []
    for i in range(n):
        group, rnd = i % sp.groups, i // sp.groups
        turn = rnd % sp.turns
        if turn == 0:
            history[group] = [{"role": "system", "content": prefixes[group]}]
        msgs = history[group]
        k = draw(rng, w.prompt.tokens)
        msgs = msgs + [{"role": "user", "content": words(rng, k)}]
        out.append((msgs, k, group, turn))
        history[group] = msgs + [{"role": "assistant", "content": words(rng, sp.reply_tokens)}]
    return out


def requests(w: Workload, n: int | None = None) -> list[RequestSpec]:
    """The trace's requests in send order, without arrival times."""
    n = n or request_count(w)
    models, msgs = _models(w, n), _messages(w, n)
    crng, lrng = _rng(w.seed, "classes"), _rng(w.seed, "lengths")
    classes = w.classes
    out = []
    for i in range(n):
        c = crng.choices(classes, weights=[x.weight for x in classes])[0] if classes else None
        dist = c.max_tokens if c is not None and c.max_tokens is not None else w.output.max_tokens
        m, k, group, turn = msgs[i]
        out.append(
            RequestSpec(
                index=i,
                arrival_s=0.0,
                model=models[i],
                messages=m,
                max_tokens=max(1, draw(lrng, dist)),
                ignore_eos=w.output.ignore_eos,
                temperature=w.output.temperature,
                prompt_words=k,
                klass=c.name if c else None,
                priority=c.priority if c else None,
                deadline_ms=c.deadline_ms if c else None,
                user=c.user if c else None,
                group=group,
                turn=turn,
                cancel_after_ms=c.cancel_after_ms if c else None,
            )
        )
    return out


def poisson_offsets(rng: random.Random, n: int, rate: float) -> list[float]:
    """Arrival offsets of a Poisson process: cumulative exponential gaps (mean 1/rate), first at 0."""
    t, out = 0.0, []
    for i in range(n):
        if i:
            t += rng.expovariate(rate)
        out.append(t)
    return out


def replay(w: Workload) -> Phase:
    """``arrival.mode = "trace"``: one open-loop phase with the trace's arrival times and token counts.
    Prompts are words of the fixed vocabulary (about one token each), one per prompt token of the trace;
    outputs are forced to the trace's length when ``output.ignore_eos`` (the default)."""
    t = w.trace
    assert t is not None
    rows = traces.select(traces.read(t.path, t.format), start_s=t.start_s, duration_s=t.duration_s, speed=t.speed,
                         sample=t.sample, seed=w.seed, token_scale=t.token_scale,
                         max_prompt_tokens=t.max_prompt_tokens, max_output_tokens=t.max_output_tokens,
                         limit=w.requests)
    if not rows:
        raise traces.TraceError(f"{t.path}: no requests in the window start_s={t.start_s:g}, "
                                f"duration_s={t.duration_s}")
    rng = _rng(w.seed, "trace-prompts")
    system = [{"role": "system", "content": w.prompt.system}] if w.prompt.system else []
    by_hash = w.models is not None and w.models.pattern == "hash"
    reqs = [msgspec.structs.replace(q, arrival_s=r.t, model=t.model_map.get(r.model, hashed(
                                        w.models.names, w.models.weights, r.key) if by_hash else q.model),
                                    messages=[*system, {"role": "user", "content": words(rng, r.prompt_tokens)}],
                                    prompt_words=r.prompt_tokens, max_tokens=r.output_tokens)
            for q, r in zip(requests(w, len(rows)), rows)]
    span = rows[-1].t or 1.0
    return Phase(label=f"trace x{t.speed:g}", mode="trace", concurrency=None, rate=len(rows) / span,
                 requests=reqs, source=traces.stats(rows))


def phases(w: Workload, seed: int | None = None) -> list[Phase]:
    """The workload's phases; ``seed`` overrides the file's."""
    if seed is not None:
        w = msgspec.structs.replace(w, seed=seed)
    if w.arrival.mode == "trace":
        return [replay(w)]
    reqs = requests(w)
    a = w.arrival
    if a.mode == "closed":
        levels = a.concurrency if isinstance(a.concurrency, list) else [a.concurrency]
        return [Phase(label=f"c={c}", mode="closed", concurrency=c, rate=None, requests=reqs) for c in levels]
    if a.mode == "poisson":
        rates = a.rate if isinstance(a.rate, list) else [a.rate]
        out = []
        for r in rates:
            offs = poisson_offsets(_rng(w.seed, f"arrivals:{r}"), len(reqs), r)
            out.append(
                Phase(
                    label=f"poisson {r:g}/s",
                    mode="poisson",
                    concurrency=None,
                    rate=r,
                    requests=[msgspec.structs.replace(q, arrival_s=t) for q, t in zip(reqs, offs)],
                )
            )
        return out
    offs = [(i // a.burst_size) * a.burst_interval_s for i in range(len(reqs))]
    return [
        Phase(
            label=f"burst {a.burst_size}/{a.burst_interval_s:g}s",
            mode="burst",
            concurrency=None,
            rate=a.burst_size / a.burst_interval_s if a.burst_interval_s else None,
            requests=[msgspec.structs.replace(q, arrival_s=t) for q, t in zip(reqs, offs)],
        )
    ]
