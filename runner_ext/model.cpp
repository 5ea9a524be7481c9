#include "model.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <regex>

#include "backends.h"
#include "chat.h"
#include "common.h"
#include "errors.h"
#include "ggml-backend.h"
#include "logging.h"

namespace mullama {

void ensure_backend() {
    static std::once_flag once;
    std::call_once(once, [] {
        logging::install();
        llama_backend_init();
        load_backends();
    });
}

void numa_init(const std::string & strategy) {
    static const std::map<std::string, ggml_numa_strategy> kinds = {
        {"off", GGML_NUMA_STRATEGY_DISABLED}, {"distribute", GGML_NUMA_STRATEGY_DISTRIBUTE},
        {"isolate", GGML_NUMA_STRATEGY_ISOLATE}, {"numactl", GGML_NUMA_STRATEGY_NUMACTL}};
    auto it = kinds.find(strategy);
    if (it == kinds.end()) {
        raise(ErrorKind::InvalidArgument, "numa must be off, distribute, isolate or numactl, got '" + strategy + "'");
    }
    static std::mutex mu;
    static std::string done;
    std::lock_guard<std::mutex> lock(mu);
    if (!done.empty() && done != strategy) {
        raise(ErrorKind::InvalidArgument, "NUMA is already set up as '" + done + "' in this process");
    }
    if (done.empty() && it->second != GGML_NUMA_STRATEGY_DISABLED) {
        ensure_backend();
        llama_numa_init(it->second);
    }
    done = strategy;
}

namespace {

std::map<std::string, ggml_backend_buffer_type_t> buffer_types() {
    ensure_backend();
    std::map<std::string, ggml_backend_buffer_type_t> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        if (auto * buft = ggml_backend_dev_buffer_type(ggml_backend_dev_get(i))) out[ggml_backend_buft_name(buft)] = buft;
    }
    return out;
}

// llama-server's -ot list: REGEX=BUFFER_TYPE each; `patterns` keeps the regex strings alive for the load.
std::vector<llama_model_tensor_buft_override> tensor_overrides(const std::vector<std::string> & specs,
                                                               std::vector<std::string> & patterns) {
    std::vector<llama_model_tensor_buft_override> out;
    if (specs.empty()) return out;
    const auto types = buffer_types();
    patterns.reserve(specs.size());
    for (const auto & spec : specs) {
        const auto eq = spec.find('=');
        if (eq == std::string::npos || eq == 0) {
            raise(ErrorKind::InvalidArgument, "tensor override '" + spec + "': expected REGEX=BUFFER_TYPE");
        }
        const std::string name = spec.substr(eq + 1);
        auto it = types.find(name);
        if (it == types.end()) {
            std::string known;
            for (const auto & [n, _] : types) known += (known.empty() ? "" : ", ") + n;
            raise(ErrorKind::InvalidArgument, "tensor override '" + spec + "': unknown buffer type '" + name +
                                                  "'; this machine has " + known);
        }
        patterns.push_back(spec.substr(0, eq));
        try {
            std::regex check(patterns.back());
        } catch (const std::regex_error & e) {
            raise(ErrorKind::InvalidArgument, "tensor override '" + spec + "': bad regular expression: " + e.what());
        }
        out.push_back({patterns.back().c_str(), it->second});
    }
    out.push_back({nullptr, nullptr});  // the list ends with a null pattern
    return out;
}

}  // namespace

std::vector<std::string> buffer_type_names() {
    std::vector<std::string> out;
    for (const auto & [name, _] : buffer_types()) out.push_back(name);
    return out;
}

llama_split_mode split_mode_from_string(const std::string & name) {
    if (name == "none") return LLAMA_SPLIT_MODE_NONE;
    if (name == "layer") return LLAMA_SPLIT_MODE_LAYER;
    if (name == "row") return LLAMA_SPLIT_MODE_ROW;
    raise(ErrorKind::InvalidArgument, "split_mode must be 'none', 'layer' or 'row', got '" + name + "'");
}

