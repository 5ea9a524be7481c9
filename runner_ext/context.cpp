#include "context.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "../src/llama-ext.h"
#include "errors.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "logging.h"

namespace mullama {

ggml_type kv_type_from_string(const std::string & name) {
    static const std::pair<const char *, ggml_type> types[] = {
        {"f32", GGML_TYPE_F32},   {"f16", GGML_TYPE_F16},   {"bf16", GGML_TYPE_BF16},
        {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0}, {"q4_1", GGML_TYPE_Q4_1},
        {"q5_0", GGML_TYPE_Q5_0}, {"q5_1", GGML_TYPE_Q5_1}, {"iq4_nl", GGML_TYPE_IQ4_NL},
    };
    for (const auto & [n, t] : types) {
        if (name == n) return t;
    }
    raise(ErrorKind::InvalidArgument,
          "unknown KV cache type '" + name + "' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)");
}

namespace {

llama_flash_attn_type flash_attn_from_string(const std::string & s) {
    if (s == "auto") return LLAMA_FLASH_ATTN_TYPE_AUTO;
    if (s == "on" || s == "true" || s == "enabled") return LLAMA_FLASH_ATTN_TYPE_ENABLED;
    if (s == "off" || s == "false" || s == "disabled") return LLAMA_FLASH_ATTN_TYPE_DISABLED;
    raise(ErrorKind::InvalidArgument, "flash_attn must be 'auto', 'on' or 'off', got '" + s + "'");
}

enum llama_pooling_type pooling_from_string(const std::string & s) {
    if (s == "none") return LLAMA_POOLING_TYPE_NONE;
    if (s == "mean") return LLAMA_POOLING_TYPE_MEAN;
    if (s == "cls") return LLAMA_POOLING_TYPE_CLS;
    if (s == "last") return LLAMA_POOLING_TYPE_LAST;
    if (s == "rank") return LLAMA_POOLING_TYPE_RANK;
    if (s == "unspecified" || s.empty()) return LLAMA_POOLING_TYPE_UNSPECIFIED;
    raise(ErrorKind::InvalidArgument, "pooling must be none, mean, cls, last or rank, got '" + s + "'");
}

const char * dev_type_name(enum ggml_backend_dev_type t) {
    switch (t) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
        default: return "accel";
    }
}

}  // namespace

llama_context_params to_llama_params(const ContextParams & p, const ModelInfo & info) {
    if (p.n_seq_max < 1 || p.n_seq_max > llama_max_parallel_sequences()) {
        raise(ErrorKind::InvalidArgument, "n_seq_max must be in [1, " +
                                              std::to_string(llama_max_parallel_sequences()) + "]");
    }
    if (p.n_batch < 1 || p.n_ubatch < 1) {
        raise(ErrorKind::InvalidArgument, "n_batch and n_ubatch must be >= 1");
    }
    if (p.n_ctx > 0 && p.n_ctx < 8) {
        raise(ErrorKind::InvalidArgument, "n_ctx must be 0 (model default) or >= 8");
    }
    if (p.n_ctx > (1u << 24)) {
        raise(ErrorKind::InvalidArgument, "n_ctx too large: " + std::to_string(p.n_ctx));
    }
    if (p.n_threads < 0 || p.n_threads_batch < 0 || p.n_threads > 1024 || p.n_threads_batch > 1024) {
        raise(ErrorKind::InvalidArgument, "threads must be in [0, 1024] (0: all cores)");
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_batch = p.n_batch;
    cp.n_ubatch = std::min(p.n_ubatch, p.n_batch);
    cp.n_seq_max = p.n_seq_max;
    const int32_t hw = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
    cp.n_threads = p.n_threads > 0 ? p.n_threads : hw;
    cp.n_threads_batch = p.n_threads_batch > 0 ? p.n_threads_batch : cp.n_threads;
    cp.flash_attn_type = flash_attn_from_string(p.flash_attn);
    cp.type_k = kv_type_from_string(p.type_k);
    cp.type_v = kv_type_from_string(p.type_v);
    cp.embeddings = p.embeddings;
    cp.pooling_type = p.embeddings ? pooling_from_string(p.pooling) : LLAMA_POOLING_TYPE_UNSPECIFIED;
    cp.kv_unified = p.kv_unified;
    cp.offload_kqv = p.offload_kqv;
    cp.no_perf = true;
    if (info.n_ctx_train > 0 && p.n_ctx == 0) {
        cp.n_ctx = static_cast<uint32_t>(info.n_ctx_train);
    }
    if (p.embeddings && cp.pooling_type != LLAMA_POOLING_TYPE_NONE) {
        // Pooled embeddings need the physical batch to be a multiple of n_seq_max
        // (llama.cpp asserts otherwise). It is min(n_ctx, n_batch, n_ubatch) for a causal model.
        uint32_t ub = std::min({cp.n_ctx > 0 ? cp.n_ctx : cp.n_batch, cp.n_batch, cp.n_ubatch});
        ub = std::max(cp.n_seq_max, ub - ub % cp.n_seq_max);
        cp.n_ubatch = ub;
        cp.n_batch = std::max(cp.n_batch, ub);
    }
    return cp;
}

std::vector<DeviceMemory> memory_breakdown(const llama_model * model, const llama_context * ctx) {
    const int32_t nd = llama_model_n_devices(model);
    std::vector<DeviceMemory> out(nd + 1);
    for (int32_t i = 0; i < nd; ++i) {
        ggml_backend_dev_t dev = llama_model_get_device(model, i);
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(dev, &free, &total);
        out[i].device = ggml_backend_dev_name(dev);
        out[i].description = ggml_backend_dev_description(dev);
        out[i].type = dev_type_name(ggml_backend_dev_type(dev));
        out[i].free = free;
        out[i].total = total;
    }
    DeviceMemory & host = out.back();
    host.device = "CPU";
    host.type = "cpu";
    if (ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)) {
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(cpu, &free, &total);
        host.description = ggml_backend_dev_description(cpu);
        host.free = free;
        host.total = total;
    }
    for (const auto & [buft, mb] : llama_get_memory_breakdown(ctx)) {
        DeviceMemory * target = nullptr;
        if (ggml_backend_buft_is_host(buft)) {
            target = &host;
        } else if (ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft)) {
            for (int32_t i = 0; i < nd; ++i) {
                if (dev == llama_model_get_device(model, i)) {
                    target = &out[i];
                    break;
                }
            }
        }
        if (target == nullptr) continue;
        target->model += mb.model;
        target->context += mb.context;
        target->compute += mb.compute;
    }
    return out;
}

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
    ggml_threadpool_params tp = ggml_threadpool_params_default(cp.n_threads);
    pool_ = ggml_threadpool_new(&tp);
    if (cp.n_threads_batch != cp.n_threads) {
        ggml_threadpool_params tpb = ggml_threadpool_params_default(cp.n_threads_batch);
        pool_batch_ = ggml_threadpool_new(&tpb);
    }
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
    if (pool_batch_ != nullptr) ggml_threadpool_free(pool_batch_);
    if (pool_ != nullptr) ggml_threadpool_free(pool_);
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

