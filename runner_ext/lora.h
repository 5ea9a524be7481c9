// LoRA adapters of a model (llama_adapter_lora) and the registry a Batcher keeps
// of them: ids, names, default scales, and the sets requests apply.
//
// llama.cpp applies adapters per context, so the requests of one decode step all
// run under one set; the Batcher groups them (batcher_step.cpp). Loading and
// freeing an adapter changes the model's adapter list, which a decode reads when
// it rebuilds its graph: both happen only while the Batcher's engine lock is held.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"
#include "model.h"

namespace mullama {

class LoraAdapter {
public:
    // Throws ModelFileNotFound / InvalidModelFile, or InvalidArgument when the file is not a LoRA of this model.
    LoraAdapter(std::shared_ptr<ModelHandle> model, const std::string & path);
    ~LoraAdapter();
    LoraAdapter(const LoraAdapter &) = delete;
    LoraAdapter & operator=(const LoraAdapter &) = delete;
    llama_adapter_lora * get() const { return adapter_; }
    const std::string & path() const { return path_; }
    float alpha() const { return alpha_; }

private:
    std::shared_ptr<ModelHandle> model_;  // the adapter's tensors belong to the model: it outlives them
    llama_adapter_lora * adapter_ = nullptr;
    std::string path_;
    float alpha_ = 0.0f;
};

// The adapters one request applies, with their scales (none with scale 0), in id order.
// `key` names the set ("" for none): requests with equal keys may share a decode step.
struct LoraSet {
    std::vector<std::shared_ptr<LoraAdapter>> adapters;
    std::vector<float> scales;
    std::string key;
};

struct AdapterInfo {
    int32_t id = 0;
    std::string name;
    std::string path;
    float scale = 1.0f;  // what a request that names no adapters gets
    float alpha = 0.0f;
    int32_t in_use = 0;  // requests holding it (queued, running or swapped out)
};

class AdapterRegistry {
public:
    explicit AdapterRegistry(std::shared_ptr<ModelHandle> model) : model_(std::move(model)) {}

    // Loads `path` (the caller holds the engine lock). A path already loaded is not loaded twice: its id is
    // returned. `name` "" means the file name without ".gguf"; names are unique. Throws InvalidArgument.
    int32_t add(const std::string & path, const std::string & name, float scale);
    // New requests can no longer name it; it is freed by collect() once no request holds it.
    bool remove(int32_t id);
    std::vector<AdapterInfo> list() const;
    // The set for (id, scale) pairs; `defaults`: every adapter at its default scale (the pairs are ignored).
    // Throws InvalidArgument for an unknown id or a scale that is not finite.
    LoraSet resolve(const std::vector<std::pair<int32_t, float>> & refs, bool defaults) const;
    // Frees removed adapters that no request holds any more (engine lock held); returns what was freed.
    std::vector<const llama_adapter_lora *> collect();

private:
    struct Entry {
        std::shared_ptr<LoraAdapter> adapter;
        std::string name;
        float scale;
    };
    std::shared_ptr<ModelHandle> model_;
    mutable std::mutex mu_;
    std::map<int32_t, Entry> live_;
    std::vector<std::shared_ptr<LoraAdapter>> retired_;
    int32_t next_id_ = 0;
};

}  // namespace mullama