void check_gguf_file(const std::string & path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        raise(ErrorKind::ModelFileNotFound, "model file not found: " + path);
    }
    if (!S_ISREG(st.st_mode)) {
        raise(ErrorKind::ModelFileNotFound, "model path is not a regular file: " + path);
    }
    FILE * f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        raise(ErrorKind::ModelFileNotFound, "model file not readable: " + path + ": " + std::strerror(errno));
    }
    unsigned char head[24] = {0};
    size_t n = std::fread(head, 1, sizeof(head), f);
    std::fclose(f);
    if (n < 4 || std::memcmp(head, "GGUF", 4) != 0) {
        raise(ErrorKind::InvalidModelFile, "not a GGUF file (bad magic): " + path);
    }
    if (n < sizeof(head)) {
        raise(ErrorKind::CorruptModelFile, "truncated GGUF file (" + std::to_string(st.st_size) +
                                               " bytes, header incomplete): " + path);
    }
}

namespace {

std::string meta_str(const llama_model * model, const char * key) {
    char buf[512];
    int32_t n = llama_model_meta_val_str(model, key, buf, sizeof(buf));
    if (n < 0) {
        return {};
    }
    if (static_cast<size_t>(n) < sizeof(buf)) {
        return std::string(buf, n);
    }
    std::string big(n + 1, '\0');
    llama_model_meta_val_str(model, key, big.data(), big.size());
    big.resize(n);
    return big;
}

std::string ftype_name(llama_ftype ftype) {
    // llama_ftype_name gives "Q4_1", "Q4_K - Medium", "IQ2_XXS - 2.0625 bpw", ...;
    // return the short names used in file names: Q4_1, Q4_K_M, IQ2_XXS.
    std::string s = llama_ftype_name(ftype);
    if (s.rfind("all ", 0) == 0) {
        s.erase(0, 4);  // "all F32"
    }
    static const std::pair<const char *, const char *> sizes[] = {
        {" - Small", "_S"}, {" - Medium", "_M"}, {" - Large", "_L"}};
    for (const auto & [long_name, suffix] : sizes) {
        if (auto pos = s.find(long_name); pos != std::string::npos) {
            return s.substr(0, pos) + suffix;
        }
    }
    if (auto pos = s.find(' '); pos != std::string::npos) {
        s.resize(pos);
    }
    return s;
}

// Turns llama.cpp's captured error lines into a typed error.
[[noreturn]] void raise_load_failure(const std::string & path, const logging::Capture & cap) {
    std::string cause = cap.joined();
    auto has = [&](const char * s) { return cap.contains(s); };
    if (has("unknown model architecture") || has("unsupported model architecture")) {
        raise(ErrorKind::UnsupportedModel, "unsupported model architecture in " + path + ": " + cause);
    }
    if (has("out of memory") || has("failed to allocate") || has("unable to allocate")) {
        raise(ErrorKind::OutOfMemory, "out of memory loading " + path + ": " + cause);
    }
    if (has("not within the file bounds") || has("failed to read") || has("tensor data is not") ||
        has("truncated") || has("invalid") || has("failed to load model") || has("gguf_init")) {
        raise(ErrorKind::CorruptModelFile, "corrupted or truncated GGUF " + path + ": " + cause);
    }
    raise(ErrorKind::Engine, "failed to load " + path + (cause.empty() ? "" : ": " + cause));
}

struct ProgressState {
    ProgressFn * fn;
    std::exception_ptr error;
    bool aborted = false;
};

bool progress_trampoline(float progress, void * user_data) {
    auto * st = static_cast<ProgressState *>(user_data);
    try {
        if (!(*st->fn)(progress)) {
            st->aborted = true;
            return false;
        }
        return true;
    } catch (...) {
        st->error = std::current_exception();
        st->aborted = true;
        return false;
    }
}

}  // namespace

ModelHandle::ModelHandle(llama_model * model, std::string path) : model_(model), path_(std::move(path)) {
    const llama_vocab * v = llama_model_get_vocab(model_);
    for (llama_token t = 0; t < llama_vocab_n_tokens(v); ++t) if (llama_vocab_is_eog(v, t)) eog_.push_back(t);
}

