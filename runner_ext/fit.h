// The "fit" step of fit -> alloc -> commit -> close: load the model and create
// the context with llama.cpp's no_alloc mode, which simulates every allocation,
// and report per device what the weights, the KV cache and the compute buffers
// would take. Nothing is allocated.
#pragma once

#include <string>
#include <vector>

#include "context.h"
#include "model.h"

namespace mullama {

struct FitReport {
    std::vector<DeviceMemory> devices;  // GPUs first, host ("CPU") last
    uint32_t n_ctx = 0;
    int32_t n_layer = 0;
    int32_t n_gpu_layers = 0;           // as requested (-1: all)
    uint64_t file_size = 0;
};

FitReport fit(const std::string & path, const ModelParams & mparams, const ContextParams & cparams);

}  // namespace mullama
