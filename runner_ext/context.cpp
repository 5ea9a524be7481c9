// Batch and Context: lifecycle, thread pools, decode, logits and embeddings.
// KV/state ops are in context_kv.cpp, parameters in context_params.cpp,
// memory reporting in context_memory.cpp.
#include "context.h"

#include <algorithm>
#include <cmath>

#include "backends.h"
#include "errors.h"
#include "ggml-backend.h"
#include "logging.h"

namespace mullama {

// ---------------------------------------------------------------- Batch

Batch::Batch(int32_t capacity, int32_t n_seq_max) : capacity_(capacity) {
    if (capacity < 1 || capacity > (1 << 20)) {
        raise(ErrorKind::InvalidArgument, "batch capacity must be in [1, 1048576]");
    }
    if (n_seq_max < 1 || static_cast<size_t>(n_seq_max) > llama_max_parallel_sequences()) {
        raise(ErrorKind::InvalidArgument, "batch n_seq_max must be in [1, " +
                                              std::to_string(llama_max_parallel_sequences()) + "]");
    }
    batch_ = llama_batch_init(capacity, 0, std::max(1, n_seq_max));
}

Batch::~Batch() { llama_batch_free(batch_); }

int32_t Batch::add(llama_token token, llama_pos pos, llama_seq_id seq, bool want_logits) {
    if (batch_.n_tokens >= capacity_) {
        raise(ErrorKind::InvalidArgument, "batch is full (" + std::to_string(capacity_) + " entries)");
    }
    const int32_t i = batch_.n_tokens++;
    batch_.token[i] = token;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = want_logits ? 1 : 0;
    return i;
}

llama_batch Batch::view(int32_t start, int32_t count) const {
    llama_batch v = batch_;
    v.n_tokens = count;
    v.token += start;
    v.pos += start;
    v.n_seq_id += start;
    v.seq_id += start;
    v.logits += start;
    return v;
}

// ---------------------------------------------------------------- Context

Context::Context(const Model & model, const ContextParams & params) : model_(model.handle()), params_(params) {
    if (model.info().vocab_only) {
        raise(ErrorKind::InvalidArgument, "a vocabulary-only model has no weights: it cannot have a context");
    }
    llama_context_params cp = to_llama_params(params, model.info());
    params_.n_ctx = cp.n_ctx;
    params_.n_threads = cp.n_threads;
    params_.n_threads_batch = cp.n_threads_batch;
    params_.n_ubatch = cp.n_ubatch;
    logging::Capture cap;
    try {
        ctx_ = llama_init_from_model(model_->get(), cp);
    } catch (const std::bad_alloc &) {
        raise(ErrorKind::OutOfMemory, "out of memory creating a context of " + std::to_string(cp.n_ctx) + " tokens");
    }
    if (ctx_ == nullptr) {
        std::string cause = cap.joined();
        if (cap.contains("requires flash_attn") || cap.contains("block size") || cap.contains("blck") ||
            cap.contains("is not divisible") || cap.contains("quantized V cache")) {
            raise(ErrorKind::InvalidArgument, "KV cache types " + params.type_k + "/" + params.type_v +
                                                  " do not work with this model: " + cause);
        }
        if (cap.contains("alloc") || cap.contains("memory")) {
            raise(ErrorKind::OutOfMemory, "out of memory creating a context of " + std::to_string(cp.n_ctx) +
                                              " tokens: " + cause);
        }
        raise(ErrorKind::Engine, "failed to create context: " + cause);
    }
    // As llama-server does: one pool for single-token decodes, one for batches.
    pool_ = threadpool_new(cp.n_threads);
    if (cp.n_threads_batch != cp.n_threads) pool_batch_ = threadpool_new(cp.n_threads_batch);
    if (pool_ != nullptr) {
        llama_attach_threadpool(ctx_, pool_, pool_batch_ != nullptr ? pool_batch_ : pool_);
    }
}

Context::~Context() { close(); }

void Context::close() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ctx_ != nullptr) {
        llama_detach_threadpool(ctx_);
        llama_free(ctx_);
        ctx_ = nullptr;
    }
    if (own_pools_) {
        threadpool_free(pool_batch_);
        threadpool_free(pool_);
    }
    pool_batch_ = pool_ = nullptr;
    pool_ = pool_batch_ = nullptr;
    model_.reset();
}

