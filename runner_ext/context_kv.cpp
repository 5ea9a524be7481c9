// Context: KV cache operations and per-sequence state save/restore.
#include "context.h"

#include <string>

#include "errors.h"
#include "logging.h"

namespace mullama {

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
    std::vector<uint8_t> buf;
    seq_state_save(seq, buf);
    return buf;
}

void Context::seq_state_save(llama_seq_id seq, std::vector<uint8_t> & buf) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_seq(seq);
    llama_context * ctx = raw();
    buf.resize(llama_state_seq_get_size(ctx, seq));
    const size_t n = llama_state_seq_get_data(ctx, buf.data(), buf.size(), seq);
    if (n == 0 && !buf.empty()) {
        raise(ErrorKind::Engine, "failed to save the state of sequence " + std::to_string(seq));
    }
    buf.resize(n);
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

}  // namespace mullama
