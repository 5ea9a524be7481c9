"""The load generator: streaming chat completions against any OpenAI-compatible base URL.

``send`` measures one request from the client's side (time to first content, every gap between
content chunks, end to end, tokens) and keeps the ``profile`` object when the server adds one
(mullama with ``X-Profile: 1``). A failure of any kind becomes a record with ``ok: false`` and the
error, never an exception: a run always finishes. ``run_phase`` drives one phase closed loop
(``concurrency`` workers) or open loop (each request at its arrival offset, not waiting for others).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from mullama.bench.trace import Phase, RequestSpec


def _error_text(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        err = body.get("error", body) if isinstance(body, dict) else body
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except ValueError:
        return raw.decode(errors="replace")[:300]


def new_record(spec: RequestSpec) -> dict[str, Any]:
    """A request's record before anything happened (the simulator fills the same fields)."""
    return {
        "index": spec.index,
        "model": spec.model,
        "class": spec.klass,
        "priority": spec.priority,
        "deadline_ms": spec.deadline_ms,
        "user": spec.user,
        "group": spec.group,
        "turn": spec.turn,
        "prompt_words": spec.prompt_words,
        "max_tokens": spec.max_tokens,
        "ok": False,
        "status": None,
        "error": None,
        "cancelled": False,
        "finish_reason": None,
        "ttft_ms": None,
        "e2e_ms": None,
        "gaps_ms": [],
        "prompt_tokens": None,
        "completion_tokens": 0,
        "cached_tokens": None,
        "chunks": 0,
        "profile": None,
    }


async def send(
    session: aiohttp.ClientSession,
    base_url: str,
    spec: RequestSpec,
    *,
    profile: bool = True,
    extensions: bool = True,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """One streamed request; the record of what happened (see docs/bench.md for the fields)."""
    rec = new_record(spec)
    headers = {"X-Profile": "1"} if profile else {}
    t0 = time.perf_counter()
    rec["start_wall"] = time.time()
    cancel = spec.cancel_after_ms / 1000 if spec.cancel_after_ms else None
    cancels = cancel is not None and cancel < timeout_s
    try:
        async with asyncio.timeout(cancel if cancels else timeout_s):
            await _stream(session, base_url, spec, rec, t0, headers, extensions)
    except TimeoutError:
        if cancels:
            rec["cancelled"] = True  # the client gave up (closing the connection tells the server)
        else:
            rec["error"] = f"timeout after {timeout_s:g} s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
    rec["e2e_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    if rec["error"] is None:
        rec["ok"] = not rec["cancelled"]
    if not rec["completion_tokens"] and rec["chunks"]:
        rec["completion_tokens"] = rec["chunks"]
    return rec


async def _stream(
    session: aiohttp.ClientSession,
    base_url: str,
    spec: RequestSpec,
    rec: dict,
    t0: float,
    headers: dict[str, str],
    extensions: bool,
) -> None:
    last = None
    async with session.post(
        base_url.rstrip("/") + "/v1/chat/completions", json=spec.body(extensions=extensions), headers=headers
    ) as resp:
        rec["status"] = resp.status
        if resp.status != 200:
            rec["error"] = f"HTTP {resp.status}: {_error_text(await resp.read())}"
            return
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            try:
                msg = json.loads(data)
            except ValueError:
                msg = None
            if not isinstance(msg, dict):  # not an OpenAI chunk: an error record, never a crashed run
                rec["error"] = f"bad stream line: {data[:200]!r}"
                break
            if "error" in msg:
                rec["error"] = f"stream error: {_error_text(data)}"
                break
            now = time.perf_counter()
            _chunk(rec, msg, now, t0, last)
            if rec["ttft_ms"] is not None and _has_content(msg):
                last = now


def _has_content(msg: dict) -> bool:
    choices = msg.get("choices") or []
    return bool(choices and (choices[0].get("delta") or {}).get("content"))


def _chunk(rec: dict, msg: dict, now: float, t0: float, last: float | None) -> None:
    if _has_content(msg):
        rec["chunks"] += 1
        if rec["ttft_ms"] is None:
            rec["ttft_ms"] = round((now - t0) * 1000, 3)
        elif last is not None:
            rec["gaps_ms"].append(round((now - last) * 1000, 3))
    choices = msg.get("choices") or []
    if choices and choices[0].get("finish_reason"):
        rec["finish_reason"] = choices[0]["finish_reason"]
    usage = msg.get("usage")
    if usage:
        rec["prompt_tokens"] = usage.get("prompt_tokens")
        rec["completion_tokens"] = usage.get("completion_tokens") or 0
        details = usage.get("prompt_tokens_details") or {}
        if details.get("cached_tokens") is not None:
            rec["cached_tokens"] = details["cached_tokens"]
    timings = msg.get("timings")  # llama-server
    if isinstance(timings, dict) and timings.get("cache_n") is not None:
        rec["cached_tokens"] = timings["cache_n"]
    if isinstance(msg.get("profile"), dict):
        rec["profile"] = msg["profile"]
        rec["cached_tokens"] = msg["profile"].get("kv_cache_hit", rec["cached_tokens"])


async def run_phase(
    session: aiohttp.ClientSession,
    base_url: str,
    phase: Phase,
    *,
    on_done: Callable[[dict], None] | None = None,
    **kw: Any,
) -> tuple[list[dict], float]:
    """All requests of ``phase``; (records in completion order, wall seconds first send → last end)."""
    records: list[dict] = []
    t0 = time.perf_counter()

    async def one(spec: RequestSpec) -> None:
        sent = time.perf_counter() - t0
        rec = await send(session, base_url, spec, **kw)
        rec["sent_s"] = round(sent, 4)
        rec["scheduled_s"] = round(spec.arrival_s, 4)
        rec["end_s"] = round(time.perf_counter() - t0, 4)
        records.append(rec)
        if on_done is not None:
            on_done(rec)

    if phase.concurrency is not None:
        pending = list(reversed(phase.requests))

        async def worker() -> None:
            while pending:
                await one(pending.pop())

        await asyncio.gather(*(worker() for _ in range(min(phase.concurrency, len(phase.requests)))))
    else:

        async def at(spec: RequestSpec) -> None:
            delay = t0 + spec.arrival_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await one(spec)

        await asyncio.gather(*(at(s) for s in phase.requests))
    return records, time.perf_counter() - t0


def session(limit: int = 0) -> aiohttp.ClientSession:
    """A session for a run: no pool limit, no reuse (llama-server closes streamed connections)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=True),
        timeout=aiohttp.ClientTimeout(total=None),
    )
