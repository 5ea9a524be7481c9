// llama_model_quantize with typed errors and progress (parsed from the
// per-tensor lines llama.cpp logs while quantising).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mullama {

struct QuantizeParams {
    std::string type = "Q4_K_M";   // target quantisation, case-insensitive
    int32_t n_threads = 0;         // 0: all cores
    bool allow_requantize = false; // quantise from an already quantised model
    bool quantize_output = true;   // also quantise output.weight
    bool pure = false;             // same type for every tensor
    std::string imatrix;           // an importance matrix file (llama-imatrix's GGUF or legacy .dat); "": none
};

// Called with 0..1 as tensors are written; return false to abort.
using QuantizeProgressFn = std::function<bool(float)>;

void quantize(const std::string & in_path, const std::string & out_path, const QuantizeParams & params,
              QuantizeProgressFn progress = nullptr);

// Names accepted by quantize (F16, Q8_0, Q4_K_M, ...).
std::vector<std::string> quantize_types();

}  // namespace mullama
