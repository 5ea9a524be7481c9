// ContextParams -> llama_context_params: KV cache types, flash attention and
// pooling names, validation and thread defaults.
#include "context.h"

#include <algorithm>
#include <thread>

#include "errors.h"

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

llama_rope_scaling_type rope_scaling_from_string(const std::string & s) {
    if (s.empty()) return LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED;
    if (s == "none") return LLAMA_ROPE_SCALING_TYPE_NONE;
    if (s == "linear") return LLAMA_ROPE_SCALING_TYPE_LINEAR;
    if (s == "yarn") return LLAMA_ROPE_SCALING_TYPE_YARN;
    if (s == "longrope") return LLAMA_ROPE_SCALING_TYPE_LONGROPE;
    raise(ErrorKind::InvalidArgument, "rope_scaling must be none, linear, yarn or longrope, got '" + s + "'");
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
    cp.swa_full = p.swa_full;
    cp.rope_scaling_type = rope_scaling_from_string(p.rope_scaling);
    if (!(p.rope_freq_base >= 0.0f) || !(p.rope_freq_scale >= 0.0f) || p.yarn_orig_ctx < 0) {
        raise(ErrorKind::InvalidArgument, "rope_freq_base, rope_freq_scale and yarn_orig_ctx must be >= 0 (0: the model's)");
    }
    cp.rope_freq_base = p.rope_freq_base;
    cp.rope_freq_scale = p.rope_freq_scale;
    cp.yarn_orig_ctx = static_cast<uint32_t>(p.yarn_orig_ctx);
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

}  // namespace mullama
