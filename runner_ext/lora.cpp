#include "lora.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "errors.h"
#include "logging.h"

namespace mullama {

namespace {

std::string stem(const std::string & path) {
    std::string name = path.substr(path.find_last_of('/') + 1);
    const std::string ext = ".gguf";
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) {
        name.resize(name.size() - ext.size());
    }
    return name;
}

}  // namespace

LoraAdapter::LoraAdapter(std::shared_ptr<ModelHandle> model, const std::string & path)
    : model_(std::move(model)), path_(path) {
    check_gguf_file(path);
    logging::Capture cap;
    adapter_ = llama_adapter_lora_init(model_->get(), path.c_str());
    if (adapter_ == nullptr) {
        raise(ErrorKind::InvalidArgument, "cannot load LoRA adapter " + path +
                                              (cap.lines().empty() ? "" : ": " + cap.joined()));
    }
    char buf[64];
    if (llama_adapter_meta_val_str(adapter_, "adapter.lora.alpha", buf, sizeof(buf)) > 0) {
        alpha_ = std::strtof(buf, nullptr);
    }
}

LoraAdapter::~LoraAdapter() {
    llama_adapter_lora_free(adapter_);
}

int32_t AdapterRegistry::add(const std::string & path, const std::string & name, float scale) {
    if (!std::isfinite(scale)) raise(ErrorKind::InvalidArgument, "adapter scale must be a finite number");
    const std::string label = name.empty() ? stem(path) : name;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto & [id, e] : live_) {
            if (e.adapter->path() == path) return id;
            if (e.name == label) {
                raise(ErrorKind::InvalidArgument, "an adapter named '" + label + "' is already loaded (id " +
                                                      std::to_string(id) + ", " + e.adapter->path() + ")");
            }
        }
    }
    auto adapter = std::make_shared<LoraAdapter>(model_, path);  // slow part: outside the registry lock
    std::lock_guard<std::mutex> lock(mu_);
    const int32_t id = next_id_++;
    live_[id] = Entry{std::move(adapter), label, scale};
    return id;
}

bool AdapterRegistry::remove(int32_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end()) return false;
    retired_.push_back(std::move(it->second.adapter));
    live_.erase(it);
    return true;
}

std::vector<AdapterInfo> AdapterRegistry::list() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<AdapterInfo> out;
    for (const auto & [id, e] : live_) {
        out.push_back(AdapterInfo{id, e.name, e.adapter->path(), e.scale, e.adapter->alpha(),
                                  static_cast<int32_t>(e.adapter.use_count() - 1)});
    }
    return out;
}

LoraSet AdapterRegistry::resolve(const std::vector<std::pair<int32_t, float>> & refs, bool defaults) const {
    std::map<int32_t, float> chosen;
    std::lock_guard<std::mutex> lock(mu_);
    if (defaults) {
        for (const auto & [id, e] : live_) chosen[id] = e.scale;
    } else {
        for (const auto & [id, scale] : refs) {
            if (!live_.count(id)) {
                raise(ErrorKind::InvalidArgument, "no LoRA adapter with id " + std::to_string(id) + " is loaded");
            }
            if (!std::isfinite(scale)) raise(ErrorKind::InvalidArgument, "adapter scale must be a finite number");
            chosen[id] = scale;  // named twice: the last scale wins, as in llama-server
        }
    }
    LoraSet set;
    std::ostringstream key;
    for (const auto & [id, scale] : chosen) {
        if (scale == 0.0f) continue;  // llama.cpp leaves a zero-scale adapter out of the graph
        set.adapters.push_back(live_.at(id).adapter);
        set.scales.push_back(scale);
        key << (set.key.empty() && key.tellp() == 0 ? "" : ",") << id << ":" << scale;
    }
    set.key = key.str();
    return set;
}

std::vector<const llama_adapter_lora *> AdapterRegistry::collect() {
    std::vector<std::shared_ptr<LoraAdapter>> unused;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = retired_.begin(); it != retired_.end();) {
            if (it->use_count() == 1) {
                unused.push_back(std::move(*it));
                it = retired_.erase(it);
            } else {
                ++it;
            }
        }
    }
    std::vector<const llama_adapter_lora *> freed;
    for (const auto & a : unused) freed.push_back(a->get());
    return freed;  // `unused` frees them here (the caller holds the engine lock)
}

}  // namespace mullama
