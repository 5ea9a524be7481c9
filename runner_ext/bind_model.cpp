#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>

#include "bindings.h"
#include "errors.h"
#include "model.h"

namespace mullama::bind {

namespace {

std::vector<ChatMessage> to_messages(const py::sequence & seq) {
    std::vector<ChatMessage> out;
    out.reserve(py::len(seq));
    size_t i = 0;
    for (const py::handle item : seq) {
        if (!py::isinstance<py::dict>(item)) {
            raise(ErrorKind::TemplateError, "message " + std::to_string(i) + " is not a dict with role and content");
        }
        auto d = py::reinterpret_borrow<py::dict>(item);
        if (!d.contains("role") || !py::isinstance<py::str>(d["role"])) {
            raise(ErrorKind::TemplateError, "message " + std::to_string(i) + " has no string 'role'");
        }
        ChatMessage msg;
        msg.role = d["role"].cast<std::string>();
        if (d.contains("content") && !d["content"].is_none()) {
            if (!py::isinstance<py::str>(d["content"])) {
                raise(ErrorKind::TemplateError, "message " + std::to_string(i) + ": 'content' must be a string");
            }
            msg.content = d["content"].cast<std::string>();
        }
        out.push_back(std::move(msg));
        ++i;
    }
    return out;
}

}  // namespace

void register_model(py::module_ & m) {
    py::class_<ModelParams>(m, "ModelParams", "Where and how to load a model's weights.")
        .def(py::init([](int32_t n_gpu_layers, int32_t main_gpu, std::string split_mode,
                         std::vector<float> tensor_split, bool use_mmap, bool use_mlock, bool vocab_only,
                         bool check_tensors, std::vector<std::string> kv_overrides,
                         std::vector<std::string> tensor_overrides) {
                 ModelParams p;
                 p.n_gpu_layers = n_gpu_layers;
                 p.main_gpu = main_gpu;
                 p.split_mode = std::move(split_mode);
                 p.tensor_split = std::move(tensor_split);
                 p.use_mmap = use_mmap;
                 p.use_mlock = use_mlock;
                 p.vocab_only = vocab_only;
                 p.check_tensors = check_tensors;
                 p.kv_overrides = std::move(kv_overrides);
                 p.tensor_overrides = std::move(tensor_overrides);
                 split_mode_from_string(p.split_mode);  // validate early
                 return p;
             }),
             py::kw_only(), py::arg("n_gpu_layers") = -1, py::arg("main_gpu") = 0, py::arg("split_mode") = "layer",
             py::arg("tensor_split") = std::vector<float>{}, py::arg("use_mmap") = true,
             py::arg("use_mlock") = false, py::arg("vocab_only") = false, py::arg("check_tensors") = false,
             py::arg("kv_overrides") = std::vector<std::string>{},
             py::arg("tensor_overrides") = std::vector<std::string>{})
        .def_readonly("n_gpu_layers", &ModelParams::n_gpu_layers)
        .def_readonly("main_gpu", &ModelParams::main_gpu)
        .def_readonly("split_mode", &ModelParams::split_mode)
        .def_readonly("tensor_split", &ModelParams::tensor_split)
        .def_readonly("use_mmap", &ModelParams::use_mmap)
        .def_readonly("use_mlock", &ModelParams::use_mlock)
        .def_readonly("vocab_only", &ModelParams::vocab_only)
        .def_readonly("check_tensors", &ModelParams::check_tensors)
        .def_readonly("kv_overrides", &ModelParams::kv_overrides)
        .def_readonly("tensor_overrides", &ModelParams::tensor_overrides);

    py::class_<ModelInfo>(m, "ModelInfo", "Metadata of a loaded model.")
        .def_readonly("path", &ModelInfo::path)
        .def_readonly("architecture", &ModelInfo::architecture)
        .def_readonly("name", &ModelInfo::name)
        .def_readonly("description", &ModelInfo::description)
        .def_readonly("n_params", &ModelInfo::n_params)
        .def_readonly("file_size", &ModelInfo::file_size)
        .def_readonly("tensor_bytes", &ModelInfo::tensor_bytes)
        .def_readonly("n_layer", &ModelInfo::n_layer)
        .def_readonly("n_ctx_train", &ModelInfo::n_ctx_train)
        .def_readonly("n_embd", &ModelInfo::n_embd)
        .def_readonly("n_head", &ModelInfo::n_head)
        .def_readonly("n_head_kv", &ModelInfo::n_head_kv)
        .def_readonly("n_vocab", &ModelInfo::n_vocab)
        .def_readonly("quantization", &ModelInfo::ftype)
        .def_readonly("chat_template", &ModelInfo::chat_template)
        .def_readonly("bos", &ModelInfo::bos)
        .def_readonly("eos", &ModelInfo::eos)
        .def_readonly("eot", &ModelInfo::eot)
        .def_readonly("add_bos", &ModelInfo::add_bos)
        .def_readonly("has_encoder", &ModelInfo::has_encoder)
        .def_readonly("is_recurrent", &ModelInfo::is_recurrent);

    py::class_<Model>(m, "Model", "A loaded GGUF model (weights + vocabulary). Close it, or use it as a context manager.")
        .def(py::init([](const std::filesystem::path & path, const ModelParams & params, py::object progress) {
                 ProgressFn fn;
                 if (!progress.is_none()) {
                     // A borrowed handle: copying it while the GIL is released touches no refcount;
                     // `progress` keeps the callable alive for the whole call.
                     fn = [h = py::handle(progress)](float v) { return call_progress(h, v); };
                 }
                 py::gil_scoped_release nogil;
                 auto model = std::make_unique<Model>(path.string(), params, fn);
                 return model;
             }),
             py::arg("path"), py::arg("params") = ModelParams(), py::kw_only(), py::arg("progress") = py::none(),
             "Load a model. progress(fraction) is called during the load; returning False aborts it "
             "(OperationAborted).")
        .def("close", &Model::close, py::call_guard<py::gil_scoped_release>(),
             "Free the weights (contexts still open keep them alive until closed).")
        .def_property_readonly("closed", &Model::closed)
        .def("__enter__", [](Model & self) -> Model & { return self; }, py::return_value_policy::reference)
        .def("__exit__", [](Model & self, py::args) { self.close(); })
        .def_property_readonly("info", [](const Model & self) {
            self.handle();
            return self.info();
        })
        .def("metadata", &Model::metadata, "All GGUF key/value metadata as strings.")
        .def("tokenize",
             [](const Model & self, const std::string & text, bool add_special, bool parse_special) {
                 py::gil_scoped_release nogil;
                 return self.tokenize(text, add_special, parse_special);
             },
             py::arg("text"), py::arg("add_special") = true, py::arg("parse_special") = false)
        .def("detokenize",
             [](const Model & self, const std::vector<llama_token> & tokens, bool remove_special,
                bool unparse_special) {
                 std::string s;
                 {
                     py::gil_scoped_release nogil;
                     s = self.detokenize(tokens, remove_special, unparse_special);
                 }
                 return to_str(s);
             },
             py::arg("tokens"), py::arg("remove_special") = false, py::arg("unparse_special") = false)
        .def("token_to_piece",
             [](const Model & self, llama_token token, bool special) {
                 const int32_t n_vocab = self.info().n_vocab;
                 self.handle();
                 if (token < 0 || token >= n_vocab) {
                     raise(ErrorKind::InvalidArgument, "token id " + std::to_string(token) + " out of range");
                 }
                 return py::bytes(self.token_to_piece(token, special));
             },
             py::arg("token"), py::arg("special") = true, "The raw bytes of one token (may be part of a UTF-8 character).")
        .def("is_eog", [](const Model & self, llama_token token) {
            self.handle();
            if (token < 0 || token >= self.info().n_vocab) return false;
            return self.is_eog(token);
        })
        .def("set_chat_template", &Model::set_chat_template, py::arg("jinja_or_name"),
             py::call_guard<py::gil_scoped_release>(),
             "Replace the GGUF's chat template: Jinja source, or a built-in name (chat_template_names()).")
        .def("apply_chat_template",
             [](const Model & self, const py::sequence & messages, bool add_generation_prompt,
                const std::string & template_override) {
                 auto msgs = to_messages(messages);
                 py::gil_scoped_release nogil;
                 return self.apply_chat_template(msgs, add_generation_prompt, template_override);
             },
             py::arg("messages"), py::arg("add_generation_prompt") = true, py::arg("template") = "",
             "Format [{'role', 'content'}, ...] with the model's own chat template (or `template`).");

    m.def("chat_template_names", &chat_template_names, "The names of llama.cpp's built-in chat templates.");
}

}  // namespace mullama::bind
