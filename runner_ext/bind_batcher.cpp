#include <pybind11/stl.h>

#include <optional>

#include "batcher.h"
#include "bindings.h"
#include "errors.h"
#include "slot_choice.h"

namespace mullama::bind {

void register_batcher(py::module_ & m) {
    py::class_<RequestStats>(m, "RequestStats", "Per-request measurements taken in the batching loop.")
        .def_readonly("prompt_tokens", &RequestStats::prompt_tokens)
        .def_readonly("cached_tokens", &RequestStats::cached_tokens)
        .def_readonly("evicted_tokens", &RequestStats::evicted_tokens)
        .def_readonly("completion_tokens", &RequestStats::completion_tokens)
        .def_readonly("queue_ms", &RequestStats::queue_ms)
        .def_readonly("prefill_ms", &RequestStats::prefill_ms)
        .def_readonly("ttft_ms", &RequestStats::ttft_ms)
        .def_readonly("decode_ms", &RequestStats::decode_ms)
        .def_readonly("total_ms", &RequestStats::total_ms)
        .def_readonly("itl_p50_ms", &RequestStats::itl_p50_ms)
        .def_readonly("itl_p95_ms", &RequestStats::itl_p95_ms)
        .def_readonly("slot", &RequestStats::slot)
        .def_readonly("pauses", &RequestStats::pauses)
        .def_readonly("swaps", &RequestStats::swaps)
        .def_readonly("kv_preemptions", &RequestStats::kv_preemptions)
        .def_readonly("adapter_waits", &RequestStats::adapter_waits)
        .def_readonly("context_shifts", &RequestStats::context_shifts)
        .def_readonly("adapters", &RequestStats::adapters)
        .def_readonly("draft_tokens", &RequestStats::draft_tokens)
        .def_readonly("draft_accepted", &RequestStats::draft_accepted);

    py::class_<AdapterInfo>(m, "AdapterInfo", "A loaded LoRA adapter.")
        .def_readonly("id", &AdapterInfo::id)
        .def_readonly("name", &AdapterInfo::name)
        .def_readonly("path", &AdapterInfo::path)
        .def_readonly("scale", &AdapterInfo::scale)
        .def_readonly("alpha", &AdapterInfo::alpha)
        .def_readonly("in_use", &AdapterInfo::in_use);

    py::class_<TokenProb>(m, "TokenProb", "A generated token's log-probability and the most likely alternatives.")
        .def_readonly("token", &TokenProb::token)
        .def_readonly("logprob", &TokenProb::logprob)
        .def_readonly("top", &TokenProb::top, "[(token, logprob)], most likely first");

    py::class_<Event>(m, "Event", "Output of one request since the last drain (coalesced).")
        .def_readonly("id", &Event::id)
        .def_property_readonly("text", [](const Event & e) { return to_str(e.text); })
        .def_readonly("tokens", &Event::tokens)
        .def_readonly("probs", &Event::probs, "one per token when the request asked for n_probs >= 0")
        .def_readonly("done", &Event::done)
        .def_readonly("first", &Event::first)
        .def_property_readonly("finish_reason", [](const Event & e) { return to_string(e.finish_reason); })
        .def_readonly("stop_string", &Event::stop_string)
        .def_readonly("error", &Event::error)
        .def_readonly("stats", &Event::stats);

    py::class_<SlotInfo>(m, "SlotInfo")
        .def_readonly("index", &SlotInfo::index)
        .def_readonly("state", &SlotInfo::state)
        .def_readonly("request_id", &SlotInfo::request_id)
        .def_readonly("n_tokens", &SlotInfo::n_tokens)
        .def_readonly("n_cached", &SlotInfo::n_cached)
        .def_readonly("n_prompt", &SlotInfo::n_prompt)
        .def_readonly("n_generated", &SlotInfo::n_generated)
        .def_readonly("adapters", &SlotInfo::adapters);

    py::class_<BatcherCounters>(m, "BatcherCounters")
        .def_readonly("requests", &BatcherCounters::requests)
        .def_readonly("tokens_in", &BatcherCounters::tokens_in)
        .def_readonly("tokens_out", &BatcherCounters::tokens_out)
        .def_readonly("decode_steps", &BatcherCounters::decode_steps)
        .def_readonly("batch_tokens", &BatcherCounters::batch_tokens)
        .def_readonly("prefix_hits", &BatcherCounters::prefix_hits)
        .def_readonly("prefix_misses", &BatcherCounters::prefix_misses)
        .def_readonly("prefix_evictions", &BatcherCounters::prefix_evictions)
        .def_readonly("cached_tokens", &BatcherCounters::cached_tokens)
        .def_readonly("parks", &BatcherCounters::parks)
        .def_readonly("unparks", &BatcherCounters::unparks)
        .def_readonly("parked_entries", &BatcherCounters::parked_entries)
        .def_readonly("parked_bytes", &BatcherCounters::parked_bytes)
        .def_readonly("swaps_out", &BatcherCounters::swaps_out)
        .def_readonly("kv_full", &BatcherCounters::kv_full)
        .def_readonly("kv_preemptions", &BatcherCounters::kv_preemptions)
        .def_readonly("adapter_switches", &BatcherCounters::adapter_switches)
        .def_readonly("context_shifts", &BatcherCounters::context_shifts)
        .def_readonly("draft_steps", &BatcherCounters::draft_steps)
        .def_readonly("draft_tokens", &BatcherCounters::draft_tokens)
        .def_readonly("draft_accepted", &BatcherCounters::draft_accepted);

    py::class_<SpecParams>(m, "SpecParams",
                           "Speculative decoding of a Batcher: n-gram drafters, or a draft model (draft-simple).")
        .def(py::init([](std::vector<std::string> types, int32_t n_max, int32_t n_min, int32_t ngram_n,
                         int32_t ngram_m, int32_t ngram_min_hits, std::string draft_model, int32_t draft_gpu_layers,
                         float draft_p_min) {
                 SpecParams p;
                 p.types = std::move(types);
                 p.draft_model = std::move(draft_model);
                 p.draft_gpu_layers = draft_gpu_layers;
                 p.draft_p_min = draft_p_min;
                 p.n_max = n_max;
                 p.n_min = n_min;
                 p.ngram_n = ngram_n;
                 p.ngram_m = ngram_m;
                 p.ngram_min_hits = ngram_min_hits;
                 return p;
             }),
             py::kw_only(), py::arg("types") = std::vector<std::string>{}, py::arg("n_max") = 16, py::arg("n_min") = 0,
             py::arg("ngram_n") = 12, py::arg("ngram_m") = 48, py::arg("ngram_min_hits") = 1,
             py::arg("draft_model") = "", py::arg("draft_gpu_layers") = -1, py::arg("draft_p_min") = 0.0f)
        .def_readonly("types", &SpecParams::types)
        .def_readonly("draft_model", &SpecParams::draft_model)
        .def_readonly("draft_gpu_layers", &SpecParams::draft_gpu_layers)
        .def_readonly("draft_p_min", &SpecParams::draft_p_min)
        .def_readonly("n_max", &SpecParams::n_max)
        .def_readonly("n_min", &SpecParams::n_min)
        .def_readonly("ngram_n", &SpecParams::ngram_n)
        .def_readonly("ngram_m", &SpecParams::ngram_m)
        .def_readonly("ngram_min_hits", &SpecParams::ngram_min_hits);

    py::class_<Batcher> batcher(m, "Batcher",
                                "Continuous batching over a Context's n_seq_max slots, on its own C++ thread. "
                                "Wait for event_fd to become readable, then drain().");
    batcher
        .def(py::init<const Model &, Context &, double, const SpecParams &>(), py::arg("model"), py::arg("context"),
             py::arg("signal_interval_ms") = 20.0, py::arg("speculative") = SpecParams(), py::keep_alive<1, 2>(),
             py::keep_alive<1, 3>(),
             py::call_guard<py::gil_scoped_release>())
        .def(
            "submit",
            [](Batcher & self, std::string id, std::vector<llama_token> prompt, GenerateParams params,
               int32_t repeat_limit, std::string group, std::optional<std::vector<std::pair<int32_t, float>>> lora,
               int32_t n_keep, bool speculative) {
                RequestSpec spec;
                spec.id = std::move(id);
                spec.prompt = std::move(prompt);
                spec.params = std::move(params);
                spec.repeat_limit = repeat_limit;
                spec.group = std::move(group);
                spec.lora_defaults = !lora.has_value();
                if (lora) spec.lora = std::move(*lora);
                spec.n_keep = n_keep;
                spec.speculative = speculative;
                py::gil_scoped_release nogil;
                self.submit(std::move(spec));
            },
            py::arg("id"), py::arg("prompt"), py::arg("params"), py::arg("repeat_limit") = 0, py::arg("group") = "",
            py::arg("lora") = py::none(), py::arg("n_keep") = 0, py::arg("speculative") = true,
            "Queue a request. `speculative=False`: no drafts for it when the batcher speculates. Requests of one `group` (the choices of an n > 1 request, same prompt) share one "
            "prefill: the others copy the first one's KV. `lora`: [(adapter id, scale)], None: every adapter at "
            "its default scale. `n_keep`: prompt tokens a context shift keeps (-1: all).")
        .def("add_adapter", &Batcher::add_adapter, py::arg("path"), py::arg("name") = "", py::arg("scale") = 1.0f,
             py::call_guard<py::gil_scoped_release>(),
             "Load a LoRA adapter (a path already loaded returns its id); returns its id.")
        .def("remove_adapter", &Batcher::remove_adapter, py::arg("id"),
             "Unload an adapter: new requests cannot use it; it is freed when no request holds it. False: unknown.")
        .def("adapters", &Batcher::adapters)
        .def_property_readonly("active_adapters", &Batcher::active_adapters)
        .def("set_context_shift", &Batcher::set_context_shift, py::arg("on"))
        .def("set_cache_ram", &Batcher::set_cache_ram, py::arg("bytes"), py::call_guard<py::gil_scoped_release>(),
             "Host memory for prefix caches out of the KV cache (0: idle caches stay there; negative: no limit). "
             "Parked caches beyond it go between two decode steps, their memory back to the system; waits for that.")
        .def_property_readonly("cache_ram", &Batcher::cache_ram)
        .def("set_adapter_turn", &Batcher::set_adapter_turn, py::arg("steps"),
             "Decode steps one LoRA set keeps the context while requests with another set wait.")
        .def("set_threads", &Batcher::set_threads, py::arg("n_threads"), py::arg("n_threads_batch"),
             py::call_guard<py::gil_scoped_release>(),
             "New decode thread pools of these sizes, between two decode steps (waits for the one in progress).")
        .def("drain", &Batcher::drain, "Events since the last drain, one per request (text and tokens joined).")
        .def_property_readonly("event_fd", &Batcher::event_fd)
        .def("slots", &Batcher::slots)
        .def("counters", &Batcher::counters)
        .def_property_readonly("queued", &Batcher::queued)
        .def_property_readonly("active", &Batcher::active)
        .def_property_readonly("live", &Batcher::live)
        .def_property_readonly("n_slots", &Batcher::n_slots)
        .def_property_readonly("n_ctx_slot", &Batcher::n_ctx_slot)
        .def_property_readonly("running", &Batcher::running)
        .def_property_readonly("stalled_ms", &Batcher::stalled_ms)
        .def_property_readonly("error", &Batcher::error)
        .def("stop", &Batcher::stop, py::call_guard<py::gil_scoped_release>(),
             "Stop the loop; unfinished requests end with finish reason 'error'.");
    // cancel(id) / pause(id) / resume(id) -> bool (False: unknown or already done).
    for (ControlOp op : {ControlOp::Cancel, ControlOp::Pause, ControlOp::Resume}) {
        batcher.def(
            to_string(op), [op](Batcher & self, const std::string & id) { return self.control(op, id); },
            py::arg("id"));
    }

    m.def(
        "choose_slot",
        [](const std::vector<llama_token> & prompt, const std::vector<std::vector<llama_token>> & caches,
           const std::vector<bool> & busy, const std::vector<uint64_t> & last_used) {
            if (busy.size() != caches.size() || last_used.size() != caches.size()) {
                raise(ErrorKind::InvalidArgument, "caches, busy and last_used must have one entry per slot");
            }
            std::vector<SlotView> views;
            views.reserve(caches.size());
            for (size_t i = 0; i < caches.size(); ++i) {
                views.push_back(slot_view(caches[i], prompt, busy[i], last_used[i]));
            }
            const SlotChoice c = choose_slot(views, prompt.size());
            return py::make_tuple(c.slot, c.reuse);
        },
        py::arg("prompt"), py::arg("caches"), py::arg("busy"), py::arg("last_used"),
        "The Batcher's slot choice for a new prompt, given per slot its cached tokens, whether it runs a "
        "request and its last-used stamp: (slot index or -1 when none is free, cached prompt tokens to reuse).");
}

}  // namespace mullama::bind
