// Speculative decoding in the batching loop (SpecParams in batcher.h): before a step, each generating
// stream that wants one gets a draft from llama.cpp's common/speculative (its n-gram drafters, then a draft
// model's "draft-simple"; one call for every stream); step() decodes the drafts after the streams' pending
// tokens in the same batch; verify_slot() samples at each drafted position, keeps the prefix the target
// agrees with plus the token it sampled after it, and removes the rest from the KV cache.
#include <algorithm>
#include <set>

#include "batcher.h"
#include "batcher_internal.h"
#include "errors.h"
#include "spec_draft.h"
#include "speculative.h"

namespace mullama {

namespace {

const std::set<std::string> kTypes = {"ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache",
                                      "draft-simple"};

bool wants_draft_model(const SpecParams & p) {
    return std::find(p.types.begin(), p.types.end(), "draft-simple") != p.types.end();
}

}  // namespace

std::unique_ptr<DraftModel> make_draft(const SpecParams & p, const Context & ctx) {
    if (p.types.empty()) return nullptr;
    for (const auto & name : p.types) {
        if (!kTypes.count(name)) {
            raise(ErrorKind::InvalidArgument, "speculative type '" + name + "' is not one of ngram-simple, "
                                              "ngram-map-k, ngram-map-k4v, ngram-mod, ngram-cache, draft-simple");
        }
    }
    if (wants_draft_model(p) != !p.draft_model.empty()) {
        raise(ErrorKind::InvalidArgument, "speculative type draft-simple and a draft model go together");
    }
    if (!(p.draft_p_min >= 0.0f && p.draft_p_min <= 1.0f)) {
        raise(ErrorKind::InvalidArgument, "speculative draft_p_min must be in [0, 1]");
    }
    if (p.draft_model.empty()) return nullptr;
    return std::make_unique<DraftModel>(p.draft_model, p.draft_gpu_layers, ctx);
}

common_speculative * make_speculative(const SpecParams & p, int32_t n_seq, llama_context * tgt, DraftModel * draft) {
    if (p.types.empty()) return nullptr;
    if (p.n_max < 1 || p.n_min < 0 || p.n_min > p.n_max) {
        raise(ErrorKind::InvalidArgument, "speculative draft bounds need 1 <= n_max and 0 <= n_min <= n_max");
    }
    if (p.ngram_n < 1 || p.ngram_m < 1 || p.ngram_min_hits < 1 || p.ngram_n > 1024 || p.ngram_m > 1024) {
        raise(ErrorKind::InvalidArgument, "speculative n-gram sizes must be in 1..1024 and min_hits >= 1");
    }
    common_params_speculative cp;
    cp.types = common_speculative_types_from_names(p.types);
    for (auto * m : {&cp.ngram_simple, &cp.ngram_map_k, &cp.ngram_map_k4v}) {
        m->size_n = static_cast<uint16_t>(p.ngram_n);
        m->size_m = static_cast<uint16_t>(p.ngram_m);
        m->min_hits = static_cast<uint16_t>(p.ngram_min_hits);
    }
    if (draft) {
        cp.draft.ctx_tgt = tgt;
        cp.draft.ctx_dft = draft->raw();
        cp.draft.n_max = p.n_max;
        cp.draft.n_min = p.n_min;
        cp.draft.p_min = p.draft_p_min;
    }
    common_speculative * spec = nullptr;
    try {
        spec = common_speculative_init(cp, static_cast<uint32_t>(n_seq));
    } catch (const std::exception & e) {  // draft-simple: a draft model whose vocabulary is not the target's
        raise(ErrorKind::InvalidArgument, std::string("speculative decoding: ") + e.what());
    }
    if (!spec) raise(ErrorKind::Engine, "llama.cpp could not set up speculative decoding");
    return spec;
}

void free_speculative(common_speculative * spec) {
    if (spec) common_speculative_free(spec);
}

// Drafts for the given slots (each generating, with a pending token), in one call to the drafters.
void Batcher::draft_for(const std::vector<Slot *> & slots) {
    std::vector<Slot *> drafting;
    for (Slot * s : slots) {
        Request & r = *s->req;
        auto & dp = common_speculative_get_draft_params(spec_, s->index);
        dp.drafting = false;
        r.draft.clear();
        // room: the slot's context (the pending token and the draft) and what the request may still generate
        int32_t n_max = std::min(spec_params_.n_max, static_cast<int32_t>(n_ctx_slot_) - r.n_past - 2);
        if (r.spec.params.max_tokens >= 0) {
            n_max = std::min(n_max, r.spec.params.max_tokens - static_cast<int32_t>(r.generated.size()) - 1);
        }
        if (n_max <= 0 || n_max < spec_params_.n_min) continue;
        s->spec_prompt = r.spec.prompt;  // what the KV holds: the prompt, the generated tokens but the pending one
        s->spec_prompt.insert(s->spec_prompt.end(), r.generated.begin() + static_cast<std::ptrdiff_t>(r.gen_base),
                              r.generated.end());
        s->spec_prompt.resize(std::min(s->spec_prompt.size(), static_cast<size_t>(r.n_past)));
        if (!r.spec_begun) {  // per-sequence drafter state starts with the request (it may come back in another slot)
            common_speculative_begin(spec_, s->index, s->spec_prompt);
            r.spec_begun = true;
        }
        dp = {true, n_max, r.n_past, r.pending, &s->spec_prompt, &r.draft};
        drafting.push_back(s);
    }
    if (drafting.empty()) return;
    if (draft_ && !sync_draft(drafting)) return;
    common_speculative_draft(spec_);
    for (Slot * s : drafting) {
        Request & r = *s->req;
        if (draft_) draft_->drafted(s->index, r.pending, r.draft);  // kept: what the target may accept
        if (static_cast<int32_t>(r.draft.size()) < std::max(1, spec_params_.n_min)) r.draft.clear();
    }
}

// The draft model's cache of each drafting stream made to hold what the target's holds (spec_draft.h);
// when it has no room, the sequences of other slots go; false: it still has none (no drafts this step).
bool Batcher::sync_draft(const std::vector<Slot *> & drafting) {
    std::vector<std::pair<int32_t, const std::vector<llama_token> *>> seqs;
    std::vector<int32_t> keep;
    for (Slot * s : drafting) {
        seqs.emplace_back(s->index, &s->spec_prompt);
        keep.push_back(s->index);
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
        try {
            draft_->sync(seqs);
            return true;
        } catch (const Error & e) {
            if (e.kind() != ErrorKind::ContextOverflow || attempt == 1) break;
            draft_->clear_except(keep);
        }
    }
    for (Slot * s : drafting) common_speculative_get_draft_params(spec_, s->index).drafting = false;
    return false;
}

// After the decode: the draft's verdict. Emits the accepted tokens and the one sampled after them.
void Batcher::verify_slot(Slot & s) {
    Request & r = *s.req;
    const auto now = Clock::now();
    const std::vector<llama_token> draft = std::move(r.draft);
    r.draft.clear();
    std::vector<int32_t> idxs(draft.size() + 1);
    for (size_t i = 0; i < idxs.size(); ++i) idxs[i] = s.i_batch + static_cast<int32_t>(i);
    std::vector<llama_token> ids;
    std::vector<TokenProb> probs;
    try {
        std::lock_guard<std::mutex> lock(ctx_.mutex());
        ids = r.sampler->sample_and_accept_n_locked(ctx_.raw(), idxs, draft);
        if (r.spec.params.n_probs >= 0) {
            for (size_t i = 0; i < ids.size(); ++i) {
                probs.push_back(token_prob(llama_get_logits_ith(ctx_.raw(), idxs[i]), model_.info().n_vocab, ids[i],
                                           r.spec.params.n_probs));
            }
        }
    } catch (const std::exception & e) {
        finish(s, FinishReason::Error, e.what());
        return;
    }
    s.i_batch = -1;
    const int32_t accepted = static_cast<int32_t>(ids.size()) - 1;
    common_speculative_accept(spec_, s.index, static_cast<uint16_t>(accepted));
    // the KV holds the pending token and the accepted draft; what the target did not accept goes
    const int32_t keep = r.n_past + accepted;  // r.n_past already counts the pending token
    ctx_.kv_seq_rm(s.index, keep, -1);
    r.n_past = keep;
    r.stats.draft_tokens += static_cast<int32_t>(draft.size());
    r.stats.draft_accepted += accepted;
    {
        std::lock_guard<std::mutex> lock(mu_);
        counters_.draft_steps++;
        counters_.draft_tokens += draft.size();
        counters_.draft_accepted += static_cast<uint64_t>(accepted);
    }
    r.pending = -1;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (!emit(s, ids[i], i < probs.size() ? std::move(probs[i]) : TokenProb{}, now)) return;
        if (i + 1 < ids.size()) r.pending = -1;  // an accepted draft token is in the KV already
    }
}

}  // namespace mullama
