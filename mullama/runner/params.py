"""The runner's conversions between the wire types and the engine's: load parameters to model and
context parameters, a completion request to sampling parameters, device memory and completion stats
back to the wire.
"""

from __future__ import annotations

import msgspec

from mullama import _engine, engine, wire
from mullama.core.errors import InvalidArgument


def device_list(devices: list) -> list[wire.DeviceMemory]:
    return [
        wire.DeviceMemory(device=d.device, description=d.description, type=d.type, free=d.free, total=d.total,
                          model=d.model, context=d.context, compute=d.compute)
        for d in devices
    ]


def model_params(p: wire.LoadParams) -> engine.ModelParams:
    return engine.ModelParams(n_gpu_layers=p.n_gpu_layers, main_gpu=p.main_gpu, split_mode=p.split_mode,
                              tensor_split=p.tensor_split, use_mmap=p.use_mmap, use_mlock=p.use_mlock,
                              check_tensors=p.check_tensors, kv_overrides=p.kv_overrides,
                              tensor_overrides=p.tensor_overrides)


def context_params(p: wire.LoadParams) -> engine.ContextParams:
    if p.n_parallel < 1:
        raise InvalidArgument("n_parallel must be >= 1")
    return engine.ContextParams(n_ctx=p.n_ctx, n_batch=p.n_batch, n_ubatch=p.n_ubatch, n_seq_max=p.n_parallel,
                                n_threads=p.n_threads, n_threads_batch=p.n_threads_batch, flash_attn=p.flash_attn,
                                type_k=p.type_k, type_v=p.type_v, kv_unified=p.kv_unified, offload_kqv=p.offload_kqv,
                                swa_full=p.swa_full, rope_scaling=p.rope_scaling, rope_freq_base=p.rope_freq_base,
                                rope_freq_scale=p.rope_freq_scale, yarn_orig_ctx=p.yarn_orig_ctx)


def sampling_params(req: wire.CompletionRequest, n_vocab: int) -> engine.SamplingParams:
    if isinstance(req.logit_bias, dict):
        try:
            bias = [(int(k), float(v)) for k, v in req.logit_bias.items()]
        except ValueError:
            raise InvalidArgument("logit_bias keys must be token ids") from None
        if any(not 0 <= t < n_vocab for t, _ in bias):
            raise InvalidArgument(f"logit_bias token ids must be in [0, {n_vocab})")
    else:
        bias = [(int(t), float(v)) for t, v in req.logit_bias]
    schema = ""
    if req.json_schema is not None and req.json_schema is not False:
        schema = msgspec.json.encode(req.json_schema if req.json_schema is not True else {}).decode()
    return engine.SamplingParams(
        temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, min_p=req.min_p, typical_p=req.typical_p,
        repeat_penalty=req.repeat_penalty, repeat_last_n=req.repeat_last_n,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty, seed=req.seed,
        logit_bias=bias, grammar=req.grammar or "", json_schema=schema, reasoning_budget=req.reasoning_budget,
    ).with_extras(**{name: getattr(req, name) for name in EXTRA_SAMPLING})


#: ``CompletionRequest`` fields that are llama.cpp's other samplers (``SamplingParams.with_extras``)
EXTRA_SAMPLING = ("min_keep", "mirostat", "mirostat_tau", "mirostat_eta", "xtc_probability", "xtc_threshold",
                  "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers",
                  "top_n_sigma", "dynatemp_range", "dynatemp_exponent", "samplers")


def stats_of(ev: _engine.Event) -> wire.CompletionStats:
    s = ev.stats
    return wire.CompletionStats(
        prompt_tokens=s.prompt_tokens, cached_tokens=s.cached_tokens, completion_tokens=s.completion_tokens,
        queue_ms=s.queue_ms, prefill_ms=s.prefill_ms, ttft_ms=s.ttft_ms, decode_ms=s.decode_ms,
        total_ms=s.total_ms, inter_token_ms_p50=s.itl_p50_ms, inter_token_ms_p95=s.itl_p95_ms, slot=s.slot,
        pauses=s.pauses, swaps=s.swaps, evicted_tokens=s.evicted_tokens, kv_preemptions=s.kv_preemptions,
        adapters=s.adapters, adapter_waits=s.adapter_waits, context_shifts=s.context_shifts,
        draft_tokens=s.draft_tokens, draft_accepted=s.draft_accepted,
    )


def kv_view(b: _engine.Batcher, n_ctx: int) -> wire.KvView:
    """The loop's slots and prefix-cache counters (``GET /kv``)."""
    c = b.counters()
    slots = [wire.SlotView(index=s.index, state=s.state, request_id=s.request_id or None, n_tokens=s.n_tokens,
                           n_cached=s.n_cached, n_prompt=s.n_prompt, n_generated=s.n_generated,
                           adapters=s.adapters) for s in b.slots()]
    return wire.KvView(slots=slots, cells_used=sum(s.n_tokens for s in slots), cells_total=n_ctx,
                       n_ctx_slot=b.n_ctx_slot, prefix_hits=c.prefix_hits, prefix_misses=c.prefix_misses,
                       prefix_evictions=c.prefix_evictions, cached_tokens=c.cached_tokens,
                       active_adapters=b.active_adapters, adapter_switches=c.adapter_switches,
                       context_shifts=c.context_shifts, draft_steps=c.draft_steps, draft_tokens=c.draft_tokens,
                       draft_accepted=c.draft_accepted, parks=c.parks, unparks=c.unparks,
                       parked_entries=c.parked_entries, parked_bytes=c.parked_bytes)


def configure(batcher: _engine.Batcher, p: wire.LoadParams) -> None:
    """The loop's settings that come with the load: context shift, LoRA turns, host memory for prefix caches."""
    batcher.set_context_shift(p.context_shift)
    batcher.set_adapter_turn(p.adapter_turn)
    batcher.set_cache_ram(p.cache_ram)


def spec_params(s: wire.Speculative | None) -> _engine.SpecParams:
    """The batcher's speculative decoding (None or no types: off)."""
    if s is None or not s.types:
        return _engine.SpecParams()
    return _engine.SpecParams(types=list(s.types), n_max=s.n_max, n_min=s.n_min, ngram_n=s.ngram_n,
                              ngram_m=s.ngram_m, ngram_min_hits=s.ngram_min_hits, draft_model=s.draft_model,
                              draft_gpu_layers=s.draft_gpu_layers, draft_p_min=s.draft_p_min)
