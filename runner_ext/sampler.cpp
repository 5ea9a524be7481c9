#include "sampler.h"

#include <cmath>
#include <stdexcept>

#include "common.h"
#include "context.h"
#include "errors.h"
#include "json-schema-to-grammar.h"
#include "json.h"
#include "logging.h"
#include "model.h"
#include "sampling.h"

namespace mullama {

std::string json_schema_to_gbnf(const std::string & schema_json) {
    try {
        return json_schema_to_grammar(common_json::parse(schema_json));
    } catch (const std::exception & e) {
        raise(ErrorKind::InvalidSchema, std::string("invalid JSON schema: ") + e.what());
    }
}

namespace {

void check_finite(float v, const char * name) {
    if (!std::isfinite(v)) {
        raise(ErrorKind::InvalidArgument, std::string(name) + " must be a finite number");
    }
}

void check_range(float v, float lo, float hi, const char * name) {
    check_finite(v, name);
    if (v < lo || v > hi) {
        raise(ErrorKind::InvalidArgument, std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                                              std::to_string(hi) + "]");
    }
}

// The samplers beyond OpenAI's: ranges as llama.cpp documents them.
void check_extras(const SamplingParams & p) {
    if (p.mirostat < 0 || p.mirostat > 2) raise(ErrorKind::InvalidArgument, "mirostat must be 0, 1 or 2");
    check_range(p.mirostat_tau, 0.0f, 1e6f, "mirostat_tau");
    check_range(p.mirostat_eta, 0.0f, 1.0f, "mirostat_eta");
    check_range(p.xtc_probability, 0.0f, 1.0f, "xtc_probability");
    check_range(p.xtc_threshold, 0.0f, 1.0f, "xtc_threshold");
    check_range(p.dry_multiplier, 0.0f, 1e6f, "dry_multiplier");
    check_range(p.dry_base, 1.0f, 1e6f, "dry_base");
    check_range(p.dynatemp_range, 0.0f, 1e6f, "dynatemp_range");
    check_range(p.dynatemp_exponent, 0.0f, 1e6f, "dynatemp_exponent");
    check_range(p.top_n_sigma, -1.0f, 1e6f, "top_n_sigma");  // <= 0: off
    if (p.min_keep < 0) raise(ErrorKind::InvalidArgument, "min_keep must be >= 0");
    if (p.dry_allowed_length < 0) raise(ErrorKind::InvalidArgument, "dry_allowed_length must be >= 0");
    if (p.dry_penalty_last_n < -1) raise(ErrorKind::InvalidArgument, "dry_penalty_last_n must be >= -1");
    if (p.dry_sequence_breakers.size() > 64) raise(ErrorKind::InvalidArgument, "at most 64 dry_sequence_breakers");
    for (const auto & b : p.dry_sequence_breakers) {
        if (b.empty() || b.size() > 64) {
            raise(ErrorKind::InvalidArgument, "each dry_sequence_breaker must have 1 to 64 bytes");
        }
    }
}

// The chain's order from llama.cpp's sampler names; an unknown name is an error (llama.cpp only warns).
std::vector<common_sampler_type> sampler_order(const std::vector<std::string> & names) {
    if (names.size() > 32) raise(ErrorKind::InvalidArgument, "at most 32 samplers");
    std::vector<common_sampler_type> out;
    for (const auto & name : names) {
        std::vector<common_sampler_type> one;
        {
            logging::Capture cap;  // llama.cpp warns about an unknown name; it is an error here
            one = common_sampler_types_from_names({name});
        }
        if (one.empty()) {
            raise(ErrorKind::InvalidArgument, "unknown sampler '" + name + "' (known: penalties, dry, top_n_sigma, "
                                              "top_k, typ_p, top_p, min_p, xtc, temperature, adaptive_p)");
        }
        out.push_back(one.front());
    }
    return out;
}

common_params_sampling to_common(const SamplingParams & p, int32_t n_vocab) {
    check_finite(p.temperature, "temperature");
    check_finite(p.top_p, "top_p");
    check_finite(p.min_p, "min_p");
    check_finite(p.typical_p, "typical_p");
    check_finite(p.presence_penalty, "presence_penalty");
    check_finite(p.frequency_penalty, "frequency_penalty");
    if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty)) {
        raise(ErrorKind::InvalidArgument, "repeat_penalty must be a finite number > 0");
    }
    if (p.top_p < 0.0f || p.top_p > 1.0f) raise(ErrorKind::InvalidArgument, "top_p must be in [0, 1]");
    if (p.min_p < 0.0f || p.min_p > 1.0f) raise(ErrorKind::InvalidArgument, "min_p must be in [0, 1]");
    if (p.repeat_last_n < -1) raise(ErrorKind::InvalidArgument, "repeat_last_n must be >= -1");
    if (p.reasoning_budget < -1) raise(ErrorKind::InvalidArgument, "reasoning_budget must be >= -1");
    check_extras(p);
    if (!p.grammar.empty() && !p.json_schema.empty()) {
        raise(ErrorKind::InvalidArgument, "give either grammar or json_schema, not both");
    }
    common_params_sampling c;
    c.temp = p.temperature;
    c.top_k = p.top_k;
    c.top_p = p.top_p;
    c.min_p = p.min_p;
    c.typ_p = p.typical_p;
    c.penalty_repeat = p.repeat_penalty;
    c.penalty_last_n = p.repeat_last_n;
    c.penalty_present = p.presence_penalty;
    c.penalty_freq = p.frequency_penalty;
    c.seed = p.seed;
    c.no_perf = true;
    c.min_keep = p.min_keep;
    c.mirostat = p.mirostat;
    c.mirostat_tau = p.mirostat_tau;
    c.mirostat_eta = p.mirostat_eta;
    c.xtc_probability = p.xtc_probability;
    c.xtc_threshold = p.xtc_threshold;
    c.dry_multiplier = p.dry_multiplier;
    c.dry_base = p.dry_base;
    c.dry_allowed_length = p.dry_allowed_length;
    c.dry_penalty_last_n = p.dry_penalty_last_n;
    c.dry_sequence_breakers = p.dry_sequence_breakers;
    c.top_n_sigma = p.top_n_sigma;
    c.dynatemp_range = p.dynatemp_range;
    c.dynatemp_exponent = p.dynatemp_exponent;
    if (!p.samplers.empty()) c.samplers = sampler_order(p.samplers);
    for (const auto & [tok, bias] : p.logit_bias) {
        if (tok < 0 || tok >= n_vocab) {
            raise(ErrorKind::InvalidArgument, "logit_bias token " + std::to_string(tok) + " out of range");
        }
        if (std::isnan(bias)) raise(ErrorKind::InvalidArgument, "logit_bias value is NaN");
        c.logit_bias.push_back({tok, bias});
    }
    if (!p.json_schema.empty()) {
        c.grammar = common_grammar(COMMON_GRAMMAR_TYPE_OUTPUT_FORMAT, json_schema_to_gbnf(p.json_schema));
    } else if (!p.grammar.empty()) {
        c.grammar = common_grammar(p.tool_calls ? COMMON_GRAMMAR_TYPE_TOOL_CALLS : COMMON_GRAMMAR_TYPE_USER,
                                   p.grammar);
    }
    c.grammar_lazy = p.grammar_lazy;
    c.generation_prompt = p.generation_prompt;
    c.reasoning_budget_tokens = p.reasoning_budget;
    return c;
}

