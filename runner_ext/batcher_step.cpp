// One decode step of the batching loop: build the batch (a token for every
// running stream, then prompt chunks), decode, handle a full KV cache, sample,
// and end requests (EOS, stop strings, limits, the repetition detector).
#include <algorithm>
#include <cmath>

#include "batcher.h"
#include "batcher_internal.h"
#include "errors.h"

namespace mullama {

namespace {

// True when the last tokens are one block of k (1..8) tokens repeated more than `limit` times.
bool repeats(const std::vector<llama_token> & t, int32_t limit) {
    if (limit <= 0) return false;
    const size_t reps = static_cast<size_t>(limit) + 1;
    for (size_t k = 1; k <= 8; ++k) {
        if (t.size() < k * reps) break;
        const size_t base = t.size() - k;
        bool all = true;
        for (size_t r = 1; r < reps && all; ++r) {
            for (size_t j = 0; j < k; ++j) {
                if (t[base + j] != t[base - r * k + j]) {
                    all = false;
                    break;
                }
            }
        }
        if (all) return true;
    }
    return false;
}

}  // namespace

TokenProb token_prob(const float * logits, int32_t n_vocab, llama_token token, int32_t n) {
    float max = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i) max = std::max(max, logits[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
    const float log_z = max + static_cast<float>(std::log(sum));
    TokenProb p;
    p.token = token;
    p.logprob = logits[token] - log_z;
    n = std::min(n, n_vocab);
    if (n > 0) {
        std::vector<llama_token> ids(static_cast<size_t>(n_vocab));
        for (int32_t i = 0; i < n_vocab; ++i) ids[static_cast<size_t>(i)] = i;
        std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](llama_token a, llama_token b) {
            return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
        });
        p.top.reserve(static_cast<size_t>(n));
        for (int32_t i = 0; i < n; ++i) p.top.emplace_back(ids[static_cast<size_t>(i)], logits[ids[static_cast<size_t>(i)]] - log_z);
    }
    return p;
}

double percentile(std::vector<double> values, double q) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const double pos = q * static_cast<double>(values.size());
    size_t idx = pos <= 1.0 ? 0 : static_cast<size_t>(std::ceil(pos)) - 1;
    return values[std::min(idx, values.size() - 1)];
}

void Batcher::finish_request(Request & r, FinishReason reason, const std::string & error) {
    const auto now = Clock::now();
    Event ev;
    ev.id = r.spec.id;
    if (reason != FinishReason::Stop || r.stream->matched_stop().empty()) {
        ev.text = r.stream->flush();
    }
    ev.done = true;
    ev.finish_reason = reason;
    ev.stop_string = r.stream->matched_stop();
    ev.error = error;
    r.stats.completion_tokens = static_cast<int32_t>(r.generated.size());
    r.stats.total_ms = ms_between(r.t_submit, now);
    if (!r.generated.empty()) {
        r.stats.decode_ms = ms_between(r.t_first, r.t_last);
    }
    r.stats.itl_p50_ms = percentile(r.gaps, 0.50);
    r.stats.itl_p95_ms = percentile(r.gaps, 0.95);
    ev.stats = r.stats;
    publish(std::move(ev));
}

void Batcher::finish(Slot & s, FinishReason reason, const std::string & error) {
    Request & r = *s.req;
    // The slot keeps what its sequence holds as a prefix for the next request.
    s.cache = r.spec.prompt;
    s.cache.insert(s.cache.end(), r.generated.begin() + static_cast<std::ptrdiff_t>(r.gen_base), r.generated.end());
    s.cache.resize(std::min(s.cache.size(), static_cast<size_t>(std::max(r.n_past, 0))));
    if (static_cast<size_t>(std::max(r.n_past, 0)) > s.cache.size()) {  // accepted draft tokens it never emitted
        ctx_.kv_seq_rm(s.index, static_cast<llama_pos>(s.cache.size()), -1);
    }
    if (reason == FinishReason::Error) {
        ctx_.kv_seq_rm(s.index, -1, -1);
        s.cache.clear();
    }
    std::unique_ptr<Request> done = std::move(s.req);
    s.i_batch = -1;
    s.last_used = ++tick_;
    snapshot();  // a reader that sees the done event sees the slot idle
    finish_request(*done, reason, error);
}