ModelHandle::~ModelHandle() {
    if (model_ != nullptr) {
        llama_model_free(model_);
    }
}

Model::Model(const std::string & path, const ModelParams & params, ProgressFn progress) {
    ensure_backend();
    check_gguf_file(path);
    if (params.tensor_split.size() > llama_max_devices()) {
        raise(ErrorKind::InvalidArgument, "tensor_split has " + std::to_string(params.tensor_split.size()) +
                                              " entries, at most " + std::to_string(llama_max_devices()) + " devices");
    }
    for (float v : params.tensor_split) {
        if (!(v >= 0.0f)) {
            raise(ErrorKind::InvalidArgument, "tensor_split entries must be >= 0");
        }
    }
    std::vector<float> split(llama_max_devices(), 0.0f);
    std::copy(params.tensor_split.begin(), params.tensor_split.end(), split.begin());

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = params.n_gpu_layers;
    mp.main_gpu = params.main_gpu;
    mp.split_mode = split_mode_from_string(params.split_mode);
    mp.tensor_split = params.tensor_split.empty() ? nullptr : split.data();
    mp.vocab_only = params.vocab_only;
    mp.check_tensors = params.check_tensors;
    mp.no_alloc = params.no_alloc;
    std::vector<llama_model_kv_override> overrides;
    for (const auto & kv : params.kv_overrides) {
        if (!string_parse_kv_override(kv.c_str(), overrides)) {
            raise(ErrorKind::InvalidArgument, "bad metadata override '" + kv +
                                                  "': expected KEY=TYPE:VALUE with TYPE int, float, bool or str");
        }
    }
    if (!overrides.empty()) {
        overrides.emplace_back();
        overrides.back().key[0] = 0;  // the list ends with an empty key
        mp.kv_overrides = overrides.data();
    }
    std::vector<std::string> patterns;
    const auto bufts = tensor_overrides(params.tensor_overrides, patterns);
    if (!bufts.empty()) mp.tensor_buft_overrides = bufts.data();
    if (params.use_mmap) {
        mp.load_mode = params.use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP;
    } else {
        mp.load_mode = params.use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE;
    }
    ProgressState state{&progress, nullptr, false};
    if (progress) {
        mp.progress_callback = progress_trampoline;
        mp.progress_callback_user_data = &state;
    }

    logging::Capture cap;
    llama_model * model = nullptr;
    try {
        model = llama_model_load_from_file(path.c_str(), mp);
    } catch (const std::bad_alloc &) {
        raise(ErrorKind::OutOfMemory, "out of memory loading " + path);
    }
    if (state.error) {
        if (model) llama_model_free(model);
        std::rethrow_exception(state.error);
    }
    if (model == nullptr) {
        if (state.aborted) {
            raise(ErrorKind::Aborted, "model load aborted by the progress callback: " + path);
        }
        raise_load_failure(path, cap);
    }
    handle_ = std::make_shared<ModelHandle>(model, path);

    ModelInfo & i = info_;
    i.path = path;
    struct stat st {};
    if (stat(path.c_str(), &st) == 0) {
        i.file_size = static_cast<uint64_t>(st.st_size);
    }
    i.architecture = meta_str(model, "general.architecture");
    i.name = meta_str(model, "general.name");
    char desc[256];
    llama_model_desc(model, desc, sizeof(desc));
    i.description = desc;
    i.vocab_only = params.vocab_only;
    if (!params.vocab_only) {  // the hyper-parameter getters abort on a vocabulary-only model
        i.n_params = llama_model_n_params(model);
        i.tensor_bytes = llama_model_size(model);
        i.n_layer = llama_model_n_layer(model);
        i.n_ctx_train = llama_model_n_ctx_train(model);
        i.n_embd = llama_model_n_embd(model);
        i.n_head = llama_model_n_head(model);
        i.n_head_kv = llama_model_n_head_kv(model);
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    i.n_vocab = llama_vocab_n_tokens(vocab);
    i.ftype = ftype_name(llama_model_ftype(model));
    const char * tmpl = llama_model_chat_template(model, nullptr);
    i.chat_template = tmpl ? tmpl : "";
    i.bos = llama_vocab_bos(vocab);
    i.eos = llama_vocab_eos(vocab);
    i.eot = llama_vocab_eot(vocab);
    i.add_bos = llama_vocab_get_add_bos(vocab);
    if (!params.vocab_only) {
        i.has_encoder = llama_model_has_encoder(model);
        i.is_recurrent = llama_model_is_recurrent(model) || llama_model_is_hybrid(model);
    }
}

Model::~Model() = default;

void Model::close() {
    std::shared_ptr<ModelHandle> last;  // freed outside the lock
    std::lock_guard<std::mutex> lock(mutex_);
    templates_.reset();
    last.swap(handle_);
}

bool Model::closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return handle_ == nullptr;
}

