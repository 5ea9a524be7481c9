#include "spec_draft.h"

#include <algorithm>

#include "errors.h"

namespace mullama {

DraftModel::DraftModel(const std::string & path, int32_t n_gpu_layers, const Context & target) {
    ModelParams mp;
    mp.n_gpu_layers = n_gpu_layers;
    model_ = std::make_unique<Model>(path, mp);
    ContextParams cp = target.params();
    cp.n_ctx = target.n_ctx();
    cp.embeddings = false;
    cp.rope_scaling = "";  // the target's RoPE overrides are for the target's training context
    cp.rope_freq_base = 0.0f;
    cp.rope_freq_scale = 0.0f;
    cp.yarn_orig_ctx = 0;
    ctx_ = std::make_unique<Context>(*model_, cp);
    ctx_->borrow_threads(target);
    batch_ = std::make_unique<Batch>(static_cast<int32_t>(cp.n_batch), static_cast<int32_t>(cp.n_seq_max));
    held_.resize(cp.n_seq_max);
}

void DraftModel::sync(const std::vector<std::pair<int32_t, const std::vector<llama_token> *>> & seqs) {
    // what stays: each sequence's common prefix with what it must hold
    std::vector<size_t> done(seqs.size());  // per sequence: the tokens its cache holds (or are in `batch`)
    for (size_t i = 0; i < seqs.size(); ++i) {
        auto & held = held_.at(static_cast<size_t>(seqs[i].first));
        const auto & want = *seqs[i].second;
        done[i] = static_cast<size_t>(std::mismatch(held.begin(), held.end(), want.begin(), want.end()).first -
                                      held.begin());
        if (done[i] < held.size()) truncate(seqs[i].first, static_cast<int32_t>(done[i]));
    }
    // the rest, decoded in batches of n_batch; the cache's contents are recorded after each decode
    Batch & batch = *batch_;
    auto flush = [&] {
        if (batch.size() == 0) return;
        try {
            ctx_->decode(batch);
        } catch (...) {
            for (const auto & entry : seqs) {  // the cache as last recorded; what the failed decode wrote goes
                truncate(entry.first, static_cast<int32_t>(held_.at(static_cast<size_t>(entry.first)).size()));
            }
            batch.clear();
            throw;
        }
        for (size_t i = 0; i < seqs.size(); ++i) {
            const auto & want = *seqs[i].second;
            auto & held = held_[static_cast<size_t>(seqs[i].first)];
            held.assign(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(done[i]));
        }
        batch.clear();
    };
    for (size_t i = 0; i < seqs.size(); ++i) {
        const auto & want = *seqs[i].second;
        while (done[i] < want.size()) {
            if (batch.size() == batch.capacity()) flush();
            const bool last = batch.size() + 1 == batch.capacity() || done[i] + 1 == want.size();
            batch.add(want[done[i]], static_cast<llama_pos>(done[i]), seqs[i].first, last);
            ++done[i];
        }
    }
    flush();
}

void DraftModel::drafted(int32_t seq, llama_token pending, const std::vector<llama_token> & draft) {
    auto & held = held_.at(static_cast<size_t>(seq));
    const size_t n_kv = static_cast<size_t>(ctx_->kv_seq_pos_max(seq) + 1);  // what the draft's decodes wrote
    if (n_kv <= held.size()) return;
    held.push_back(pending);
    held.insert(held.end(), draft.begin(), draft.end());
    if (held.size() > n_kv) held.resize(n_kv);
    if (held.size() < n_kv) ctx_->kv_seq_rm(seq, static_cast<llama_pos>(held.size()), -1);  // a draft dropped (n_min)
}

void DraftModel::truncate(int32_t seq, int32_t n) {
    ctx_->kv_seq_rm(seq, n, -1);
    auto & held = held_.at(static_cast<size_t>(seq));
    if (static_cast<size_t>(n) < held.size()) held.resize(static_cast<size_t>(n));
}

void DraftModel::clear_except(const std::vector<int32_t> & keep) {
    for (size_t seq = 0; seq < held_.size(); ++seq) {
        if (std::find(keep.begin(), keep.end(), static_cast<int32_t>(seq)) != keep.end()) continue;
        ctx_->kv_seq_rm(static_cast<llama_seq_id>(seq), -1, -1);
        held_[seq].clear();
    }
}

}  // namespace mullama