// Preserved tokens and trigger words that are one token become token ids (as llama-server does).
void resolve_tokens(common_params_sampling & c, const SamplingParams & p, const llama_vocab * vocab) {
    for (const auto & text : p.preserved_tokens) {
        const auto ids = common_tokenize(vocab, text, false, true);
        if (ids.size() == 1) c.preserved_tokens.insert(ids[0]);
    }
    for (const auto & [type, value] : p.grammar_triggers) {
        common_grammar_trigger t;
        t.type = static_cast<common_grammar_trigger_type>(type);
        t.value = value;
        if (t.type == COMMON_GRAMMAR_TRIGGER_TYPE_WORD) {
            const auto ids = common_tokenize(vocab, value, false, true);
            if (ids.size() == 1 && c.preserved_tokens.count(ids[0])) {
                t.type = COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN;
                t.token = ids[0];
            }
        }
        c.grammar_triggers.push_back(std::move(t));
    }
    // the thinking tags as token sequences; the first end tag is what the budget forces (as llama-server)
    if (!p.reasoning_start.empty() && !p.reasoning_end.empty()) {
        c.reasoning_budget_start = common_tokenize(vocab, p.reasoning_start, false, true);
        for (const auto & tag : p.reasoning_end) {
            if (!tag.empty()) c.reasoning_budget_end.push_back(common_tokenize(vocab, tag, false, true));
        }
        if (!c.reasoning_budget_end.empty()) c.reasoning_budget_forced = c.reasoning_budget_end.front();
    }
}

}  // namespace