void Batcher::sample_slot(Slot & s) {
    Request & r = *s.req;
    const auto now = Clock::now();
    const GenerateParams & p = r.spec.params;
    llama_token tok;
    TokenProb prob;
    try {
        tok = r.sampler->sample(ctx_, s.i_batch);
        if (p.n_probs >= 0) {
            prob = token_prob(llama_get_logits_ith(ctx_.raw(), s.i_batch), model_.info().n_vocab, tok, p.n_probs);
        }
    } catch (const std::exception & e) {
        finish(s, FinishReason::Error, e.what());
        return;
    }
    s.i_batch = -1;
    emit(s, tok, std::move(prob), now);
}

// A sampled token: publish it, or end the request (EOS, stop string, limits, repetition, full context).
// False when the request ended; else the token is the request's pending one.
bool Batcher::emit(Slot & s, llama_token tok, TokenProb prob, Clock::time_point now) {
    Request & r = *s.req;
    const GenerateParams & p = r.spec.params;
    if (r.generated.empty()) {
        r.t_first = now;
        r.stats.ttft_ms = ms_between(r.t_submit, now);
        r.stats.prefill_ms = ms_between(r.t_prefill_start, now);
    } else {
        r.gaps.push_back(ms_between(r.t_last, now));
    }
    r.t_last = now;
    if (p.max_tokens == 0) {
        finish(s, FinishReason::Length);
        return false;
    }
    if (!p.ignore_eos && model_.is_eog(tok)) {
        finish(s, FinishReason::Stop);
        return false;
    }
    r.generated.push_back(tok);
    {
        std::lock_guard<std::mutex> lock(mu_);
        counters_.tokens_out++;
    }
    Event ev;
    ev.id = r.spec.id;
    ev.first = r.generated.size() == 1;
    ev.text = r.stream->push(model_.token_to_piece(tok, false));
    ev.tokens.push_back(tok);
    if (p.n_probs >= 0) ev.probs.push_back(std::move(prob));
    publish(std::move(ev));
    if (r.stream->stopped()) {
        finish(s, FinishReason::Stop);
    } else if (p.max_tokens >= 0 && static_cast<int32_t>(r.generated.size()) >= p.max_tokens) {
        finish(s, FinishReason::Length);
    } else if (repeats(r.generated, r.spec.repeat_limit)) {
        finish(s, FinishReason::RepeatLimit);
    } else if (static_cast<uint32_t>(r.n_past) >= n_ctx_slot_) {
        if (!shift_context(s)) finish(s, FinishReason::ContextFull);
    } else {
        r.pending = tok;
        return true;
    }
    return false;
}

// A full context: keep the first n_keep prompt tokens (and BOS), drop half of the rest, and evaluate
// what follows the dropped part again as the request's prompt (the KV is recomputed, never shifted in
// place: in a unified cache the cells of a shared prefix belong to other sequences too). False: off,
// or nothing to drop.
bool Batcher::shift_context(Slot & s) {
    Request & r = *s.req;
    if (!context_shift_.load() || r.spec.n_keep < 0 || model_.info().is_recurrent) return false;
    std::vector<llama_token> all = r.spec.prompt;  // what the KV holds, then the token just sampled
    all.insert(all.end(), r.generated.begin() + static_cast<std::ptrdiff_t>(r.gen_base), r.generated.end());
    const int32_t bos = model_.info().add_bos ? 1 : 0;
    const int32_t keep = std::min(r.spec.n_keep + bos, std::min(r.stats.prompt_tokens, r.n_past));
    const int32_t discard = (r.n_past - keep) / 2;
    if (discard <= 0) return false;
    std::vector<llama_token> kept(all.begin(), all.begin() + keep);
    kept.insert(kept.end(), all.begin() + keep + discard, all.end());
    ctx_.kv_seq_rm(s.index, keep, -1);
    r.spec.prompt = std::move(kept);
    r.gen_base = r.generated.size();
    r.n_past = keep;
    r.pending = -1;
    r.stats.context_shifts++;
    std::lock_guard<std::mutex> lock(mu_);
    counters_.context_shifts++;
    return true;
}

