"""The X-Profile of one request: the runner's ``CompletionStats`` plus the supervisor's own timings.

``build_profile`` defines the per-request numbers that the X-Profile header returns and
``Metrics.request_done`` reads (docs/observability.md, "X-Profile").
"""

from __future__ import annotations

from typing import Any

from mullama import wire


def _ms(value: float) -> float:
    return round(max(0.0, float(value)), 3)


def build_profile(*, stats: wire.CompletionStats, model: str, scheduler: str, runner_pid: int | None,
                  queue_ms: float, load_ms: float, total_ms: float, preemptions: int,
                  kv_evicted: int = 0) -> dict[str, Any]:
    """The X-Profile object of one request (docs/observability.md, "X-Profile").

    ``queue_ms`` / ``load_ms`` / ``total_ms`` are the supervisor's own spans: time in the scheduler
    queue (load waits excluded), time waiting for a load or swap, submit -> final. The runner's
    queue time (``stats.queue_ms``) is added to ``queue_ms`` so all slot waiting is in one number.
    Counts are clamped so that ``kv_cache_hit + kv_cache_miss == prompt_tokens`` always holds.
    """
    prompt = max(0, stats.prompt_tokens)
    completion = max(0, stats.completion_tokens)
    hit = min(prompt, max(0, stats.cached_tokens))
    decode_ms = _ms(stats.decode_ms)  # tokens_per_second is computed from the rounded value: reproducible
    tps = (completion - 1) / (decode_ms / 1000.0) if completion >= 2 and decode_ms > 0 else 0.0
    return {
        "model": model,
        "scheduler": scheduler,
        "runner_pid": runner_pid,
        "slot": stats.slot,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "kv_cache_hit": hit,
        "kv_cache_miss": prompt - hit,
        "kv_cache_evict": max(0, kv_evicted),
        "queue_ms": _ms(max(0.0, queue_ms) + max(0.0, stats.queue_ms)),
        "load_ms": _ms(load_ms),
        "prefill_ms": _ms(stats.prefill_ms),
        "time_to_first_token_ms": _ms(stats.ttft_ms) if completion else 0.0,
        "decode_ms": decode_ms,
        "tokens_per_second": round(tps, 3),
        "inter_token_ms_p50": _ms(stats.inter_token_ms_p50) if completion >= 2 else 0.0,
        "inter_token_ms_p95": _ms(stats.inter_token_ms_p95) if completion >= 2 else 0.0,
        "total_ms": _ms(total_ms),
        "preemptions": max(0, preemptions),
        "adapters": stats.adapters,  # its LoRA set, "id:scale,..." ("": none)
        "adapter_waits": max(0, stats.adapter_waits),  # decode steps it sat out while other adapter sets ran
        "context_shifts": max(0, stats.context_shifts),
        "draft_tokens": max(0, stats.draft_tokens),  # speculative decoding: drafted and verified ...
        "draft_accepted": max(0, stats.draft_accepted),  # ... and accepted
        "draft_acceptance": round(stats.draft_accepted / stats.draft_tokens, 4) if stats.draft_tokens > 0 else None,
    }
