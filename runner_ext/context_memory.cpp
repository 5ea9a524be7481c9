// Memory per device: llama's own accounting of weights, KV cache and compute
// buffers, with each device's free/total.
#include "context.h"

#include "../src/llama-ext.h"
#include <string>

#include "ggml-backend.h"

namespace mullama {

namespace {

const char * dev_type_name(enum ggml_backend_dev_type t) {
    switch (t) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
        default: return "accel";
    }
}

}  // namespace

std::vector<DeviceMemory> memory_breakdown(const llama_model * model, const llama_context * ctx) {
    const int32_t nd = llama_model_n_devices(model);
    std::vector<DeviceMemory> out(nd + 1);
    for (int32_t i = 0; i < nd; ++i) {
        ggml_backend_dev_t dev = llama_model_get_device(model, i);
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(dev, &free, &total);
        out[i].device = ggml_backend_dev_name(dev);
        out[i].description = ggml_backend_dev_description(dev);
        // an RPC worker's device: ggml calls it a GPU; what it holds is on another host
        const bool remote = std::string(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev))) == "RPC";
        out[i].type = remote ? "rpc" : dev_type_name(ggml_backend_dev_type(dev));
        out[i].free = free;
        out[i].total = total;
    }
    DeviceMemory & host = out.back();
    host.device = "CPU";
    host.type = "cpu";
    if (ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)) {
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(cpu, &free, &total);
        host.description = ggml_backend_dev_description(cpu);
        host.free = free;
        host.total = total;
    }
    for (const auto & [buft, mb] : llama_get_memory_breakdown(ctx)) {
        DeviceMemory * target = nullptr;
        if (ggml_backend_buft_is_host(buft)) {
            target = &host;
        } else if (ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft)) {
            for (int32_t i = 0; i < nd; ++i) {
                if (dev == llama_model_get_device(model, i)) {
                    target = &out[i];
                    break;
                }
            }
        }
        if (target == nullptr) continue;
        target->model += mb.model;
        target->context += mb.context;
        target->compute += mb.compute;
    }
    return out;
}

std::vector<DeviceMemory> Context::memory() const {
    std::lock_guard<std::mutex> lock(mutex_);
    const llama_context * ctx = raw();
    return memory_breakdown(model_->get(), ctx);
}

}  // namespace mullama
