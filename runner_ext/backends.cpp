#include "backends.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "errors.h"
#include "ggml-backend.h"
#include "model.h"

namespace fs = std::filesystem;

namespace mullama {

namespace {

constexpr const char * kCpuPrefix = "libggml-cpu-";

fs::path shared_object_of(const void * symbol) {
    Dl_info info{};
    if (symbol && dladdr(symbol, &info) && info.dli_fname) return fs::path(info.dli_fname);
    return {};
}

fs::path engine_dir() {
    return shared_object_of(reinterpret_cast<const void *>(&engine_dir)).parent_path();
}

[[maybe_unused]] std::string variants_in(const fs::path & dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto & entry : fs::directory_iterator(dir, ec)) {
        const std::string file = entry.path().filename().string();
        if (file.rfind(kCpuPrefix, 0) != 0 || entry.path().extension() != ".so") continue;
        names.push_back(entry.path().stem().string().substr(std::char_traits<char>::length(kCpuPrefix)));
    }
    std::sort(names.begin(), names.end());
    std::string joined;
    for (const auto & n : names) joined += (joined.empty() ? "" : ", ") + n;
    return joined.empty() ? "none" : joined;
}

// The dynamic backends other than the CPU's (a GPU build's libggml-cuda.so, ...).
[[maybe_unused]] void load_device_backends(const fs::path & dir) {
    std::error_code ec;
    for (const auto & entry : fs::directory_iterator(dir, ec)) {
        const std::string file = entry.path().filename().string();
        if (file.rfind("libggml-", 0) != 0 || file.rfind(kCpuPrefix, 0) == 0 || file.rfind("libggml-base", 0) == 0 ||
            entry.path().extension() != ".so") {
            continue;
        }
        ggml_backend_load(entry.path().c_str());
    }
}

// The CPU variant ggml would pick (the highest ggml_backend_score this CPU runs), less the AMX ones:
// a VM may report AMX, grant the tile state (arch_prctl) and still fault in ggml's AMX kernels
// (SIGILL in tileloadd on a 250-token prefill of SmolLM2, reproduced on this project's machine), and
// nothing short of running them tells. MULLAMA_CPU_VARIANT=sapphirerapids opts in where AMX works.
[[maybe_unused]] fs::path best_cpu_variant(const fs::path & dir) {
    static const std::set<std::string> needs_amx = {"sapphirerapids"};
    fs::path best;
    int best_score = 0;
    std::error_code ec;
    for (const auto & entry : fs::directory_iterator(dir, ec)) {
        const std::string file = entry.path().filename().string();
        if (file.rfind(kCpuPrefix, 0) != 0 || entry.path().extension() != ".so") continue;
        if (needs_amx.count(entry.path().stem().string().substr(std::char_traits<char>::length(kCpuPrefix)))) continue;
        void * handle = dlopen(entry.path().c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle) continue;
        using score_fn = int (*)();
        if (auto score = reinterpret_cast<score_fn>(dlsym(handle, "ggml_backend_score"))) {
            const int s = score();
            if (s > best_score) best_score = s, best = entry.path();
        }
        dlclose(handle);
    }
    return best;
}

}  // namespace

void load_backends() {
#ifdef GGML_BACKEND_DL
    const fs::path dir = engine_dir();
    const char * forced = std::getenv("MULLAMA_CPU_VARIANT");
    fs::path path;
    if (forced && *forced) {
        path = dir / (std::string(kCpuPrefix) + forced + ".so");
        if (!fs::exists(path)) {
            raise(ErrorKind::InvalidArgument, std::string("MULLAMA_CPU_VARIANT=") + forced + ": no such CPU variant in " +
                                                  dir.string() + " (variants: " + variants_in(dir) + ")");
        }
    } else {
        path = best_cpu_variant(dir);
        if (path.empty()) {
            raise(ErrorKind::Engine, "no CPU backend this CPU can run in " + dir.string() + " (variants: " +
                                         variants_in(dir) + ")");
        }
    }
    if (!ggml_backend_load(path.c_str())) {
        if (forced && *forced) {
            raise(ErrorKind::InvalidArgument, std::string("MULLAMA_CPU_VARIANT=") + forced +
                                                  ": this CPU cannot run that variant (it lacks an instruction set it needs)");
        }
        raise(ErrorKind::Engine, "loading the CPU backend " + path.string() + " failed (llama.cpp's log says why)");
    }
    load_device_backends(dir);
#endif
}

CpuBackend cpu_backend() {
    ensure_backend();
    CpuBackend out;
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("CPU");
    if (!reg) return out;
    auto get_features = reinterpret_cast<ggml_backend_get_features_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
    if (get_features) {
        for (auto * f = get_features(reg); f && f->name; ++f) out.features.emplace_back(f->name, f->value);
    }
    const fs::path so = shared_object_of(reinterpret_cast<const void *>(get_features));
    out.path = so.string();
    const std::string file = so.filename().string();
#ifdef GGML_BACKEND_DL
    out.dynamic = true;
#endif
    if (out.dynamic && file.rfind(kCpuPrefix, 0) == 0) {
        out.variant = file.substr(std::char_traits<char>::length(kCpuPrefix));
        out.variant = out.variant.substr(0, out.variant.find('.'));
    } else {
        out.variant = "built-in";
    }
    return out;
}

namespace {

template <typename Fn>
Fn * cpu_proc(const char * name) {
    ensure_backend();
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("CPU");
    auto * fn = reg ? reinterpret_cast<Fn *>(ggml_backend_reg_get_proc_address(reg, name)) : nullptr;
    if (!fn) raise(ErrorKind::Engine, std::string("the CPU backend does not offer ") + name);
    return fn;
}

}  // namespace

ggml_threadpool_t threadpool_new(int n_threads) {
    static auto * fn = cpu_proc<ggml_threadpool_t(ggml_threadpool_params *)>("ggml_threadpool_new");
    ggml_threadpool_params params = ggml_threadpool_params_default(n_threads);
    return fn(&params);
}

void threadpool_free(ggml_threadpool_t pool) {
    static auto * fn = cpu_proc<void(ggml_threadpool_t)>("ggml_threadpool_free");
    if (pool != nullptr) fn(pool);
}

}  // namespace mullama
