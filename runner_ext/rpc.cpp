#include "rpc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>

#include "errors.h"
#include "ggml-backend-impl.h"
#include "ggml-backend.h"
#include "ggml-rpc.h"
#include "model.h"

namespace mullama {

namespace {

ggml_backend_reg_t rpc_reg() {
    ensure_backend();
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("RPC");
    if (!reg) raise(ErrorKind::InvalidArgument, "this build has no RPC backend (built with MULLAMA_RPC=OFF)");
    return reg;
}

// "" when host:port accepts a TCP connection within the timeout, else why not.
std::string try_connect(const std::string & endpoint, double timeout_s) {
    const auto colon = endpoint.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
        return "not host:port";
    }
    const std::string host = endpoint.substr(0, colon), port = endpoint.substr(colon + 1);
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;  // ggml's RPC client speaks IPv4 only
    hints.ai_socktype = SOCK_STREAM;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) return gai_strerror(rc);
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> keep(res, freeaddrinfo);
    const int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0) return std::strerror(errno);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    std::string why;
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            why = std::strerror(errno);
        } else {
            pollfd p{fd, POLLOUT, 0};
            const int n = poll(&p, 1, static_cast<int>(timeout_s * 1000));
            int err = 0;
            socklen_t len = sizeof(err);
            if (n == 0) {
                why = "no answer within " + std::to_string(timeout_s) + " s";
            } else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
                why = std::strerror(err ? err : errno);
            }
        }
    }
    close(fd);
    return why;
}

// A device whose reported memory is capped: a copy of the real device's interface with
// get_memory and init_backend replaced. The struct starts with the ggml device, so the
// pointer ggml hands back is ours.
struct Capped {
    ggml_backend_device dev;
    ggml_backend_dev_t real;
    size_t limit;
};

void capped_memory(ggml_backend_dev_t dev, size_t * free, size_t * total) {
    auto * c = reinterpret_cast<Capped *>(dev);
    c->real->iface.get_memory(c->real, free, total);
    *free = std::min(*free, c->limit);
    *total = std::min(*total, c->limit);
}

ggml_backend_t capped_init(ggml_backend_dev_t dev, const char * params) {
    auto * c = reinterpret_cast<Capped *>(dev);
    ggml_backend_t backend = c->real->iface.init_backend(c->real, params);
    if (backend) backend->device = dev;  // the RPC server asks the backend's device for memory
    return backend;
}

ggml_backend_dev_t capped(ggml_backend_dev_t real, size_t limit) {
    auto * c = new Capped{*real, real, limit};  // lives as long as the server, the whole process
    c->dev.iface.get_memory = capped_memory;
    c->dev.iface.init_backend = capped_init;
    return &c->dev;
}

}  // namespace

bool rpc_supported() {
    ensure_backend();
    return ggml_backend_reg_by_name("RPC") != nullptr;
}

std::vector<RemoteDevice> rpc_add_servers(const std::vector<std::string> & endpoints, double connect_timeout_s) {
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    ggml_backend_reg_t reg = rpc_reg();
    using add_fn = ggml_backend_reg_t (*)(const char *);
    auto add = reinterpret_cast<add_fn>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_rpc_add_server"));
    if (!add) raise(ErrorKind::Engine, "the RPC backend does not offer ggml_backend_rpc_add_server");
    std::vector<RemoteDevice> out;
    for (const auto & endpoint : endpoints) {
        if (const std::string why = try_connect(endpoint, connect_timeout_s); !why.empty()) {
            raise(ErrorKind::InvalidArgument, "RPC worker " + endpoint + " cannot be reached: " + why);
        }
        ggml_backend_reg_t server = add(endpoint.c_str());
        if (!server) raise(ErrorKind::InvalidArgument, "RPC worker " + endpoint + " offers no devices");
        bool known = false;
        for (size_t i = 0; i < ggml_backend_reg_count(); ++i) known |= ggml_backend_reg_get(i) == server;
        if (!known) ggml_backend_register(server);
        for (size_t i = 0; i < ggml_backend_reg_dev_count(server); ++i) {
            ggml_backend_dev_t dev = ggml_backend_reg_dev_get(server, i);
            RemoteDevice d;
            d.endpoint = endpoint;
            d.name = ggml_backend_dev_name(dev);
            d.index = static_cast<uint32_t>(i);
            ggml_backend_dev_memory(dev, &d.free, &d.total);
            out.push_back(std::move(d));
        }
    }
    return out;
}

void rpc_serve(const std::string & endpoint, const std::vector<std::string> & names, size_t memory_limit,
               int n_threads, const std::string & cache_dir) {
    ggml_backend_reg_t reg = rpc_reg();
    std::vector<ggml_backend_dev_t> devices;
    for (const auto & name : names) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
        if (!dev) {
            std::string known;
            for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
                known += (known.empty() ? "" : ", ") + std::string(ggml_backend_dev_name(ggml_backend_dev_get(i)));
            }
            raise(ErrorKind::InvalidArgument, "no device named '" + name + "' (devices: " + known + ")");
        }
        devices.push_back(dev);
    }
    if (devices.empty()) {  // as the pinned rpc-server: the GPUs, else the CPU
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            const auto type = ggml_backend_dev_type(dev);
            if (type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) {
                if (ggml_backend_dev_backend_reg(dev) != reg) devices.push_back(dev);
            }
        }
        if (devices.empty()) {
            ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
            if (!cpu) raise(ErrorKind::Engine, "no CPU device");
            devices.push_back(cpu);
        }
    }
    if (memory_limit > 0) {
        for (auto & dev : devices) dev = capped(dev, memory_limit);
    }
    using serve_fn = decltype(ggml_backend_rpc_start_server) *;
    auto serve = reinterpret_cast<serve_fn>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_rpc_start_server"));
    if (!serve) raise(ErrorKind::Engine, "the RPC backend does not offer ggml_backend_rpc_start_server");
    serve(endpoint.c_str(), cache_dir.empty() ? nullptr : cache_dir.c_str(), static_cast<size_t>(std::max(1, n_threads)),
          devices.size(), devices.data());
    // it returns only when it could not start (the reason went to stderr)
    raise(ErrorKind::InvalidArgument, "the RPC server could not listen on " + endpoint + " (see the log above)");
}

}  // namespace mullama