Sampler::Sampler(const Model & model, const SamplingParams & params, bool ban_eog)
    : model_(model.handle()), params_(params) {
    common_params_sampling cp = to_common(params, llama_vocab_n_tokens(model_->vocab()));
    if (ban_eog) {
        for (llama_token t : model_->eog_tokens()) cp.logit_bias.push_back({t, -INFINITY});
    }
    resolve_tokens(cp, params, model_->vocab());
    if (cp.dry_penalty_last_n == -1) cp.dry_penalty_last_n = llama_model_n_ctx_train(model_->get());  // as llama-server
    logging::Capture cap;
    // llama.cpp's grammar parser prints its error, and the whole grammar, straight to
    // stderr: keep user text out of the logs and put the reason into the exception.
    std::unique_ptr<logging::StderrCapture> err;
    if (!cp.grammar.grammar.empty()) err = std::make_unique<logging::StderrCapture>();
    try {
        smpl_ = common_sampler_init(model_->get(), cp);
    } catch (const Error &) {
        throw;
    } catch (const std::exception & e) {
        std::string reason = e.what();
        if (err) {
            const std::string printed = err->finish();
            const auto at = printed.find("error parsing grammar: ");
            if (at != std::string::npos) {
                reason = printed.substr(at + 23, printed.find('\n', at) - at - 23);
            }
        }
        if (std::string(e.what()).find("grammar") != std::string::npos) {
            raise(params.json_schema.empty() ? ErrorKind::InvalidGrammar : ErrorKind::InvalidSchema,
                  "invalid grammar: " + reason);
        }
        raise(ErrorKind::InvalidArgument, reason);
    }
    if (smpl_ == nullptr) {
        raise(ErrorKind::InvalidGrammar, "could not create sampler: " + cap.joined());
    }
}

Sampler::~Sampler() {
    if (smpl_ != nullptr) {
        common_sampler_free(smpl_);
    }
}

llama_token Sampler::sample(Context & ctx, int32_t idx) {
    std::lock_guard<std::mutex> lock(ctx.mutex());
    return sample_locked(ctx.raw(), idx);
}

std::vector<llama_token> Sampler::sample_and_accept_n_locked(llama_context * ctx, const std::vector<int32_t> & idxs,
                                                            const std::vector<llama_token> & draft) {
    if (idxs.size() != draft.size() + 1) raise(ErrorKind::InvalidArgument, "speculation needs one index per draft token + 1");
    for (int32_t idx : idxs) {
        if (llama_get_logits_ith(ctx, idx) == nullptr) {
            raise(ErrorKind::InvalidArgument, "batch entry " + std::to_string(idx) + " of the last decode has no logits");
        }
    }
    try {
        return common_sampler_sample_and_accept_n(smpl_, ctx, std::vector<int>(idxs.begin(), idxs.end()), draft);
    } catch (const std::exception & e) {
        raise(ErrorKind::Engine, std::string("sampling failed: ") + e.what());
    }
}

llama_token Sampler::sample_locked(llama_context * ctx, int32_t idx) {
    // common_sampler asserts on missing logits: check first so bad input raises instead.
    if (llama_get_logits_ith(ctx, idx) == nullptr) {
        raise(ErrorKind::InvalidArgument, "batch entry " + std::to_string(idx) + " of the last decode has no logits");
    }
    llama_token tok;
    try {
        tok = common_sampler_sample(smpl_, ctx, idx);
    } catch (const std::exception & e) {
        raise(ErrorKind::Engine, std::string("sampling failed: ") + e.what());
    }
    common_sampler_accept(smpl_, tok, true);
    return tok;
}

void Sampler::accept(llama_token token) {
    if (token < 0 || token >= llama_vocab_n_tokens(model_->vocab())) {
        raise(ErrorKind::InvalidArgument, "token id " + std::to_string(token) + " out of range");
    }
    common_sampler_accept(smpl_, token, false);
}

void Sampler::reset() { common_sampler_reset(smpl_); }

uint32_t Sampler::seed() const { return common_sampler_get_seed(smpl_); }

std::string Sampler::chain() const { return common_sampler_print(smpl_); }

}  // namespace mullama