Context::Claim::Claim(Context & ctx, const char * who) : ctx_(ctx) {
    bool expected = false;
    if (!ctx.busy_.compare_exchange_strong(expected, true)) {
        raise(ErrorKind::Busy, std::string("context is in use by ") + ctx.busy_with_);
    }
    ctx.busy_with_ = who;
}

Context::Claim::~Claim() { ctx_.busy_.store(false); }

void Context::ensure_free() const {
    if (busy_.load()) {
        raise(ErrorKind::Busy, std::string("context is in use by ") + busy_with_ +
                                   "; its KV cache and decode belong to that driver");
    }
}

llama_context * Context::raw() const {
    if (ctx_ == nullptr) {
        raise(ErrorKind::Closed, "context is closed");
    }
    return ctx_;
}

uint32_t Context::n_ctx() const { return llama_n_ctx(raw()); }

uint32_t Context::n_ctx_seq() const { return llama_n_ctx_seq(raw()); }

int32_t Context::n_vocab() const { return llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(raw()))); }

void Context::check_seq(llama_seq_id seq) const {
    if (seq < 0 || static_cast<uint32_t>(seq) >= params_.n_seq_max) {
        raise(ErrorKind::InvalidArgument, "sequence id " + std::to_string(seq) + " out of range [0, " +
                                              std::to_string(params_.n_seq_max) + ")");
    }
}

void Context::decode(const Batch & batch) {
    std::lock_guard<std::mutex> lock(mutex_);
    llama_context * ctx = raw();
    const llama_batch & b = batch.raw();
    if (b.n_tokens == 0) {
        return;
    }
    if (static_cast<uint32_t>(b.n_tokens) > llama_n_batch(ctx)) {
        raise(ErrorKind::InvalidArgument, "batch of " + std::to_string(b.n_tokens) + " tokens exceeds n_batch " +
                                              std::to_string(llama_n_batch(ctx)));
    }
    const int32_t n_vocab = llama_vocab_n_tokens(model_->vocab());
    for (int32_t i = 0; i < b.n_tokens; ++i) {
        if (b.token[i] < 0 || b.token[i] >= n_vocab) {
            raise(ErrorKind::InvalidArgument, "token id " + std::to_string(b.token[i]) + " out of range");
        }
        check_seq(b.seq_id[i][0]);
        if (b.pos[i] < 0 || static_cast<uint32_t>(b.pos[i]) >= llama_n_ctx_seq(ctx)) {
            raise(ErrorKind::ContextOverflow, "position " + std::to_string(b.pos[i]) +
                                                  " is outside the context window of " +
                                                  std::to_string(llama_n_ctx_seq(ctx)) + " tokens");
        }
    }
    logging::Capture cap;
    const int32_t rc = llama_decode(ctx, b);
    if (rc == 0) {
        return;
    }
    if (rc == 1) {
        raise(ErrorKind::ContextOverflow, "no room in the KV cache for " + std::to_string(b.n_tokens) +
                                              " tokens (n_ctx " + std::to_string(llama_n_ctx(ctx)) + ")");
    }
    if (rc == -1) {
        raise(ErrorKind::InvalidArgument, "invalid batch: " + cap.joined());
    }
    raise(ErrorKind::DecodeError, "llama_decode failed (" + std::to_string(rc) + "): " + cap.joined());
}

const float * Context::logits(int32_t i) {
    const float * p = llama_get_logits_ith(raw(), i);
    if (p == nullptr) {
        raise(ErrorKind::InvalidArgument, "no logits for batch entry " + std::to_string(i));
    }
    return p;
}

