// RAII over llama_model: load with placement parameters, metadata, tokenizer
// and chat templates. No pybind11 here; bind_model.cpp exposes it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"

struct common_chat_templates;

namespace mullama {

struct ModelParams {
    int32_t n_gpu_layers = -1;         // -1: all layers that the device list can take
    int32_t main_gpu = 0;
    std::string split_mode = "layer";  // none | layer | row
    std::vector<float> tensor_split;   // per device proportions, empty = automatic
    bool use_mmap = true;
    bool use_mlock = false;
    bool vocab_only = false;
    bool check_tensors = false;
    bool no_alloc = false;             // dry run: metadata only, allocations simulated (see fit.h)
    std::vector<std::string> kv_overrides;  // GGUF metadata, as llama-server's --override-kv: KEY=TYPE:VALUE
    std::vector<std::string> tensor_overrides;  // REGEX=BUFFER_TYPE, as llama-server's -ot: matching weights go there
};

// Called with 0..1 during load; return false to abort the load.
using ProgressFn = std::function<bool(float)>;

struct ModelInfo {
    std::string path;
    std::string architecture;
    std::string name;
    std::string description;
    uint64_t n_params = 0;
    uint64_t file_size = 0;
    uint64_t tensor_bytes = 0;
    int32_t n_layer = 0;
    int32_t n_ctx_train = 0;
    int32_t n_embd = 0;
    int32_t n_head = 0;
    int32_t n_head_kv = 0;
    int32_t n_vocab = 0;
    std::string ftype;  // quantisation, e.g. "Q4_1"
    std::string chat_template;
    int32_t bos = -1;
    int32_t eos = -1;
    int32_t eot = -1;
    bool add_bos = false;
    bool has_encoder = false;
    bool is_recurrent = false;
    bool vocab_only = false;  // loaded without weights: tokenizer and metadata only
};

struct ChatMessage {
    std::string role;
    std::string content;
};

// Shared ownership of the llama_model: contexts keep the weights alive after
// Model::close() until they are closed themselves.
class ModelHandle {
public:
    ModelHandle(llama_model * model, std::string path);
    ~ModelHandle();
    ModelHandle(const ModelHandle &) = delete;
    ModelHandle & operator=(const ModelHandle &) = delete;
    llama_model * get() const { return model_; }
    const llama_vocab * vocab() const { return llama_model_get_vocab(model_); }
    const std::string & path() const { return path_; }
    // The end-of-generation tokens of the vocabulary, found once (what ignore_eos bans).
    const std::vector<llama_token> & eog_tokens() const { return eog_; }

private:
    llama_model * model_;
    std::string path_;
    std::vector<llama_token> eog_;
};

class Model {
public:
    Model(const std::string & path, const ModelParams & params, ProgressFn progress = nullptr);
    ~Model();
    Model(const Model &) = delete;
    Model & operator=(const Model &) = delete;

    void close();
    bool closed() const;

    const ModelInfo & info() const { return info_; }
    std::map<std::string, std::string> metadata() const;

    std::vector<llama_token> tokenize(const std::string & text, bool add_special, bool parse_special) const;
    std::string detokenize(const std::vector<llama_token> & tokens, bool remove_special = false,
                           bool unparse_special = false) const;
    std::string token_to_piece(llama_token token, bool special = true) const;
    bool is_eog(llama_token token) const;
    std::string apply_chat_template(const std::vector<ChatMessage> & messages, bool add_generation_prompt,
                                    const std::string & template_override = "") const;

    std::shared_ptr<ModelHandle> handle() const;  // throws Closed
    // The model's chat templates (llama.cpp's common_chat_templates), made once.
    std::shared_ptr<common_chat_templates> chat_templates() const;
    // Replace the GGUF's chat template: Jinja source, or the name of one of llama.cpp's built-in templates
    // (chat_template_names()). A built-in other than chatml renders through llama_chat_apply_template and
    // knows no tools or thinking. Throws TemplateError (bad Jinja) or InvalidArgument (unknown name).
    void set_chat_template(const std::string & jinja_or_name);

private:
    std::shared_ptr<ModelHandle> handle_;
    ModelInfo info_;
    mutable std::mutex mutex_;  // guards handle_ and templates_ (calls run without the GIL)
    mutable std::shared_ptr<common_chat_templates> templates_;
    std::string template_override_;  // Jinja source ("" : the GGUF's own)
    std::string builtin_;            // a built-in template's name, rendered by llama_chat_apply_template
};

// The names of llama.cpp's built-in chat templates (llama_chat_builtin_templates).
std::vector<std::string> chat_template_names();

// llama_split_mode from its name; throws InvalidArgument.
llama_split_mode split_mode_from_string(const std::string & name);

// Reads the first bytes of a file and raises the typed error for a missing
// file, a non-GGUF file, or a truncated header.
void check_gguf_file(const std::string & path);

// Backend initialisation, once per process.
void ensure_backend();

// NUMA placement of this process's threads and memory: off | distribute | isolate | numactl.
// llama.cpp allows one call per process; a second with another strategy throws InvalidArgument.
void numa_init(const std::string & strategy);

// The buffer types tensor overrides may name ("CPU", "CUDA0", ...), in device order.
std::vector<std::string> buffer_type_names();

}  // namespace mullama
