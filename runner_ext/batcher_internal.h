// The Batcher's private request and slot records, shared by batcher.cpp,
// batcher_admit.cpp and batcher_step.cpp. Not part of the engine's interface.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "batcher.h"

namespace mullama {

// Cells a request holds in the KV cache once its prompt is in, plus the next token.
inline int64_t cells(const std::vector<llama_token> & prompt, int32_t n_past) {
    return std::max<int64_t>(n_past, static_cast<int64_t>(prompt.size())) + 1;
}

inline double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Batcher::Request {
    RequestSpec spec;
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<TextStream> stream;
    std::vector<llama_token> generated;
    llama_token pending = -1;           // sampled, not yet decoded
    int32_t n_past = 0;                 // tokens in the KV (prompt + decoded generated)
    bool paused = false;
    bool cancelled = false;
    std::vector<uint8_t> saved_state;   // when swapped out
    RequestStats stats;
    Clock::time_point t_submit, t_admit, t_prefill_start, t_first, t_last;
    bool prefill_started = false;
    std::vector<double> gaps;
    LoraSet lora;
    size_t gen_base = 0;                // generated tokens before the last context shift (re-evaluated as prompt)
    std::vector<llama_token> draft;     // speculative tokens in the current batch after `pending`
    bool spec_begun = false;            // its slot's speculative state was started for it
};

struct Batcher::Slot {
    int32_t index = 0;
    std::unique_ptr<Request> req;       // null: idle
    std::vector<llama_token> cache;     // tokens whose KV this sequence holds (idle slots: the prefix cache)
    int32_t i_batch = -1;               // logits index in the current batch
    int32_t chunk = 0;                  // prompt tokens added to the current batch
    std::vector<llama_token> spec_prompt;  // what the KV holds, for the drafter
    uint64_t last_used = 0;
    std::string cache_key;              // the LoRA set `cache` was computed with: only requests with it reuse it
};

// An idle slot's prefix cache moved out of the KV cache into host memory (set_cache_ram): the tokens, the
// sequence's saved state and the LoRA set it was computed with. Any free slot can load it back.
struct Batcher::Parked {
    std::vector<llama_token> tokens;
    std::vector<uint8_t> state;
    std::string key;
    uint64_t last_used = 0;
};

}  // namespace mullama
