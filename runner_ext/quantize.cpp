#include "quantize.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <unistd.h>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "errors.h"
#include "imatrix-loader.h"
#include "llama.h"
#include "logging.h"
#include "model.h"

namespace mullama {

namespace {

const std::pair<const char *, llama_ftype> kTypes[] = {
    {"F32", LLAMA_FTYPE_ALL_F32},        {"F16", LLAMA_FTYPE_MOSTLY_F16},
    {"BF16", LLAMA_FTYPE_MOSTLY_BF16},   {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},   {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},   {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},   {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
    {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},   {"IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL},
    {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
};

llama_ftype ftype_from_name(std::string name) {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
    for (const auto & [n, t] : kTypes) {
        if (name == n) return t;
    }
    std::string known;
    for (const auto & [n, t] : kTypes) known += (known.empty() ? "" : ", ") + std::string(n);
    raise(ErrorKind::InvalidArgument, "unknown quantisation type '" + name + "' (" + known + ")");
}

}  // namespace

std::vector<std::string> quantize_types() {
    std::vector<std::string> out;
    for (const auto & [n, t] : kTypes) out.emplace_back(n);
    return out;
}

// An importance matrix as llama-quantize reads it (tools/quantize: load_imatrix), through common's loader:
// the GGUF format's sums divided by their per-expert counts, the legacy format's by its call count.
static std::unordered_map<std::string, std::vector<float>> load_imatrix(const std::string & path) {
    common_imatrix loaded;
    logging::Capture cap([](const std::string &) {});
    if (!common_imatrix_load(path, loaded)) {
        raise(ErrorKind::InvalidArgument, "not an importance matrix file: " + path + " " + cap.joined());
    }
    if (!loaded.is_legacy && !loaded.has_metadata) {
        raise(ErrorKind::InvalidArgument, "importance matrix " + path + " lacks its metadata (imatrix.datasets, "
                                          "imatrix.chunk_count, imatrix.chunk_size)");
    }
    if (loaded.entries.empty()) {
        raise(ErrorKind::InvalidArgument, "importance matrix " + path + " has no entries");
    }
    std::unordered_map<std::string, std::vector<float>> out;
    for (const auto & [name, entry] : loaded.entries) {
        auto & e = out[name];
        e.assign(entry.sums.size(), 1.0f);
        if (loaded.is_legacy) {
            const int64_t ncall = entry.counts.empty() ? 0 : entry.counts[0];
            for (size_t i = 0; i < e.size(); ++i) e[i] = ncall > 0 ? entry.sums[i] / ncall : entry.sums[i];
            continue;
        }
        const int64_t ncounts = static_cast<int64_t>(entry.counts.size());
        if (ncounts == 0 || entry.sums.size() % ncounts != 0) {
            raise(ErrorKind::InvalidArgument, "importance matrix " + path + ": sums and counts of " + name +
                                              " do not match");
        }
        const int64_t ne0 = static_cast<int64_t>(entry.sums.size()) / ncounts;
        for (int64_t j = 0; j < ncounts; ++j) {
            const float count = static_cast<float>(entry.counts[j]);
            if (count <= 0.0f) continue;  // never seen: weight 1
            for (int64_t i = 0; i < ne0; ++i) e[j * ne0 + i] = entry.sums[j * ne0 + i] / count;
        }
    }
    return out;
}

void quantize(const std::string & in_path, const std::string & out_path, const QuantizeParams & params,
              QuantizeProgressFn progress) {
    ensure_backend();
    const llama_ftype ftype = ftype_from_name(params.type);
    check_gguf_file(in_path);
    if (in_path == out_path) {
        raise(ErrorKind::InvalidArgument, "output path must differ from the input path");
    }
    {
        const std::filesystem::path out(out_path);
        const auto dir = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec)) {
            raise(ErrorKind::InvalidArgument, "output directory does not exist: " + dir.string());
        }
        if (access(dir.c_str(), W_OK) != 0) {
            raise(ErrorKind::InvalidArgument, "output directory is not writable: " + dir.string());
        }
    }
    if (params.n_threads < 0) {
        raise(ErrorKind::InvalidArgument, "n_threads must be >= 0");
    }
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.ftype = ftype;
    qp.nthread = params.n_threads;
    qp.allow_requantize = params.allow_requantize;
    qp.quantize_output_tensor = params.quantize_output;
    qp.pure = params.pure;
    std::unordered_map<std::string, std::vector<float>> imatrix;
    std::vector<llama_model_imatrix_data> imatrix_view;  // what the C API takes: name, data, size; null-terminated
    if (!params.imatrix.empty()) {
        imatrix = load_imatrix(params.imatrix);
        imatrix_view.reserve(imatrix.size() + 1);
        for (const auto & [name, values] : imatrix) imatrix_view.push_back({name.c_str(), values.data(), values.size()});
        imatrix_view.push_back({nullptr, nullptr, 0});
        qp.imatrix = imatrix_view.data();
    }

    std::exception_ptr callback_error;
    bool aborted = false;
    // Progress: llama.cpp logs "[  i/  n] tensor-name ..." per tensor. To abort,
    // the hook throws; llama_model_quantize catches it, cleans up and returns 1.
    struct Abort : std::runtime_error {
        Abort() : std::runtime_error("aborted by the progress callback") {}
    };
    logging::Capture cap([&](const std::string & line) {
        if (!progress || aborted) return;
        int i = 0, n = 0;
        if (std::sscanf(line.c_str(), "[%d/%d]", &i, &n) != 2 || n <= 0) return;
        bool go_on = false;
        try {
            go_on = progress(static_cast<float>(i) / static_cast<float>(n));
        } catch (...) {
            callback_error = std::current_exception();
        }
        if (!go_on) {
            aborted = true;
            throw Abort();
        }
    });
    uint32_t rc = 0;
    try {
        rc = llama_model_quantize(in_path.c_str(), out_path.c_str(), &qp);
    } catch (const std::bad_alloc &) {
        raise(ErrorKind::OutOfMemory, "out of memory quantising " + in_path);
    }
    if (aborted) {
        std::remove(out_path.c_str());
        if (callback_error) std::rethrow_exception(callback_error);
        raise(ErrorKind::Aborted, "quantisation aborted by the progress callback");
    }
    if (rc != 0) {
        std::remove(out_path.c_str());
        std::string cause = cap.joined();
        if (cause.find("requantiz") != std::string::npos) {
            raise(ErrorKind::InvalidArgument, "cannot requantise an already quantised model without "
                                              "allow_requantize=True: " + cause);
        }
        if (cause.find("failed to open") != std::string::npos && cause.find(out_path) != std::string::npos) {
            raise(ErrorKind::InvalidArgument, "cannot write " + out_path + ": " + cause);
        }
        if (cause.find("Missing importance matrix") != std::string::npos) {
            raise(ErrorKind::InvalidArgument, params.type + " needs an importance matrix for this model (imatrix, "
                                              "made by llama-imatrix): " + cause);
        }
        if (cause.find("tensor") != std::string::npos && cause.find("bounds") != std::string::npos) {
            raise(ErrorKind::CorruptModelFile, "quantisation of " + in_path + " failed: " + cause);
        }
        raise(ErrorKind::Engine, "quantisation of " + in_path + " failed: " + cause);
    }
}

}  // namespace mullama