std::shared_ptr<ModelHandle> Model::handle() const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!handle_) {
        raise(ErrorKind::Closed, "model is closed");
    }
    return handle_;
}

std::map<std::string, std::string> Model::metadata() const {
    auto h = handle();
    std::map<std::string, std::string> out;
    int32_t n = llama_model_meta_count(h->get());
    for (int32_t k = 0; k < n; ++k) {
        char key[256];
        if (llama_model_meta_key_by_index(h->get(), k, key, sizeof(key)) < 0) {
            continue;
        }
        out[key] = meta_str(h->get(), key);
    }
    return out;
}

std::vector<llama_token> Model::tokenize(const std::string & text, bool add_special, bool parse_special) const {
    auto h = handle();
    if (text.size() > static_cast<size_t>(INT32_MAX) / 2) {
        raise(ErrorKind::InvalidArgument, "text too long to tokenize");
    }
    std::vector<llama_token> out(text.size() + 8);
    int32_t n = llama_tokenize(h->vocab(), text.data(), static_cast<int32_t>(text.size()), out.data(),
                               static_cast<int32_t>(out.size()), add_special, parse_special);
    if (n < 0) {
        out.resize(static_cast<size_t>(-n));
        n = llama_tokenize(h->vocab(), text.data(), static_cast<int32_t>(text.size()), out.data(),
                           static_cast<int32_t>(out.size()), add_special, parse_special);
    }
    if (n < 0) {
        raise(ErrorKind::Engine, "tokenization failed");
    }
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string Model::detokenize(const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) const {
    auto h = handle();
    const int32_t n_vocab = llama_vocab_n_tokens(h->vocab());
    for (llama_token t : tokens) {
        if (t < 0 || t >= n_vocab) {
            raise(ErrorKind::InvalidArgument,
                  "token id " + std::to_string(t) + " out of range [0, " + std::to_string(n_vocab) + ")");
        }
    }
    std::string out(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(h->vocab(), tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                                 static_cast<int32_t>(out.size()), remove_special, unparse_special);
    if (n < 0) {
        out.resize(static_cast<size_t>(-n));
        n = llama_detokenize(h->vocab(), tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                             static_cast<int32_t>(out.size()), remove_special, unparse_special);
    }
    if (n < 0) {
        raise(ErrorKind::Engine, "detokenization failed");
    }
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string Model::token_to_piece(llama_token token, bool special) const {
    auto h = handle();
    char buf[128];
    int32_t n = llama_token_to_piece(h->vocab(), token, buf, sizeof(buf), 0, special);
    if (n >= 0) {
        return std::string(buf, n);
    }
    std::string big(static_cast<size_t>(-n), '\0');
    n = llama_token_to_piece(h->vocab(), token, big.data(), static_cast<int32_t>(big.size()), 0, special);
    big.resize(n > 0 ? n : 0);
    return big;
}

bool Model::is_eog(llama_token token) const { return llama_vocab_is_eog(handle()->vocab(), token); }

}  // namespace mullama