// The LoRA set of this step (null: nothing to run). llama.cpp applies adapters to the whole context,
// so only requests with one set decode together: with several sets waiting, each gets adapter_turn_
// steps in turn (in key order), and the context switches between them (a graph re-reservation each).
const std::string * Batcher::step_adapters() {
    auto runnable = [](const std::unique_ptr<Request> & r) {
        return r && !r->paused && (r->pending >= 0 || r->n_past < static_cast<int32_t>(r->spec.prompt.size()));
    };
    std::vector<const Request *> sets;  // one request per distinct set with work
    for (auto & sp : slot_) {
        if (!runnable(sp->req)) continue;
        const std::string & key = sp->req->lora.key;
        if (std::none_of(sets.begin(), sets.end(), [&](const Request * q) { return q->lora.key == key; })) {
            sets.push_back(sp->req.get());
        }
    }
    if (sets.empty()) return nullptr;
    std::sort(sets.begin(), sets.end(), [](const Request * a, const Request * b) { return a->lora.key < b->lora.key; });
    auto active = std::find_if(sets.begin(), sets.end(), [&](const Request * q) { return q->lora.key == active_key_; });
    const Request * chosen = sets.front();
    if (sets.size() == 1) {
        turn_ = 0;
    } else if (active != sets.end() && turn_ < adapter_turn_.load()) {
        chosen = *active;
        turn_++;
    } else {
        auto next = std::find_if(sets.begin(), sets.end(), [&](const Request * q) { return q->lora.key > active_key_; });
        chosen = next != sets.end() ? *next : sets.front();
        turn_ = 1;
    }
    if (chosen->lora.key != active_key_) {
        std::vector<llama_adapter_lora *> ptrs;
        for (const auto & a : chosen->lora.adapters) ptrs.push_back(a->get());
        std::vector<float> scales = chosen->lora.scales;
        llama_set_adapters_lora(ctx_.raw(), ptrs.data(), ptrs.size(), scales.data());
        active_key_ = chosen->lora.key;
        std::lock_guard<std::mutex> lock(mu_);
        counters_.adapter_switches++;
    }
    for (auto & sp : slot_) {
        if (runnable(sp->req) && sp->req->lora.key != active_key_) sp->req->stats.adapter_waits++;
    }
    return &chosen->lora.key;
}

