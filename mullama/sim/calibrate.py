"""`mullama sim calibrate`: measure a cost model for each model through the full serving stack.

Every number comes from requests to a real `mullama serve` on this machine, so the profile includes
what serving adds, not only the engine:

* ``step_ms``: one engine step with N tokens in the batch. Decode points: N streams decoding together
  (N = 1, 2, 4, … ``n_parallel``), each step's time read as the median inter-token gap the server
  measured (X-Profile ``inter_token_ms_p50``). Prefill points: one prompt of P tokens alone, the step
  being the server's ``prefill_ms``. The table is made non-decreasing (noise can dent it).
* ``ctx_ms_per_token``: the extra inter-token time of one stream after a long prompt over a short one,
  per token of context.
* ``first_token_ms``: the client's time to first token minus the server's prefill (HTTP, the chat
  template, tokenising, the hop to the runner); ``template_tokens``: prompt tokens beyond the words sent.
* ``load_s`` / ``unload_s`` / ``memory_bytes``: ``/api/load`` and ``/api/unload`` timed, and what
  ``/internal/models`` reports the loaded model holds.
* ``swap_extra_s`` (two models or more, the server started with ``max_loaded_models = 1``): ``/api/load`` of
  each model while another is loaded, idle, so that it is evicted, less ``load_s``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable

from mullama.bench import client
from mullama.bench.servers import BenchError, Target, http_json
from mullama.bench.trace import RequestSpec, words
from mullama.sim.profile import ModelCost

PROMPTS = (16, 64, 128, 256, 512)   # prefill probes, in words (about a token each)
DECODE_TOKENS = 48
SHORT, LONG = 16, 512               # the context probes' prompts


def _spec(model: str, n_words: int, max_tokens: int, i: int) -> RequestSpec:
    return RequestSpec(index=i, arrival_s=0.0, model=model,
                       messages=[{"role": "user", "content": words(random.Random(f"cal:{n_words}:{i}"), n_words)}],
                       max_tokens=max_tokens, ignore_eos=True, temperature=0.0, prompt_words=n_words)


async def _requests(session, target: Target, specs: list[RequestSpec], timeout_s: float) -> list[dict]:
    recs = await asyncio.gather(*(client.send(session, target.url, s, profile=True, timeout_s=timeout_s)
                                  for s in specs))
    bad = [r for r in recs if not r["ok"] or not r.get("profile")]
    if bad:
        raise BenchError(f"calibration request failed: {bad[0]['error'] or 'no X-Profile in the answer'}")
    return recs


def _monotone(points: dict[int, float]) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    for n in sorted(points):
        ms = max(points[n], out[-1][1] if out else 0.0)
        out.append((n, round(ms, 3)))
    return out


def decode_levels(n_parallel: int) -> list[int]:
    levels = [b for b in (1, 2, 4, 8, 16, 32, 64) if b < n_parallel]
    return [*levels, n_parallel]


async def measure(target: Target, model: str, *, n_parallel: int, rounds: int = 3, timeout_s: float = 300.0,
                  describe: Callable[[str], None] = lambda s: None) -> ModelCost:
    """One model's cost, measured through ``target`` (a started `mullama serve`)."""
    async with client.session() as session:
        describe(f"{model}: warm-up")
        await _requests(session, target, [_spec(model, 16, 4, -1)], timeout_s)
        points: dict[int, list[float]] = {}
        overhead, template = [], []
        for n_words in PROMPTS:
            describe(f"{model}: prefill {n_words} words")
            for r in range(rounds):
                rec = (await _requests(session, target, [_spec(model, n_words, 1, r)], timeout_s))[0]
                prof = rec["profile"]
                points.setdefault(prof["prompt_tokens"], []).append(prof["prefill_ms"])
                overhead.append(rec["ttft_ms"] - prof["prefill_ms"])
                template.append(prof["prompt_tokens"] - n_words)
        for b in decode_levels(n_parallel):
            describe(f"{model}: decode with {b} streams")
            gaps = []
            for r in range(rounds):
                recs = await _requests(session, target, [_spec(model, SHORT, DECODE_TOKENS, 100 * r + i)
                                                         for i in range(b)], timeout_s)
                gaps += [x["profile"]["inter_token_ms_p50"] for x in recs]
            points.setdefault(b, []).append(statistics.median(gaps))
        describe(f"{model}: context cost")
        ctx = {}
        for n_words in (SHORT, LONG):
            recs = [(await _requests(session, target, [_spec(model, n_words, DECODE_TOKENS, 7 + r)], timeout_s))[0]
                    for r in range(rounds)]
            ctx[n_words] = (statistics.median(x["profile"]["inter_token_ms_p50"] for x in recs),
                            statistics.median(x["profile"]["prompt_tokens"] for x in recs))
        (g_short, c_short), (g_long, c_long) = ctx[SHORT], ctx[LONG]
        ctx_ms = max(0.0, (g_long - g_short) / max(1, c_long - c_short))
        describe(f"{model}: load and unload")
        loads, unloads = [], []
        for _ in range(rounds):
            unloads.append(_timed(target, "/api/unload", model))
            loads.append(_timed(target, "/api/load", model))
        ready = [m for m in (target.internal("/internal/models") or {}).get("models", []) if m.get("state") == "ready"]
        memory = next((m.get("memory") or 0 for m in ready if m.get("name") == model),
                      ready[0].get("memory") or 0 if len(ready) == 1 else 0)
    return ModelCost(step_ms=_monotone({n: statistics.median(v) for n, v in points.items()}),
                     ctx_ms_per_token=round(ctx_ms, 6), first_token_ms=round(statistics.median(overhead), 3),
                     template_tokens=max(0, round(statistics.median(template))),
                     load_s=round(statistics.median(loads), 4), unload_s=round(statistics.median(unloads), 4),
                     memory_bytes=int(memory))


def swap_extra(target: Target, models: list[str], loads: dict[str, float], rounds: int = 3) -> dict[str, float]:
    """Per model, what loading it costs beyond ``loads[model]`` when another model must be evicted first (the
    server holds one model at a time). Each round loads every model in turn, so each load evicts the last."""
    extra: dict[str, list[float]] = {m: [] for m in models}
    _timed(target, "/api/load", models[-1])
    for _ in range(rounds):
        for m in models:
            extra[m].append(_timed(target, "/api/load", m) - loads[m])
    return {m: round(max(0.0, statistics.median(v)), 4) for m, v in extra.items()}


def _timed(target: Target, path: str, model: str) -> float:
    t = time.perf_counter()
    status, data = http_json(target.url + path, "POST", {"model": model})
    if status != 200:
        raise BenchError(f"{path} {model!r} failed: {data}")
    return time.perf_counter() - t
