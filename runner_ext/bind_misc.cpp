// Process-wide functions: logging, fit, quantize, devices, build info.
#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <optional>

#include "backends.h"
#include "bindings.h"
#include "fit.h"
#include "ggml-backend.h"
#include "llama.h"
#include "logging.h"
#include "quantize.h"

#ifndef MULLAMA_LLAMA_CPP_COMMIT
#define MULLAMA_LLAMA_CPP_COMMIT "unknown"
#endif

namespace mullama::bind {

namespace {

bool python_alive() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsInitialized() && !Py_IsFinalizing();
#else
    return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

}  // namespace

void register_misc(py::module_ & m) {
    m.def(
        "set_log_sink",
        [](py::object sink, int min_level) {
            if (sink.is_none()) {
                logging::clear_sink();
                return;
            }
            // Kept alive for the life of the process (the sink may be called from any thread).
            auto * keep = new py::object(std::move(sink));
            logging::set_sink(
                [keep](int level, const std::string & line) {
                    if (!python_alive()) return;
                    py::gil_scoped_acquire gil;
                    try {
                        (*keep)(level, to_str(line));
                    } catch (py::error_already_set & e) {
                        e.discard_as_unraisable("mullama log sink");
                    }
                },
                min_level);
        },
        py::arg("sink"), py::arg("min_level") = 3,
        "Send llama.cpp/ggml log lines to sink(level, line); levels 1 debug, 2 info, 3 warn, 4 error.");

    py::class_<FitReport>(m, "FitReport", "What a model + context would need per device (nothing allocated).")
        .def_readonly("devices", &FitReport::devices)
        .def_readonly("n_ctx", &FitReport::n_ctx)
        .def_readonly("n_layer", &FitReport::n_layer)
        .def_readonly("n_gpu_layers", &FitReport::n_gpu_layers)
        .def_readonly("file_size", &FitReport::file_size);

    m.def(
        "fit",
        [](const std::filesystem::path & path, const ModelParams & mparams, const ContextParams & cparams) {
            py::gil_scoped_release nogil;
            return fit(path.string(), mparams, cparams);
        },
        py::arg("path"), py::arg("model_params") = ModelParams(), py::arg("context_params") = ContextParams(),
        "Dry-run load with llama.cpp's no_alloc mode: bytes per device for weights, KV cache, compute.");

    py::class_<QuantizeParams>(m, "QuantizeParams")
        .def(py::init([](std::string type, int32_t n_threads, bool allow_requantize, bool quantize_output, bool pure,
                         const std::optional<std::filesystem::path> & imatrix) {
                 return QuantizeParams{std::move(type), n_threads, allow_requantize, quantize_output, pure,
                                       imatrix ? imatrix->string() : std::string()};
             }),
             py::kw_only(), py::arg("type") = "Q4_K_M", py::arg("n_threads") = 0, py::arg("allow_requantize") = false,
             py::arg("quantize_output") = true, py::arg("pure") = false, py::arg("imatrix") = py::none())
        .def_readonly("type", &QuantizeParams::type)
        .def_readonly("n_threads", &QuantizeParams::n_threads)
        .def_readonly("allow_requantize", &QuantizeParams::allow_requantize)
        .def_readonly("quantize_output", &QuantizeParams::quantize_output)
        .def_readonly("pure", &QuantizeParams::pure)
        .def_readonly("imatrix", &QuantizeParams::imatrix);

    m.def(
        "quantize",
        [](const std::filesystem::path & in, const std::filesystem::path & out, const QuantizeParams & params,
           py::object progress) {
            QuantizeProgressFn fn;
            if (!progress.is_none()) {
                fn = [h = py::handle(progress)](float v) { return call_progress(h, v); };
            }
            py::gil_scoped_release nogil;
            quantize(in.string(), out.string(), params, fn);
        },
        py::arg("input"), py::arg("output"), py::arg("params") = QuantizeParams(), py::kw_only(),
        py::arg("progress") = py::none(), "Write a quantised copy of a GGUF model; progress(fraction) may abort.");
    m.def("quantize_types", &quantize_types);

    m.def("devices", [] {
        ensure_backend();
        py::list out;
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            size_t free = 0, total = 0;
            ggml_backend_dev_memory(dev, &free, &total);
            py::dict d;
            d["name"] = ggml_backend_dev_name(dev);
            d["description"] = ggml_backend_dev_description(dev);
            const auto t = ggml_backend_dev_type(dev);
            d["type"] = t == GGML_BACKEND_DEVICE_TYPE_CPU ? "cpu" : t == GGML_BACKEND_DEVICE_TYPE_GPU ? "gpu"
                        : t == GGML_BACKEND_DEVICE_TYPE_IGPU ? "igpu" : "accel";
            d["free"] = free;
            d["total"] = total;
            out.append(d);
        }
        return out;
    }, "Backend devices llama.cpp sees (CPU, CUDA0, ...) with free/total bytes.");
    m.def("system_info", [] {
        ensure_backend();
        return std::string(llama_print_system_info());
    });
    m.def("supports_gpu_offload", [] {
        ensure_backend();
        return llama_supports_gpu_offload();
    });
    m.def("cpu_backend", [] {
        const CpuBackend cpu = cpu_backend();
        py::dict d, features;
        for (const auto & [name, value] : cpu.features) features[py::str(name)] = value;
        d["variant"] = cpu.variant;
        d["path"] = cpu.path;
        d["dynamic"] = cpu.dynamic;
        d["features"] = features;
        return d;
    }, "The CPU backend this process runs: its variant (chosen at run time in a CPU-variants build), file, features.");
    m.def("numa_init", &numa_init, py::arg("strategy"),
          "NUMA placement for this process (off | distribute | isolate | numactl); once, before loading.");
    m.def("buffer_type_names", &buffer_type_names, "Buffer types a tensor override may name (CPU, CUDA0, ...).");
    m.def("max_devices", &llama_max_devices);
    m.def("max_parallel_sequences", &llama_max_parallel_sequences);
    m.attr("LLAMA_CPP_COMMIT") = MULLAMA_LLAMA_CPP_COMMIT;
}

}  // namespace mullama::bind