std::vector<std::vector<float>> Context::embed(const std::vector<std::vector<llama_token>> & inputs) {
    raw();  // throws Closed
    if (!params_.embeddings) {
        raise(ErrorKind::InvalidArgument, "context was not created with embeddings=True");
    }
    const uint32_t n_batch = params_.n_batch;
    const int32_t n_embd = llama_model_n_embd_out(model_->get()) > 0 ? llama_model_n_embd_out(model_->get())
                                                                      : llama_model_n_embd(model_->get());
    for (const auto & in : inputs) {
        if (in.empty()) {
            raise(ErrorKind::InvalidArgument, "cannot embed an empty input");
        }
        if (in.size() > n_batch || in.size() > n_ctx_seq()) {
            raise(ErrorKind::ContextOverflow, "input of " + std::to_string(in.size()) +
                                                  " tokens exceeds the batch/context size " +
                                                  std::to_string(std::min(n_batch, n_ctx_seq())));
        }
    }
    std::vector<std::vector<float>> out;
    out.reserve(inputs.size());
    Batch batch(static_cast<int32_t>(n_batch), static_cast<int32_t>(params_.n_seq_max));
    size_t next = 0;
    while (next < inputs.size()) {
        batch.clear();
        std::vector<size_t> group;
        while (next < inputs.size() && group.size() < params_.n_seq_max &&
               batch.size() + inputs[next].size() <= n_batch) {
            const auto seq = static_cast<llama_seq_id>(group.size());
            for (size_t p = 0; p < inputs[next].size(); ++p) {
                batch.add(inputs[next][p], static_cast<llama_pos>(p), seq, true);
            }
            group.push_back(next++);
        }
        kv_clear();
        decode(batch);
        std::lock_guard<std::mutex> lock(mutex_);
        for (size_t g = 0; g < group.size(); ++g) {
            const float * e = llama_get_embeddings_seq(raw(), static_cast<llama_seq_id>(g));
            if (e == nullptr) {
                raise(ErrorKind::Engine, "no pooled embedding (pooling type none?)");
            }
            std::vector<float> v(e, e + n_embd);
            double norm = 0.0;
            for (float x : v) norm += static_cast<double>(x) * x;
            norm = std::sqrt(norm);
            if (norm > 0) {
                for (float & x : v) x = static_cast<float>(x / norm);
            }
            out.push_back(std::move(v));
        }
    }
    kv_clear();
    return out;
}

void Context::set_threads(int32_t n_threads, int32_t n_threads_batch) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (n_threads < 1 || n_threads_batch < 1) {
        raise(ErrorKind::InvalidArgument, "threads must be >= 1");
    }
    // New pools of the new sizes; the old ones go after the context lets them go.
    ggml_threadpool_t pool = threadpool_new(n_threads);
    ggml_threadpool_t pool_batch = n_threads_batch != n_threads ? threadpool_new(n_threads_batch) : nullptr;
    use_pools_locked(pool, pool_batch, true, n_threads, n_threads_batch);
}

void Context::borrow_threads(const Context & owner) {
    std::lock_guard<std::mutex> lock(mutex_);
    use_pools_locked(owner.pool_, owner.pool_batch_, false, owner.params_.n_threads, owner.params_.n_threads_batch);
}

void Context::use_pools_locked(ggml_threadpool_t pool, ggml_threadpool_t pool_batch, bool own, int32_t n_threads,
                               int32_t n_threads_batch) {
    llama_context * ctx = raw();
    llama_detach_threadpool(ctx);
    if (own_pools_) {
        threadpool_free(pool_batch_);
        threadpool_free(pool_);
    }
    own_pools_ = own;
    pool_ = pool;
    pool_batch_ = pool_batch;
    llama_set_n_threads(ctx, n_threads, n_threads_batch);
    if (pool_ != nullptr) llama_attach_threadpool(ctx, pool_, pool_batch_ != nullptr ? pool_batch_ : pool_);
    params_.n_threads = n_threads;
    params_.n_threads_batch = n_threads_batch;
}

}  // namespace mullama
