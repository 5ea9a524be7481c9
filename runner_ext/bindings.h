// Shared by the bind_*.cpp files: one register_* per bound area.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace mullama::bind {

namespace py = pybind11;

void register_errors(py::module_ & m);
void register_model(py::module_ & m);
void register_context(py::module_ & m);
void register_sampler(py::module_ & m);
void register_misc(py::module_ & m);
void register_batcher(py::module_ & m);
void register_chat(py::module_ & m);
void register_rpc(py::module_ & m);

// Decode bytes that may end inside a UTF-8 sequence without raising.
py::str to_str(const std::string & s);

// Calls a Python progress callback with the GIL; None or truthy -> continue.
bool call_progress(py::handle fn, float value);

}  // namespace mullama::bind
