// A draft model for speculative decoding (llama.cpp's "draft-simple"): a smaller model with the target's
// vocabulary, with its own context of the target's shape (one sequence per slot). Its KV cache follows the
// target's lazily: before drafting, sync() makes a sequence hold exactly the tokens the target's holds
// (the common prefix stays, the rest is decoded), so none of the batcher's KV operations (prefix reuse,
// swaps, context shifts, group copies) needs a mirror. A stale or missing entry only costs acceptance:
// the target verifies every drafted token.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "context.h"
#include "model.h"

namespace mullama {

class DraftModel {
public:
    // Loads `path` (n_gpu_layers: -1 all that fit) with a context shaped like `target`'s (n_ctx, slots,
    // batch sizes, KV types) that computes on its thread pools. Throws the model's load errors.
    DraftModel(const std::string & path, int32_t n_gpu_layers, const Context & target);

    llama_context * raw() const { return ctx_->raw(); }
    const Model & model() const { return *model_; }

    // Make each listed sequence hold exactly its tokens at positions 0..n-1. Throws ContextOverflow when the
    // draft's cache has no room; the sequences then hold their common prefix only.
    void sync(const std::vector<std::pair<int32_t, const std::vector<llama_token> *>> & seqs);
    // After llama.cpp's draft-simple decoded `pending` and the first tokens of `draft` after a synced
    // sequence: they are recorded as held, so the next sync keeps what the target accepted (upstream's
    // server decodes them again: its TAG_SPEC_AVOID_DRAFT_REEVAL).
    void drafted(int32_t seq, llama_token pending, const std::vector<llama_token> & draft);
    void truncate(int32_t seq, int32_t n);  // drop positions >= n
    void clear_except(const std::vector<int32_t> & keep);  // forget every other sequence (to make room)
    void follow_threads(const Context & target) { ctx_->borrow_threads(target); }  // after target.set_threads()

private:
    std::unique_ptr<Model> model_;
    std::unique_ptr<Context> ctx_;
    std::unique_ptr<Batch> batch_;
    std::vector<std::vector<llama_token>> held_;  // per sequence: the tokens its cache holds
};

}  // namespace mullama
