#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "context.h"
#include "errors.h"
#include "generate.h"

namespace mullama::bind {

void register_context(py::module_ & m) {
    py::class_<ContextParams>(m, "ContextParams", "Size and behaviour of a context (KV cache, batching, threads).")
        .def(py::init([](uint32_t n_ctx, uint32_t n_batch, uint32_t n_ubatch, uint32_t n_seq_max, int32_t n_threads,
                         int32_t n_threads_batch, std::string flash_attn, std::string type_k, std::string type_v,
                         bool embeddings, std::string pooling, bool kv_unified, bool offload_kqv, bool swa_full,
                         std::string rope_scaling, float rope_freq_base, float rope_freq_scale, int32_t yarn_orig_ctx) {
                 ContextParams p;
                 p.n_ctx = n_ctx;
                 p.n_batch = n_batch;
                 p.n_ubatch = n_ubatch;
                 p.n_seq_max = n_seq_max;
                 p.n_threads = n_threads;
                 p.n_threads_batch = n_threads_batch;
                 p.flash_attn = std::move(flash_attn);
                 p.type_k = std::move(type_k);
                 p.type_v = std::move(type_v);
                 p.embeddings = embeddings;
                 p.pooling = std::move(pooling);
                 p.kv_unified = kv_unified;
                 p.offload_kqv = offload_kqv;
                 p.swa_full = swa_full;
                 p.rope_scaling = std::move(rope_scaling);
                 p.rope_freq_base = rope_freq_base;
                 p.rope_freq_scale = rope_freq_scale;
                 p.yarn_orig_ctx = yarn_orig_ctx;
                 kv_type_from_string(p.type_k);  // validate early
                 kv_type_from_string(p.type_v);
                 return p;
             }),
             py::kw_only(), py::arg("n_ctx") = 4096, py::arg("n_batch") = 2048, py::arg("n_ubatch") = 512,
             py::arg("n_seq_max") = 1, py::arg("n_threads") = 0, py::arg("n_threads_batch") = 0,
             py::arg("flash_attn") = "auto", py::arg("type_k") = "f16", py::arg("type_v") = "f16",
             py::arg("embeddings") = false, py::arg("pooling") = "mean", py::arg("kv_unified") = true,
             py::arg("offload_kqv") = true, py::arg("swa_full") = false, py::arg("rope_scaling") = "",
             py::arg("rope_freq_base") = 0.0f, py::arg("rope_freq_scale") = 0.0f, py::arg("yarn_orig_ctx") = 0)
        .def_readonly("n_ctx", &ContextParams::n_ctx)
        .def_readonly("n_batch", &ContextParams::n_batch)
        .def_readonly("n_ubatch", &ContextParams::n_ubatch)
        .def_readonly("n_seq_max", &ContextParams::n_seq_max)
        .def_readonly("n_threads", &ContextParams::n_threads)
        .def_readonly("n_threads_batch", &ContextParams::n_threads_batch)
        .def_readonly("flash_attn", &ContextParams::flash_attn)
        .def_readonly("type_k", &ContextParams::type_k)
        .def_readonly("type_v", &ContextParams::type_v)
        .def_readonly("embeddings", &ContextParams::embeddings)
        .def_readonly("pooling", &ContextParams::pooling)
        .def_readonly("kv_unified", &ContextParams::kv_unified)
        .def_readonly("offload_kqv", &ContextParams::offload_kqv)
        .def_readonly("swa_full", &ContextParams::swa_full)
        .def_readonly("rope_scaling", &ContextParams::rope_scaling)
        .def_readonly("rope_freq_base", &ContextParams::rope_freq_base)
        .def_readonly("rope_freq_scale", &ContextParams::rope_freq_scale)
        .def_readonly("yarn_orig_ctx", &ContextParams::yarn_orig_ctx);

    py::class_<DeviceMemory>(m, "DeviceMemory", "Bytes one device holds for a context (llama.cpp's accounting).")
        .def_readonly("device", &DeviceMemory::device)
        .def_readonly("description", &DeviceMemory::description)
        .def_readonly("type", &DeviceMemory::type)
        .def_readonly("free", &DeviceMemory::free)
        .def_readonly("total", &DeviceMemory::total)
        .def_readonly("model", &DeviceMemory::model)
        .def_readonly("context", &DeviceMemory::context)
        .def_readonly("compute", &DeviceMemory::compute)
        .def("__repr__", [](const DeviceMemory & d) {
            return "DeviceMemory(" + d.device + ", model=" + std::to_string(d.model) +
                   ", context=" + std::to_string(d.context) + ", compute=" + std::to_string(d.compute) + ")";
        });

    py::class_<Batch>(m, "Batch", "Tokens to decode: (token, position, sequence, wants logits) entries.")
        .def(py::init<int32_t, int32_t>(), py::arg("capacity"), py::arg("n_seq_max") = 1)
        .def("add", &Batch::add, py::arg("token"), py::arg("pos"), py::arg("seq") = 0, py::arg("logits") = false,
             "Append an entry; returns its index (use it for logits/sampling).")
        .def("clear", &Batch::clear)
        .def("__len__", &Batch::size)
        .def_property_readonly("capacity", &Batch::capacity);

    py::class_<Context>(m, "Context", "A llama.cpp context over a Model: KV cache, decode, sampling state.")
        .def(py::init([](const Model & model, const ContextParams & params) {
                 py::gil_scoped_release nogil;
                 return std::make_unique<Context>(model, params);
             }),
             py::arg("model"), py::arg("params") = ContextParams())
        .def("close", &Context::close, py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("closed", &Context::closed)
        .def("__enter__", [](Context & self) -> Context & { return self; }, py::return_value_policy::reference)
        .def("__exit__", [](Context & self, py::args) { py::gil_scoped_release nogil; self.close(); })
        .def_property_readonly("params", &Context::params, "Parameters in effect (n_ctx, threads resolved).")
        .def_property_readonly("n_ctx", &Context::n_ctx)
        .def_property_readonly("n_ctx_seq", &Context::n_ctx_seq, "Context available to one sequence.")
        .def_property_readonly("n_vocab", &Context::n_vocab)
        .def("decode", [](Context & self, const Batch & b) { self.ensure_free(); self.decode(b); }, py::arg("batch"),
             py::call_guard<py::gil_scoped_release>(),
             "Decode a batch (at most n_batch entries).")
        .def("logits",
             [](Context & self, int32_t i) {
                 const int32_t n = self.n_vocab();
                 const float * p = self.logits(i);
                 return py::array_t<float>(n, p);  // a copy
             },
             py::arg("index"), "Logits of batch entry `index` of the last decode, as a float32 array (copied).")
        .def("kv_clear", [](Context & self) { self.ensure_free(); self.kv_clear(); },
             py::call_guard<py::gil_scoped_release>())
        .def("kv_seq_rm", [](Context & self, llama_seq_id seq, llama_pos p0, llama_pos p1) {
                 self.ensure_free();
                 return self.kv_seq_rm(seq, p0, p1);
             }, py::arg("seq"), py::arg("p0") = -1, py::arg("p1") = -1,
             py::call_guard<py::gil_scoped_release>(), "Remove positions [p0, p1) of a sequence (-1: open end).")
        .def("kv_seq_cp", [](Context & self, llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1) {
                 self.ensure_free();
                 self.kv_seq_cp(src, dst, p0, p1);
             }, py::arg("src"), py::arg("dst"), py::arg("p0") = -1,
             py::arg("p1") = -1, py::call_guard<py::gil_scoped_release>())
        .def("kv_seq_keep", [](Context & self, llama_seq_id seq) { self.ensure_free(); self.kv_seq_keep(seq); },
             py::arg("seq"), py::call_guard<py::gil_scoped_release>())
        .def("kv_seq_pos_min", &Context::kv_seq_pos_min, py::arg("seq"), py::call_guard<py::gil_scoped_release>())
        .def("kv_seq_pos_max", &Context::kv_seq_pos_max, py::arg("seq"), py::call_guard<py::gil_scoped_release>())
        .def("kv_cells_used", &Context::kv_cells_used, py::call_guard<py::gil_scoped_release>(),
             "Cells held by sequences (n_ctx is the total).")
        .def("seq_state_save",
             [](Context & self, llama_seq_id seq) {
                 std::vector<uint8_t> data;
                 {
                     py::gil_scoped_release nogil;
                     data = self.seq_state_save(seq);
                 }
                 return py::bytes(reinterpret_cast<const char *>(data.data()), data.size());
             },
             py::arg("seq"), "The KV state of one sequence as bytes (for pause/resume).")
        .def("seq_state_load",
             [](Context & self, const py::bytes & data, llama_seq_id seq) {
                 std::string_view v = data;
                 std::vector<uint8_t> buf(v.begin(), v.end());
                 py::gil_scoped_release nogil;
                 self.ensure_free();
                 self.seq_state_load(buf, seq);
             },
             py::arg("data"), py::arg("seq"))
        .def("embed", [](Context & self, const std::vector<std::vector<llama_token>> & inputs) {
                 self.ensure_free();
                 return self.embed(inputs);
             }, py::arg("inputs"), py::call_guard<py::gil_scoped_release>(),
             "Pooled, L2-normalised embeddings of token lists (context made with embeddings=True).")
        .def("memory", &Context::memory, py::call_guard<py::gil_scoped_release>(), "Bytes per device: weights, KV cache, compute buffers.")
        .def("set_threads", &Context::set_threads, py::arg("n_threads"), py::arg("n_threads_batch"),
             py::call_guard<py::gil_scoped_release>())
        .def("generate",
             [](Context & self, const Model & model, const std::vector<std::vector<llama_token>> & prompts,
                const std::vector<GenerateParams> & params, py::object on_token) {
                 TokenCallback cb;
                 if (!on_token.is_none()) {
                     cb = [h = py::handle(on_token)](size_t index, llama_token tok, const std::string & text) {
                         py::gil_scoped_acquire gil;
                         py::object r = h(index, tok, to_str(text));
                         return r.is_none() || PyObject_IsTrue(r.ptr()) == 1;
                     };
                 }
                 py::gil_scoped_release nogil;
                 return generate(self, model, prompts, params, cb);
             },
             py::arg("model"), py::arg("prompts"), py::arg("params"), py::kw_only(), py::arg("on_token") = py::none(),
             "Generate for each prompt (token list) as its own sequence, all decoded together. "
             "on_token(index, token, text) is called per token; returning False cancels that sequence.");
}

}  // namespace mullama::bind
