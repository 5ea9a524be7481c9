"""Prompts of an exact token count for a replayed trace, fitted with the target's own tokenizer.

A trace gives each request's prompt length in tokens (``ContextTokens``). The words of ``trace.py`` are
about one token each; ``fit`` makes it exact: it asks the server (``POST /tokenize`` and ``/detokenize``,
mullama's and llama-server's alike) for one long run of tokens, and gives each request a different slice
of it, detokenised, shortened by what the chat template adds (measured once per model with a one-token
completion), so that the server counts the trace's number of prompt tokens. Slices start at different
offsets: no two prompts share a prefix by accident (a real trace's conversations do not). Requests are fitted
model by model, so a server that holds one model at a time swaps once per model, not once per request.
"""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import msgspec

from mullama.bench import client
from mullama.bench.trace import Phase, RequestSpec, words

_LONG_WORDS = 24_000   # tokens of text to slice from (≈ one per word)
_STRIDE = 7919         # a prime: request i starts at (i * _STRIDE) mod the room left


class FitError(Exception):
    """The server cannot tokenise (no /tokenize): prompts stay word-count approximations."""


async def _post(session: aiohttp.ClientSession, url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        async with session.post(url + path, json=body, timeout=aiohttp.ClientTimeout(total=120)) as resp:
            if resp.status != 200:
                raise FitError(f"{path}: HTTP {resp.status}: {(await resp.text())[:200]}")
            return await resp.json()
    except aiohttp.ClientError as exc:
        raise FitError(f"{path}: {exc}") from None


async def _overhead(session: aiohttp.ClientSession, url: str, q: RequestSpec, timeout_s: float) -> int:
    """Tokens the chat template (and the system message) add to a user message of this request's model."""
    text = "the sea"
    n = len((await _post(session, url, "/tokenize", {"content": text, "model": q.model}))["tokens"])
    probe = msgspec.structs.replace(q, messages=[*q.messages[:-1], {"role": "user", "content": text}], max_tokens=1,
                                    index=-1000)
    rec = await client.send(session, url, probe, profile=False, extensions=False, timeout_s=timeout_s)
    if not rec["ok"] or rec["prompt_tokens"] is None:
        raise FitError(f"the probe completion failed: {rec['error']}")
    return max(0, rec["prompt_tokens"] - n)


async def fit(session: aiohttp.ClientSession, url: str, phases: list[Phase], timeout_s: float = 600.0) -> list[Phase]:
    """The phases with every trace request's user message re-made to its exact prompt length."""
    out = []
    long_tokens: dict[str, list[int]] = {}
    overhead: dict[str, int] = {}
    for ph in phases:
        if ph.mode != "trace":
            out.append(ph)
            continue
        fitted: dict[int, RequestSpec] = {}
        for q in sorted(ph.requests, key=lambda q: q.model):  # one model after another: no swap per request
            if q.model not in long_tokens:
                text = words(random.Random(f"exact:{q.model}"), _LONG_WORDS)
                long_tokens[q.model] = (await _post(session, url, "/tokenize", {"content": text, "model": q.model}))[
                    "tokens"]
                overhead[q.model] = await _overhead(session, url, q, timeout_s)
            toks = long_tokens[q.model]
            n = max(1, q.prompt_words - overhead[q.model])
            if n > len(toks):
                raise FitError(f"a prompt of {n} tokens is longer than the text to cut it from ({len(toks)})")
            start = (q.index * _STRIDE) % (len(toks) - n + 1)
            content = (await _post(session, url, "/detokenize", {"tokens": toks[start:start + n],
                                                                  "model": q.model}))["content"]
            fitted[id(q)] = msgspec.structs.replace(q, messages=[*q.messages[:-1], {"role": "user", "content": content}])
        out.append(msgspec.structs.replace(ph, requests=[fitted[id(q)] for q in ph.requests]))
    return out
