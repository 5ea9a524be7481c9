// Per-sequence sampling: RAII over llama.cpp's common_sampler (the same chain
// llama-server uses: logit bias, penalties, top-k/p, min-p, temperature, seed,
// GBNF grammar with the fast accept-or-resample path).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"

struct common_sampler;

namespace mullama {

class Context;
class Model;
class ModelHandle;

struct SamplingParams {
    float temperature = 0.8f;      // <= 0: greedy
    int32_t top_k = 40;            // <= 0: whole vocabulary
    float top_p = 0.95f;           // 1: off
    float min_p = 0.05f;           // 0: off
    float typical_p = 1.0f;        // 1: off
    float repeat_penalty = 1.0f;   // 1: off
    int32_t repeat_last_n = 64;
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    uint32_t seed = LLAMA_DEFAULT_SEED;  // LLAMA_DEFAULT_SEED: random
    int32_t min_keep = 0;          // samplers keep at least this many candidates (0: off)
    int32_t mirostat = 0;          // 0 off, 1 Mirostat, 2 Mirostat 2.0 (replaces top-k/p... and temperature)
    float mirostat_tau = 5.0f;     // target entropy
    float mirostat_eta = 0.1f;     // learning rate
    float xtc_probability = 0.0f;  // XTC: chance to cut the most likely tokens (0: off)
    float xtc_threshold = 0.1f;    //   ... those above this probability (> 0.5: off)
    float dry_multiplier = 0.0f;   // DRY repetition penalty (0: off)
    float dry_base = 1.75f;
    int32_t dry_allowed_length = 2;
    int32_t dry_penalty_last_n = -1;   // tokens scanned (-1: the context, 0: off)
    std::vector<std::string> dry_sequence_breakers = {"\n", ":", "\"", "*"};
    float top_n_sigma = -1.0f;     // keep tokens within n standard deviations of the top logit (-1: off)
    float dynatemp_range = 0.0f;   // dynamic temperature: temperature +/- range by entropy (0: off)
    float dynatemp_exponent = 1.0f;
    std::vector<std::string> samplers;  // the chain's order by llama.cpp's names (top_k, min_p, ...); empty: default
    std::vector<std::pair<llama_token, float>> logit_bias;
    std::string grammar;           // GBNF
    std::string json_schema;       // JSON schema text, converted to GBNF
    // A tool-call grammar from the chat template (chat_tools.h: ChatPrompt), set by with_chat():
    bool tool_calls = false;       // `grammar` is the tool calls' (it is applied after the generation prompt)
    bool grammar_lazy = false;     // constrain only once a trigger appears
    std::vector<std::pair<int32_t, std::string>> grammar_triggers;  // (common_grammar_trigger_type, value)
    std::vector<std::string> preserved_tokens;
    std::string generation_prompt;
    // Thinking of a template that reasons (set by with_chat): llama.cpp's reasoning-budget sampler forces
    // the first end tag once `reasoning_budget` tokens were thought (-1: no limit); with a lazy tool grammar
    // it also keeps the grammar out of the thinking.
    int32_t reasoning_budget = -1;
    std::string reasoning_start;
    std::vector<std::string> reasoning_end;
};

// GBNF for a JSON schema (llama.cpp's json-schema-to-grammar); throws InvalidSchema.
std::string json_schema_to_gbnf(const std::string & schema_json);

class Sampler {
public:
    // ban_eog: every end-of-generation token gets a logit bias of -inf, as llama.cpp does for ignore_eos
    // (the model writes on instead of emitting an end it is told to ignore)
    Sampler(const Model & model, const SamplingParams & params, bool ban_eog = false);
    ~Sampler();
    Sampler(const Sampler &) = delete;
    Sampler & operator=(const Sampler &) = delete;

    // Sample from the logits of batch entry idx of the last decode; the token is accepted.
    llama_token sample(Context & ctx, int32_t idx);
    // Sample without taking the context's mutex (caller holds it): for the C++ loop.
    llama_token sample_locked(llama_context * ctx, int32_t idx);
    void accept(llama_token token);  // feed a token that was not sampled (e.g. prompt history)
    // Speculative verification (caller holds the context's mutex): sample at idxs[i] and accept, for as long
    // as the sample equals draft[i]; returns the accepted draft tokens plus the first token that differs
    // (or one more after the whole draft): 1 .. draft.size() + 1 tokens, each accepted in order.
    std::vector<llama_token> sample_and_accept_n_locked(llama_context * ctx, const std::vector<int32_t> & idxs,
                                                        const std::vector<llama_token> & draft);
    void reset();
    uint32_t seed() const;
    std::string chain() const;  // the samplers as llama.cpp built them, e.g. "logits -> ... -> dist"
    const SamplingParams & params() const { return params_; }

private:
    std::shared_ptr<ModelHandle> model_;  // the grammar refers to the vocabulary: keep it alive
    common_sampler * smpl_ = nullptr;
    SamplingParams params_;
};

}  // namespace mullama