void Batcher::step() {
    Batch & batch = *batch_;
    batch.clear();
    const std::string * key = step_adapters();
    if (key == nullptr) return;
    // 1. One token for every running stream: they keep decoding while prompts are split; with speculation,
    //    the stream's draft after it (verified by this same decode).
    std::vector<Slot *> decoding;
    for (auto & sp : slot_) {
        Slot & s = *sp;
        s.i_batch = -1;
        s.chunk = 0;
        if (s.req) s.req->draft.clear();
        if (!s.req || s.req->paused || s.req->pending < 0 || s.req->lora.key != *key) continue;
        decoding.push_back(&s);
    }
    if (spec_) {
        std::vector<Slot *> wanting;
        for (Slot * s : decoding) {
            if (s->req->spec.speculative) wanting.push_back(s);
        }
        draft_for(wanting);
    }
    for (size_t i = 0; i < decoding.size(); ++i) {
        Request & r = *decoding[i]->req;
        const int32_t room = static_cast<int32_t>(n_batch_) - batch.size() - static_cast<int32_t>(decoding.size() - i);
        if (static_cast<int32_t>(r.draft.size()) > room) r.draft.resize(static_cast<size_t>(std::max(0, room)));
        if (static_cast<int32_t>(r.draft.size()) < std::max(1, spec_params_.n_min)) r.draft.clear();
        decoding[i]->i_batch = batch.add(r.pending, r.n_past, decoding[i]->index, true);
        for (size_t k = 0; k < r.draft.size(); ++k) {
            batch.add(r.draft[k], r.n_past + 1 + static_cast<int32_t>(k), decoding[i]->index, true);
        }
    }
    // 2. Prompt chunks fill the rest of the batch, oldest admission first.
    std::vector<Slot *> prefill;
    for (auto & sp : slot_) {
        if (sp->req && !sp->req->paused && sp->req->pending < 0 && sp->req->lora.key == *key &&
            sp->req->n_past < static_cast<int32_t>(sp->req->spec.prompt.size())) {
            prefill.push_back(sp.get());
        }
    }
    std::sort(prefill.begin(), prefill.end(), [](Slot * a, Slot * b) { return a->last_used < b->last_used; });
    for (Slot * sp : prefill) {
        Request & r = *sp->req;
        const int32_t n_prompt = static_cast<int32_t>(r.spec.prompt.size());
        const int32_t room = static_cast<int32_t>(n_batch_) - batch.size();
        if (room <= 0) break;
        const int32_t n = std::min(room, n_prompt - r.n_past);
        for (int32_t k = 0; k < n; ++k) {
            const int32_t pos = r.n_past + k;
            const bool last = pos == n_prompt - 1;
            const int32_t idx = batch.add(r.spec.prompt[pos], pos, sp->index, last);
            if (last) sp->i_batch = idx;
        }
        sp->chunk = n;
        if (!r.prefill_started) {
            r.prefill_started = true;
            r.t_prefill_start = Clock::now();
        }
    }
    if (batch.size() == 0) return;

    try {
        ctx_.decode(batch);
    } catch (const Error & e) {
        for (Slot * s : decoding) s->req->draft.clear();  // drafted again next step
        handle_decode_error(e);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        counters_.decode_steps++;
        counters_.batch_tokens += static_cast<uint64_t>(batch.size());
    }
    // 3. Advance positions, sample where logits were asked for.
    for (auto & sp : slot_) {
        Slot & s = *sp;
        if (!s.req) continue;
        Request & r = *s.req;
        if (r.pending >= 0 && s.i_batch >= 0) {
            r.n_past++;
            r.pending = -1;
        } else if (s.chunk > 0) {
            r.n_past += s.chunk;
            std::lock_guard<std::mutex> lock(mu_);
            counters_.tokens_in += static_cast<uint64_t>(s.chunk);
        }
        if (s.i_batch >= 0 && !r.draft.empty()) {
            verify_slot(s);
        } else if (s.i_batch >= 0) {
            sample_slot(s);
        }
    }
}

// A failed decode: a full KV cache (ContextOverflow) is recovered from below; any
// other failure ends every running request with an error.
void Batcher::handle_decode_error(const Error & e) {
    if (e.kind() == ErrorKind::ContextOverflow) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            counters_.kv_full++;
        }
        for (auto & s : slot_) {
            if (s->req) ctx_.kv_seq_rm(s->index, s->req->n_past, -1);  // nothing of this batch is kept
        }
        // Make room, cheapest first: the prefix caches of idle slots; then a paused request;
        // then the request admitted last gives way (saved to host memory, it resumes where it
        // was when there is room: admit() holds it back until then). Only a request that
        // fills the cache alone ends, with context_full: its own context is full.
        bool had_cache = false;
        for (auto & s : slot_) had_cache = had_cache || (!s->req && !s->cache.empty());
        if (had_cache) {
            free_idle_caches();
            return;
        }
        Slot * paused = nullptr;
        Slot * newest = nullptr;
        int running = 0;
        for (auto & s : slot_) {
            if (!s->req) continue;
            running++;
            if (s->req->paused) paused = s.get();
            if (!newest || s->last_used > newest->last_used) newest = s.get();
        }
        if (paused) {
            swap_out(*paused);
        } else if (running == 1) {
            finish(*newest, FinishReason::ContextFull);
        } else if (newest) {
            newest->req->stats.kv_preemptions++;
            {
                std::lock_guard<std::mutex> lock(mu_);
                counters_.kv_preemptions++;
            }
            swap_out(*newest);
        }
        snapshot();
        return;
    }
    for (auto & s : slot_) {
        if (s->req) finish(*s, FinishReason::Error, e.what());
    }
}

}  // namespace mullama
