// mullama::Error -> the Python class of the same kind in mullama.core.errors.
#include <new>

#include "bindings.h"
#include "errors.h"

namespace mullama::bind {

namespace {

const char * kind_name(ErrorKind k) {
    switch (k) {
        case ErrorKind::ModelFileNotFound: return "ModelFileNotFound";
        case ErrorKind::InvalidModelFile: return "InvalidModelFile";
        case ErrorKind::CorruptModelFile: return "CorruptModelFile";
        case ErrorKind::UnsupportedModel: return "UnsupportedModel";
        case ErrorKind::Aborted: return "Aborted";
        case ErrorKind::OutOfMemory: return "OutOfMemory";
        case ErrorKind::ContextOverflow: return "ContextOverflow";
        case ErrorKind::InvalidGrammar: return "InvalidGrammar";
        case ErrorKind::InvalidSchema: return "InvalidSchema";
        case ErrorKind::TemplateError: return "TemplateError";
        case ErrorKind::InvalidArgument: return "InvalidArgument";
        case ErrorKind::Closed: return "Closed";
        case ErrorKind::DecodeError: return "DecodeError";
        case ErrorKind::Busy: return "Busy";
        case ErrorKind::Engine: break;
    }
    return "Engine";
}

}  // namespace

py::str to_str(const std::string & s) {
    PyObject * o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

bool call_progress(py::handle fn, float value) {
    py::gil_scoped_acquire gil;
    py::object r = fn(value);
    return r.is_none() || PyObject_IsTrue(r.ptr()) == 1;
}

void register_errors(py::module_ & m) {
    // Resolved once; mullama.core.errors never needs the extension, so no cycle.
    // Leaked on purpose: a static py::object would be released after the interpreter.
    static auto * classes = new py::object(py::module_::import("mullama.core.errors").attr("ENGINE_ERRORS"));
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Error & e) {
            py::object cls = (*classes)[py::str(kind_name(e.kind()))];
            PyErr_SetString(cls.ptr(), e.what());
        }
    });
    m.attr("ENGINE_ERRORS") = *classes;
}

}  // namespace mullama::bind
