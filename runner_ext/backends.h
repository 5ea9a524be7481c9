// Which ggml backends this process runs.
//
// The default build links ggml's CPU backend into the extension for one instruction-set
// level. A distributable build (MULLAMA_CPU_VARIANTS=ON) builds ggml's CPU backend once per
// x86 level as shared modules next to the extension; load_backends() lets ggml pick the best
// one this CPU runs (or the one MULLAMA_CPU_VARIANT names) and cpu_backend() says which.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ggml.h"

namespace mullama {

// Loads the dynamic backends found next to the extension (a no-op in a static build).
// MULLAMA_CPU_VARIANT=NAME loads that CPU variant instead of the best one; a name this
// build lacks or this CPU cannot run raises InvalidArgument.
void load_backends();

struct CpuBackend {
    std::string variant;  // "haswell", "skylakex", ... or "built-in" for a static build
    std::string path;     // the shared object the CPU backend's code lives in
    bool dynamic = false; // chosen at run time from several variants
    std::vector<std::pair<std::string, std::string>> features;  // ggml's own list (AVX2=1, ...)
};

CpuBackend cpu_backend();

// ggml's CPU thread pools, reached through the CPU backend's registry: in a CPU-variants build
// their code lives in the variant module, which the extension does not link against.
ggml_threadpool_t threadpool_new(int n_threads);
void threadpool_free(ggml_threadpool_t pool);

}  // namespace mullama
