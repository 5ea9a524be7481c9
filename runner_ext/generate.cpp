#include "generate.h"

#include <chrono>
#include <memory>

#include "errors.h"
#include "text_stream.h"

namespace mullama {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Seq {
    size_t index;
    llama_seq_id id;
    const GenerateParams * params;
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<TextStream> stream;
    GenerateResult result;
    llama_pos pos = 0;
    int32_t logits_idx = -1;
    bool done = false;
    Clock::time_point first_token;
};

}  // namespace

std::vector<GenerateResult> generate(Context & ctx, const Model & model,
                                     const std::vector<std::vector<llama_token>> & prompts,
                                     const std::vector<GenerateParams> & params, const TokenCallback & on_token) {
    if (prompts.size() != params.size()) {
        raise(ErrorKind::InvalidArgument, "prompts and params differ in length");
    }
    if (prompts.empty()) {
        return {};
    }
    if (prompts.size() > ctx.params().n_seq_max) {
        raise(ErrorKind::InvalidArgument, std::to_string(prompts.size()) + " prompts but the context has only " +
                                              std::to_string(ctx.params().n_seq_max) + " sequences (n_seq_max)");
    }
    Context::Claim claim(ctx, "generate()");
    const uint32_t n_ctx_seq = ctx.n_ctx_seq();
    const uint32_t n_batch = ctx.params().n_batch;
    size_t total_prompt = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (prompts[i].empty()) {
            raise(ErrorKind::InvalidArgument, "prompt " + std::to_string(i) + " is empty");
        }
        if (prompts[i].size() >= n_ctx_seq) {
            raise(ErrorKind::ContextOverflow, "prompt of " + std::to_string(prompts[i].size()) +
                                                  " tokens does not fit the context of " + std::to_string(n_ctx_seq) +
                                                  " tokens (it needs room for at least one generated token)");
        }
        total_prompt += prompts[i].size();
    }
    if (ctx.params().kv_unified && total_prompt >= ctx.n_ctx()) {
        raise(ErrorKind::ContextOverflow, "prompts of " + std::to_string(total_prompt) +
                                              " tokens in all do not fit the context of " +
                                              std::to_string(ctx.n_ctx()) + " tokens");
    }

    std::vector<Seq> seqs(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        Seq & s = seqs[i];
        s.index = i;
        s.id = static_cast<llama_seq_id>(i);
        s.params = &params[i];
        s.sampler = std::make_unique<Sampler>(model, params[i].sampling, params[i].ignore_eos);
        s.stream = std::make_unique<TextStream>(params[i].stop);
        s.result.prompt_tokens = static_cast<int32_t>(prompts[i].size());
        ctx.kv_seq_rm(s.id, -1, -1);
    }

    const auto t_start = Clock::now();
    Batch batch(static_cast<int32_t>(n_batch), static_cast<int32_t>(seqs.size()));

    // Prefill: all prompts, n_batch tokens per decode; logits for each last token.
    {
        size_t si = 0, ti = 0;
        while (si < seqs.size()) {
            batch.clear();
            while (si < seqs.size() && batch.size() < static_cast<int32_t>(n_batch)) {
                const auto & p = prompts[si];
                const bool last = ti + 1 == p.size();
                const int32_t idx = batch.add(p[ti], static_cast<llama_pos>(ti), seqs[si].id, last);
                if (last) {
                    seqs[si].logits_idx = idx;
                    seqs[si].pos = static_cast<llama_pos>(p.size());
                    ++si;
                    ti = 0;
                } else {
                    ++ti;
                }
            }
            ctx.decode(batch);
            // Sample now: the next chunk's decode replaces these logits.
            // Sample every sequence whose logits are in this chunk.
            for (auto & s : seqs) {
                if (s.logits_idx < 0 || !s.result.tokens.empty() || s.done) continue;
                const llama_token tok = s.sampler->sample(ctx, s.logits_idx);
                s.logits_idx = -2;  // sampled; the token is appended below
                s.result.tokens.push_back(tok);
            }
        }
    }
    const double prompt_ms = ms_since(t_start);

    auto finish = [&](Seq & s, FinishReason reason) {
        s.done = true;
        s.result.finish_reason = reason;
        if (reason != FinishReason::Stop || s.result.stop_string.empty()) {
            std::string rest = s.stream->flush();
            if (!rest.empty()) {
                s.result.text += rest;
                if (on_token && !on_token(s.index, -1, rest)) {
                    // cancellation after the end changes nothing
                }
            }
        }
        s.result.decode_ms = ms_since(s.first_token);
    };

    // Handle a freshly sampled token: EOS, text, stop strings, limits.
    auto handle = [&](Seq & s, llama_token tok) {
        if (s.result.completion_tokens == 0) {
            s.first_token = Clock::now();
            s.result.ttft_ms = ms_since(t_start);
        }
        if (!s.params->ignore_eos && model.is_eog(tok)) {
            s.result.tokens.pop_back();
            finish(s, FinishReason::Stop);
            return;
        }
        s.result.completion_tokens++;
        const std::string text = s.stream->push(model.token_to_piece(tok, false));
        s.result.text += text;
        if (on_token && !on_token(s.index, tok, text)) {
            finish(s, FinishReason::Cancelled);
            return;
        }
        if (s.stream->stopped()) {
            s.result.stop_string = s.stream->matched_stop();
            finish(s, FinishReason::Stop);
            return;
        }
        if (s.params->max_tokens >= 0 && s.result.completion_tokens >= s.params->max_tokens) {
            finish(s, FinishReason::Length);
            return;
        }
        if (static_cast<uint32_t>(s.pos) >= n_ctx_seq) {  // no position left to decode this token
            finish(s, FinishReason::ContextFull);
        }
    };

    for (auto & s : seqs) {
        s.result.prompt_ms = prompt_ms;
        if (s.params->max_tokens == 0) {
            s.result.tokens.clear();
            s.first_token = Clock::now();
            finish(s, FinishReason::Length);
            continue;
        }
        handle(s, s.result.tokens.back());
    }

    for (;;) {
        batch.clear();
        for (auto & s : seqs) {
            if (s.done) continue;
            s.logits_idx = batch.add(s.result.tokens.back(), s.pos, s.id, true);
            s.pos++;
        }
        if (batch.size() == 0) {
            break;
        }
        try {
            ctx.decode(batch);
        } catch (const Error & e) {
            if (e.kind() != ErrorKind::ContextOverflow) throw;
            for (auto & s : seqs) {
                if (!s.done) finish(s, FinishReason::ContextFull);
            }
            break;
        }
        for (auto & s : seqs) {
            if (s.done) continue;
            const llama_token tok = s.sampler->sample(ctx, s.logits_idx);
            s.result.tokens.push_back(tok);
            handle(s, tok);
        }
    }

    std::vector<GenerateResult> out;
    out.reserve(seqs.size());
    for (auto & s : seqs) {
        out.push_back(std::move(s.result));
    }
    return out;
}

}  // namespace mullama
