// The extension module: registration only; the bound classes live in bind_*.cpp.
#include "bindings.h"

PYBIND11_MODULE(_engine, m) {
    m.doc() = "mullama's C++ engine over llama.cpp (see mullama.engine for the documented API)";
    mullama::bind::register_errors(m);
    mullama::bind::register_model(m);
    mullama::bind::register_context(m);
    mullama::bind::register_sampler(m);
    mullama::bind::register_misc(m);
    mullama::bind::register_batcher(m);
    mullama::bind::register_chat(m);
    mullama::bind::register_rpc(m);
}