void Context::kv_clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    llama_memory_clear(llama_get_memory(raw()), true);
}

bool Context::kv_seq_rm(llama_seq_id seq, llama_pos p0, llama_pos p1) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (seq != -1) check_seq(seq);
    return llama_memory_seq_rm(llama_get_memory(raw()), seq, p0, p1);
}

void Context::kv_seq_cp(llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_seq(src);
    check_seq(dst);
    llama_memory_seq_cp(llama_get_memory(raw()), src, dst, p0, p1);
}

void Context::kv_seq_keep(llama_seq_id seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_seq(seq);
    llama_memory_seq_keep(llama_get_memory(raw()), seq);
}

llama_pos Context::kv_seq_pos_min(llama_seq_id seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_seq(seq);
    return llama_memory_seq_pos_min(llama_get_memory(raw()), seq);
}

llama_pos Context::kv_seq_pos_max(llama_seq_id seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_seq(seq);
    return llama_memory_seq_pos_max(llama_get_memory(raw()), seq);
}

uint64_t Context::kv_cells_used() {
    std::lock_guard<std::mutex> lock(mutex_);
    llama_memory_t mem = llama_get_memory(raw());
    uint64_t used = 0;
    for (uint32_t s = 0; s < params_.n_seq_max; ++s) {
        const llama_pos lo = llama_memory_seq_pos_min(mem, static_cast<llama_seq_id>(s));
        const llama_pos hi = llama_memory_seq_pos_max(mem, static_cast<llama_seq_id>(s));
        if (lo >= 0 && hi >= lo) used += static_cast<uint64_t>(hi - lo + 1);
    }
    return used;
}

std::vector<uint8_t> Context::seq_state_save(llama_seq_id seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_seq(seq);
    llama_context * ctx = raw();
    std::vector<uint8_t> buf(llama_state_seq_get_size(ctx, seq));
    const size_t n = llama_state_seq_get_data(ctx, buf.data(), buf.size(), seq);
    if (n == 0 && !buf.empty()) {
        raise(ErrorKind::Engine, "failed to save the state of sequence " + std::to_string(seq));
    }
    buf.resize(n);
    return buf;
}

void Context::seq_state_load(const std::vector<uint8_t> & data, llama_seq_id seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_seq(seq);
    llama_context * ctx = raw();
    logging::Capture cap;
    if (data.empty() || llama_state_seq_set_data(ctx, data.data(), data.size(), seq) == 0) {
        raise(ErrorKind::InvalidArgument,
              "could not restore sequence state (empty, corrupt, from another model, or no room in the KV cache)" +
                  (cap.lines().empty() ? std::string() : ": " + cap.joined()));
    }
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

std::vector<DeviceMemory> Context::memory() const {
    std::lock_guard<std::mutex> lock(mutex_);
    const llama_context * ctx = raw();
    return memory_breakdown(model_->get(), ctx);
}

void Context::set_threads(int32_t n_threads, int32_t n_threads_batch) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (n_threads < 1 || n_threads_batch < 1) {
        raise(ErrorKind::InvalidArgument, "threads must be >= 1");
    }
    llama_context * ctx = raw();
    // New pools of the new sizes; the old ones go after the context lets them go.
    llama_detach_threadpool(ctx);
    if (pool_batch_ != nullptr) ggml_threadpool_free(pool_batch_);
    if (pool_ != nullptr) ggml_threadpool_free(pool_);
    ggml_threadpool_params tp = ggml_threadpool_params_default(n_threads);
    pool_ = ggml_threadpool_new(&tp);
    pool_batch_ = nullptr;
    if (n_threads_batch != n_threads) {
        ggml_threadpool_params tpb = ggml_threadpool_params_default(n_threads_batch);
        pool_batch_ = ggml_threadpool_new(&tpb);
    }
    llama_set_n_threads(ctx, n_threads, n_threads_batch);
    if (pool_ != nullptr) llama_attach_threadpool(ctx, pool_, pool_batch_ != nullptr ? pool_batch_ : pool_);
    params_.n_threads = n_threads;
    params_.n_threads_batch = n_threads_batch;
}

}  // namespace mullama
