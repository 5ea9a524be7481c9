// RAII over llama_context: multi-sequence batched decode, KV-cache operations,
// per-sequence state save/restore, embeddings and the real memory breakdown.
// The primitives the C++ batching loop is built from. Thread-safe: every
// operation takes the context's mutex, so two Python threads cannot race.
#pragma once

#include <cstdint>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "llama.h"
#include "model.h"

namespace mullama {

struct ContextParams {
    uint32_t n_ctx = 4096;
    uint32_t n_batch = 2048;
    uint32_t n_ubatch = 512;
    uint32_t n_seq_max = 1;          // parallel sequences (slots)
    int32_t n_threads = 0;           // 0: all cores
    int32_t n_threads_batch = 0;     // 0: same as n_threads
    std::string flash_attn = "auto"; // auto | on | off
    std::string type_k = "f16";      // f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl
    std::string type_v = "f16";
    bool embeddings = false;
    std::string pooling = "mean";    // for embeddings: none | mean | cls | last
    bool kv_unified = true;          // one KV buffer shared by all sequences
    bool offload_kqv = true;
    bool swa_full = false;           // full-size cache for sliding-window attention layers
    std::string rope_scaling = "";   // "" (the model's) | none | linear | yarn | longrope
    float rope_freq_base = 0.0f;     // 0: the model's
    float rope_freq_scale = 0.0f;    // 0: the model's
    int32_t yarn_orig_ctx = 0;       // 0: the model's training context
};

// Bytes per device, from llama's own accounting.
struct DeviceMemory {
    std::string device;       // "CPU", "CUDA0", ...
    std::string description;
    std::string type;         // cpu | gpu | igpu | accel | rpc (a device of an RPC worker)
    uint64_t free = 0;
    uint64_t total = 0;
    uint64_t model = 0;       // weights
    uint64_t context = 0;     // KV cache (and recurrent state)
    uint64_t compute = 0;     // compute buffers
};

// One entry of a batch: a token at a position for one or more sequences.
class Batch {
public:
    explicit Batch(int32_t capacity, int32_t n_seq_max = 1);
    ~Batch();
    Batch(const Batch &) = delete;
    Batch & operator=(const Batch &) = delete;

    void clear() { batch_.n_tokens = 0; }
    // Returns the index of the entry (the logits index when want_logits).
    int32_t add(llama_token token, llama_pos pos, llama_seq_id seq, bool want_logits);
    int32_t size() const { return batch_.n_tokens; }
    int32_t capacity() const { return capacity_; }
    const llama_batch & raw() const { return batch_; }
    llama_batch view(int32_t start, int32_t count) const;

private:
    llama_batch batch_;
    int32_t capacity_;
};

class Context {
public:
    Context(const Model & model, const ContextParams & params);
    ~Context();
    Context(const Context &) = delete;
    Context & operator=(const Context &) = delete;

    void close();
    bool closed() const { return ctx_ == nullptr; }

    const ContextParams & params() const { return params_; }
    uint32_t n_ctx() const;
    uint32_t n_ctx_seq() const;
    const std::shared_ptr<ModelHandle> & model() const { return model_; }

    // Decode a batch, in n_batch-sized pieces if larger. Throws ContextOverflow
    // when the KV cache has no room, DecodeError on other failures.
    void decode(const Batch & batch);
    // Logits of batch entry i (which must have asked for logits).
    const float * logits(int32_t i);
    int32_t n_vocab() const;

    // KV cache
    void kv_clear();
    bool kv_seq_rm(llama_seq_id seq, llama_pos p0, llama_pos p1);
    void kv_seq_cp(llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1);
    void kv_seq_keep(llama_seq_id seq);
    llama_pos kv_seq_pos_min(llama_seq_id seq);
    llama_pos kv_seq_pos_max(llama_seq_id seq);
    uint64_t kv_cells_used();  // sum of sequence lengths (cells shared by seq_cp count once per sequence)

    // Per-sequence state (KV of one sequence), for pause/resume.
    std::vector<uint8_t> seq_state_save(llama_seq_id seq);
    // The same into `buf`, whose memory is reused where it is big enough (fresh pages cost a fault each).
    void seq_state_save(llama_seq_id seq, std::vector<uint8_t> & buf);
    void seq_state_load(const std::vector<uint8_t> & data, llama_seq_id seq);

    // Pooled, L2-normalised embeddings, one per input (requires embeddings=true).
    std::vector<std::vector<float>> embed(const std::vector<std::vector<llama_token>> & inputs);

    std::vector<DeviceMemory> memory() const;
    void set_threads(int32_t n_threads, int32_t n_threads_batch);
    // Compute on `owner`'s thread pools (a draft model's context: two pools polling for work would take the
    // cores from each other). Call again after owner.set_threads(); the owner must outlive this context.
    void borrow_threads(const Context & owner);

    // Exclusive use by one driver (generate() or a Batcher) for its lifetime; a second
    // driver, and the Python-facing mutating calls, get ErrorKind::Busy meanwhile.
    class Claim {
    public:
        Claim(Context & ctx, const char * who);
        ~Claim();
        Claim(const Claim &) = delete;
        Claim & operator=(const Claim &) = delete;

    private:
        Context & ctx_;
    };
    void ensure_free() const;  // throws Busy

    llama_context * raw() const;  // for the C++ loop only; throws Closed
    std::mutex & mutex() const { return mutex_; }
    void check_seq(llama_seq_id seq) const;

private:
    // Detach and free (if owned) the current pools, attach these; mutex_ held.
    void use_pools_locked(ggml_threadpool_t pool, ggml_threadpool_t pool_batch, bool own, int32_t n_threads,
                          int32_t n_threads_batch);

    std::shared_ptr<ModelHandle> model_;
    llama_context * ctx_ = nullptr;
    // Persistent CPU thread pools (decode, batch): without them ggml creates and
    // joins threads on every graph compute, which collapses under CPU contention.
    ggml_threadpool_t pool_ = nullptr;
    ggml_threadpool_t pool_batch_ = nullptr;
    bool own_pools_ = true;  // false: borrowed (borrow_threads)
    ContextParams params_;
    mutable std::mutex mutex_;
    std::atomic<bool> busy_{false};
    const char * busy_with_ = "";
};

ggml_type kv_type_from_string(const std::string & name);

// Memory per device of a context made with llama's accounting; shared by
// Context::memory() and the no-alloc fit.
std::vector<DeviceMemory> memory_breakdown(const llama_model * model, const llama_context * ctx);

// Fill llama_context_params from ours (validates, throws InvalidArgument).
llama_context_params to_llama_params(const ContextParams & p, const ModelInfo & info);

}  // namespace mullama
