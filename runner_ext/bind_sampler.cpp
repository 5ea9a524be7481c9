#include <pybind11/stl.h>

#include "bindings.h"
#include "context.h"
#include "errors.h"
#include "generate.h"
#include "sampler.h"

namespace mullama::bind {

void register_sampler(py::module_ & m) {
    py::class_<SamplingParams>(m, "SamplingParams", "How tokens are picked (llama.cpp's common sampler chain).")
        .def(py::init([](float temperature, int32_t top_k, float top_p, float min_p, float typical_p,
                         float repeat_penalty, int32_t repeat_last_n, float presence_penalty, float frequency_penalty,
                         int64_t seed, std::vector<std::pair<llama_token, float>> logit_bias, std::string grammar,
                         std::string json_schema, int32_t reasoning_budget) {
                 if (seed < -1 || seed > static_cast<int64_t>(UINT32_MAX)) {
                     raise(ErrorKind::InvalidArgument, "seed must be -1 (random) or in [0, 2^32)");
                 }
                 SamplingParams p;
                 p.temperature = temperature;
                 p.top_k = top_k;
                 p.top_p = top_p;
                 p.min_p = min_p;
                 p.typical_p = typical_p;
                 p.repeat_penalty = repeat_penalty;
                 p.repeat_last_n = repeat_last_n;
                 p.presence_penalty = presence_penalty;
                 p.frequency_penalty = frequency_penalty;
                 p.seed = seed < 0 ? LLAMA_DEFAULT_SEED : static_cast<uint32_t>(seed);
                 p.logit_bias = std::move(logit_bias);
                 p.grammar = std::move(grammar);
                 p.json_schema = std::move(json_schema);
                 p.reasoning_budget = reasoning_budget;
                 return p;
             }),
             py::kw_only(), py::arg("temperature") = 0.8f, py::arg("top_k") = 40, py::arg("top_p") = 0.95f,
             py::arg("min_p") = 0.05f, py::arg("typical_p") = 1.0f, py::arg("repeat_penalty") = 1.0f,
             py::arg("repeat_last_n") = 64, py::arg("presence_penalty") = 0.0f, py::arg("frequency_penalty") = 0.0f,
             py::arg("seed") = -1, py::arg("logit_bias") = std::vector<std::pair<llama_token, float>>{},
             py::arg("grammar") = "", py::arg("json_schema") = "", py::arg("reasoning_budget") = -1)
        .def("with_extras",
             [](const SamplingParams & self, int32_t min_keep, int32_t mirostat, float mirostat_tau,
                float mirostat_eta, float xtc_probability, float xtc_threshold, float dry_multiplier, float dry_base,
                int32_t dry_allowed_length, int32_t dry_penalty_last_n, std::vector<std::string> dry_sequence_breakers,
                float top_n_sigma, float dynatemp_range, float dynatemp_exponent, std::vector<std::string> samplers) {
                 SamplingParams p = self;
                 p.min_keep = min_keep;
                 p.mirostat = mirostat;
                 p.mirostat_tau = mirostat_tau;
                 p.mirostat_eta = mirostat_eta;
                 p.xtc_probability = xtc_probability;
                 p.xtc_threshold = xtc_threshold;
                 p.dry_multiplier = dry_multiplier;
                 p.dry_base = dry_base;
                 p.dry_allowed_length = dry_allowed_length;
                 p.dry_penalty_last_n = dry_penalty_last_n;
                 p.dry_sequence_breakers = std::move(dry_sequence_breakers);
                 p.top_n_sigma = top_n_sigma;
                 p.dynatemp_range = dynatemp_range;
                 p.dynatemp_exponent = dynatemp_exponent;
                 p.samplers = std::move(samplers);
                 return p;
             },
             py::kw_only(), py::arg("min_keep") = 0, py::arg("mirostat") = 0, py::arg("mirostat_tau") = 5.0f,
             py::arg("mirostat_eta") = 0.1f, py::arg("xtc_probability") = 0.0f, py::arg("xtc_threshold") = 0.1f,
             py::arg("dry_multiplier") = 0.0f, py::arg("dry_base") = 1.75f, py::arg("dry_allowed_length") = 2,
             py::arg("dry_penalty_last_n") = -1,
             py::arg("dry_sequence_breakers") = std::vector<std::string>{"\n", ":", "\"", "*"},
             py::arg("top_n_sigma") = -1.0f, py::arg("dynatemp_range") = 0.0f, py::arg("dynatemp_exponent") = 1.0f,
             py::arg("samplers") = std::vector<std::string>{},
             "A copy with llama.cpp's other samplers set (Mirostat, XTC, DRY, top-n-sigma, dynamic temperature, "
             "min_keep, the chain's order); checked when a Sampler is made.")
        .def("with_seed", [](const SamplingParams & self, int64_t seed) {
                 if (seed < -1 || seed > static_cast<int64_t>(UINT32_MAX)) {
                     raise(ErrorKind::InvalidArgument, "seed must be -1 (random) or in [0, 2^32)");
                 }
                 SamplingParams p = self;
                 p.seed = seed < 0 ? LLAMA_DEFAULT_SEED : static_cast<uint32_t>(seed);
                 return p;
             }, py::arg("seed"), "A copy with another seed (-1: random).")
        .def_readonly("temperature", &SamplingParams::temperature)
        .def_readonly("top_k", &SamplingParams::top_k)
        .def_readonly("top_p", &SamplingParams::top_p)
        .def_readonly("min_p", &SamplingParams::min_p)
        .def_readonly("typical_p", &SamplingParams::typical_p)
        .def_readonly("repeat_penalty", &SamplingParams::repeat_penalty)
        .def_readonly("repeat_last_n", &SamplingParams::repeat_last_n)
        .def_readonly("presence_penalty", &SamplingParams::presence_penalty)
        .def_readonly("frequency_penalty", &SamplingParams::frequency_penalty)
        .def_readonly("seed", &SamplingParams::seed)
        .def_readonly("logit_bias", &SamplingParams::logit_bias)
        .def_readonly("grammar", &SamplingParams::grammar)
        .def_readonly("json_schema", &SamplingParams::json_schema)
        .def_readonly("reasoning_budget", &SamplingParams::reasoning_budget)
        .def_readonly("reasoning_start", &SamplingParams::reasoning_start)
        .def_readonly("reasoning_end", &SamplingParams::reasoning_end);

    py::class_<Sampler>(m, "Sampler", "Sampling state of one sequence.")
        .def(py::init<const Model &, const SamplingParams &>(), py::arg("model"), py::arg("params"),
             py::call_guard<py::gil_scoped_release>())
        .def("sample", [](Sampler & self, Context & ctx, int32_t index) {
                 ctx.ensure_free();
                 return self.sample(ctx, index);
             }, py::arg("context"), py::arg("index"),
             py::call_guard<py::gil_scoped_release>(),
             "Sample (and accept) a token from the logits of batch entry `index` of the last decode.")
        .def("accept", &Sampler::accept, py::arg("token"))
        .def("reset", &Sampler::reset)
        .def_property_readonly("seed", &Sampler::seed)
        .def_property_readonly("chain", &Sampler::chain, "The samplers as llama.cpp built them, in order.");

    py::class_<GenerateParams>(m, "GenerateParams", "Limits and sampling of one generation.")
        .def(py::init([](int32_t max_tokens, std::vector<std::string> stop, bool ignore_eos, SamplingParams sampling,
                         int32_t n_probs) {
                 if (n_probs > 100) raise(ErrorKind::InvalidArgument, "n_probs must be <= 100");
                 GenerateParams p;
                 p.max_tokens = max_tokens;
                 p.stop = std::move(stop);
                 p.ignore_eos = ignore_eos;
                 p.sampling = std::move(sampling);
                 p.n_probs = n_probs < 0 ? -1 : n_probs;
                 return p;
             }),
             py::kw_only(), py::arg("max_tokens") = 128, py::arg("stop") = std::vector<std::string>{},
             py::arg("ignore_eos") = false, py::arg("sampling") = SamplingParams(), py::arg("n_probs") = -1)
        .def_readonly("n_probs", &GenerateParams::n_probs)
        .def_readonly("max_tokens", &GenerateParams::max_tokens)
        .def_readonly("stop", &GenerateParams::stop)
        .def_readonly("ignore_eos", &GenerateParams::ignore_eos)
        .def_readonly("sampling", &GenerateParams::sampling);

    py::class_<GenerateResult>(m, "GenerateResult", "Text, tokens, finish reason and timings of one generation.")
        .def_property_readonly("text", [](const GenerateResult & r) { return to_str(r.text); })
        .def_readonly("tokens", &GenerateResult::tokens)
        .def_property_readonly("finish_reason", [](const GenerateResult & r) { return to_string(r.finish_reason); })
        .def_readonly("stop_string", &GenerateResult::stop_string)
        .def_readonly("prompt_tokens", &GenerateResult::prompt_tokens)
        .def_readonly("completion_tokens", &GenerateResult::completion_tokens)
        .def_readonly("prompt_ms", &GenerateResult::prompt_ms)
        .def_readonly("ttft_ms", &GenerateResult::ttft_ms)
        .def_readonly("decode_ms", &GenerateResult::decode_ms);

    m.def("json_schema_to_grammar", &json_schema_to_gbnf, py::arg("schema"),
          "GBNF grammar for a JSON schema given as JSON text (raises InvalidSchema).");
}

}  // namespace mullama::bind
