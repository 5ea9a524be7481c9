// llama.cpp's RPC backend, both ends: a runner adds remote hosts as devices before it loads a
// model, and `mullama rpc-worker` serves this host's devices to them (the pinned source's own
// server, so both ends always speak the same protocol version).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mullama {

struct RemoteDevice {
    std::string endpoint;  // host:port of the worker
    std::string name;      // ggml's name for it in this process: RPC0, RPC1, ...
    uint32_t index = 0;    // the device's number on its worker
    size_t free = 0;
    size_t total = 0;
};

bool rpc_supported();

// Registers each worker's devices with ggml (once per endpoint) so that the next model load spreads
// layers over them; returns the devices. A worker that cannot be reached raises InvalidArgument
// (checked with a plain connect first: ggml's own client aborts the process on a failed connect).
std::vector<RemoteDevice> rpc_add_servers(const std::vector<std::string> & endpoints, double connect_timeout_s);

// Serves `devices` (names as ggml knows them; empty: the GPUs, else the CPU) on `endpoint` until the
// process ends. `memory_limit` > 0 caps the memory each device reports (free and total) so that a
// client plans with less than the host has. Blocks; call without the GIL.
void rpc_serve(const std::string & endpoint, const std::vector<std::string> & devices, size_t memory_limit,
               int n_threads, const std::string & cache_dir);

}  // namespace mullama
