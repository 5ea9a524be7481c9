// Lock-step generation of one or more sequences over one Context: every step
// decodes one token of every active sequence in a single batch. The building
// blocks (Batch, Sampler, TextStream) are the ones the continuous-batching
// loop uses; this is the simple synchronous driver for the CLI, tests and
// benchmarks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "context.h"
#include "finish_reason.h"
#include "model.h"
#include "sampler.h"

namespace mullama {

struct GenerateParams {
    int32_t max_tokens = 128;         // < 0: until the context is full
    std::vector<std::string> stop;
    bool ignore_eos = false;
    int32_t n_probs = -1;             // >= 0: each token's log-probability and the n_probs most likely (batcher)
    SamplingParams sampling;
};

struct GenerateResult {
    std::string text;
    std::vector<llama_token> tokens;
    FinishReason finish_reason = FinishReason::None;  // Stop | Length | ContextFull | Cancelled
    std::string stop_string;          // the stop string that ended it, if any
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
    double prompt_ms = 0;             // prefill of the whole batch of prompts
    double ttft_ms = 0;               // from start to the first sampled token
    double decode_ms = 0;             // from the first token to the last
};

// Called after each token with the sequence index, the token and the text that
// became safe to emit (may be empty). Return false to cancel that sequence.
using TokenCallback = std::function<bool(size_t index, llama_token token, const std::string & text)>;

// Runs prompts[i] as sequence i (i < n_seq_max); clears those sequences first.
std::vector<GenerateResult> generate(Context & ctx, const Model & model,
                                     const std::vector<std::vector<llama_token>> & prompts,
                                     const std::vector<GenerateParams> & params, const TokenCallback & on_token);

}  // namespace mullama
