// llama.cpp's RPC backend: remote hosts as devices (runner side) and the worker's server.
#include <pybind11/stl.h>

#include "bindings.h"
#include "rpc.h"

namespace mullama::bind {

void register_rpc(py::module_ & m) {
    m.def("rpc_supported", &rpc_supported, "True when this build has llama.cpp's RPC backend.");
    m.def(
        "rpc_add_servers",
        [](const std::vector<std::string> & endpoints, double connect_timeout) {
            std::vector<RemoteDevice> devices;
            {
                py::gil_scoped_release release;
                devices = rpc_add_servers(endpoints, connect_timeout);
            }
            py::list out;
            for (const auto & d : devices) {
                py::dict x;
                x["endpoint"] = d.endpoint;
                x["name"] = d.name;
                x["index"] = d.index;
                x["free"] = d.free;
                x["total"] = d.total;
                out.append(x);
            }
            return out;
        },
        py::arg("endpoints"), py::kw_only(), py::arg("connect_timeout") = 3.0,
        "Add RPC workers (host:port) as devices for the next model load; returns their devices. "
        "An unreachable worker raises InvalidArgument naming it.");
    m.def(
        "rpc_serve",
        [](const std::string & endpoint, const std::vector<std::string> & devices, size_t memory_limit, int threads,
           const std::string & cache_dir) {
            py::gil_scoped_release release;
            rpc_serve(endpoint, devices, memory_limit, threads, cache_dir);
        },
        py::arg("endpoint"), py::kw_only(), py::arg("devices") = std::vector<std::string>{},
        py::arg("memory_limit") = 0, py::arg("threads") = 1, py::arg("cache_dir") = "",
        "Serve this host's devices to RPC clients on endpoint (host:port) until the process ends.");
}

}  // namespace mullama::bind
