// The continuous-batching loop: n_parallel slots share one Context; a C++
// thread admits requests between decode steps, mixes prompt chunks with the
// single decode tokens of running streams in one batch, samples, applies
// stop strings / EOS / limits / the repetition detector, and publishes
// events. Python never runs per token: it is woken through an eventfd and
// drains the events of all streams at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "context.h"
#include "errors.h"
#include "finish_reason.h"
#include "generate.h"
#include "lora.h"
#include "model.h"
#include "sampler.h"
#include "text_stream.h"

struct common_speculative;  // llama.cpp common/speculative.h

namespace mullama {

class DraftModel;  // spec_draft.h

// Speculative decoding through llama.cpp's common/speculative: each step, a generating stream may add a
// draft of tokens after its pending token, guessed from its own context (n-gram lookups) or by a smaller
// draft model with the same vocabulary (spec_draft.h); the one batched decode verifies every stream's draft
// with the others' tokens, and the accepted prefix plus one sampled token come out of a single step.
// Output is what sampling would give without the draft.
struct SpecParams {
    std::vector<std::string> types;   // common_speculative names: ngram-simple, ngram-map-k, ngram-map-k4v,
                                      // ngram-mod, ngram-cache, draft-simple (empty: off); tried in
                                      // llama.cpp's order (the n-gram drafters first)
    std::string draft_model;          // draft-simple: the draft model's GGUF file
    int32_t draft_gpu_layers = -1;    // ... its layers on GPUs (-1: all that fit)
    float draft_p_min = 0.0f;         // ... a drafted token less likely than this (draft model) ends the draft
    int32_t n_max = 16;               // draft at most this many tokens per step
    int32_t n_min = 0;                // a shorter draft is not verified (0: any)
    int32_t ngram_n = 12;             // n-gram modes: the lookup key's length ...
    int32_t ngram_m = 48;             // ... the longest continuation proposed ...
    int32_t ngram_min_hits = 1;       // ... and how often it must have been seen
};

struct RequestSpec {
    std::string id;                   // unique among live requests
    std::vector<llama_token> prompt;
    GenerateParams params;
    std::string group;                // choices of one prompt (n > 1): the members share its prefill (see admit)
    int32_t repeat_limit = 0;         // a block of 1..8 tokens repeated more than this many times in a row ends
                                      // the request with finish reason repeat_limit (0: off)
    std::vector<std::pair<int32_t, float>> lora;  // (adapter id, scale): its LoRA set ...
    bool lora_defaults = true;        // ... or, when true, every loaded adapter at its default scale
    int32_t n_keep = 0;               // prompt tokens a context shift keeps (after BOS); -1: the whole prompt
    bool speculative = true;          // draft for it when the batcher speculates (false: opt out)
};

struct RequestStats {
    int32_t prompt_tokens = 0;
    int32_t cached_tokens = 0;        // reused from the prefix cache
    int32_t evicted_tokens = 0;       // cached tokens of its slot that it threw away (did not share)
    int32_t completion_tokens = 0;
    double queue_ms = 0;              // submit -> slot assigned
    double prefill_ms = 0;            // first prompt chunk decoded -> prompt done
    double ttft_ms = 0;               // submit -> first token
    double decode_ms = 0;             // first token -> last token
    double total_ms = 0;              // submit -> done
    double itl_p50_ms = 0;            // inter-token gaps
    double itl_p95_ms = 0;
    int32_t slot = -1;                // last slot it ran in
    int32_t pauses = 0;
    int32_t swaps = 0;                // times its state was saved to host memory to free the slot
    int32_t kv_preemptions = 0;       // of those, times it gave way because the shared KV cache was full
    int32_t adapter_waits = 0;        // decode steps it sat out while requests with other LoRA adapters ran
    int32_t context_shifts = 0;       // times its context was full and its older half was dropped
    std::string adapters;             // its LoRA set, "id:scale,..." ("" none)
    int32_t draft_tokens = 0;         // speculative tokens drafted for it and verified ...
    int32_t draft_accepted = 0;       // ... and of those, accepted
};

// A generated token's log-probability under the model (softmax of the raw logits, before sampling),
// and the n_probs most likely tokens with theirs, most likely first.
struct TokenProb {
    llama_token token = -1;
    float logprob = 0.0f;
    std::vector<std::pair<llama_token, float>> top;
};

struct Event {
    std::string id;
    std::string text;                 // whole UTF-8 only
    std::vector<llama_token> tokens;
    std::vector<TokenProb> probs;     // one per token when the request asked for n_probs >= 0
    bool done = false;
    bool first = false;               // carries the request's first token
    FinishReason finish_reason = FinishReason::None;  // Python sees to_string(): "" until done
    std::string stop_string;
    std::string error;
    RequestStats stats;
};

// What cancel / pause / resume ask of the loop; Python calls them by to_string(op).
enum class ControlOp { Cancel, Pause, Resume };

const char * to_string(ControlOp op);                                // "cancel" | "pause" | "resume"
std::optional<ControlOp> control_op_from_string(std::string_view name);

struct SlotInfo {
    int32_t index = 0;
    std::string state;                // idle | prefill | generating | paused
    std::string request_id;
    int32_t n_tokens = 0;             // tokens whose KV the slot holds
    int32_t n_cached = 0;             // of the current request's prompt, reused from the cache
    int32_t n_prompt = 0;
    int32_t n_generated = 0;
    std::string adapters;             // the LoRA set its KV was computed with ("id:scale,...")
};

struct BatcherCounters {
    uint64_t requests = 0;
    uint64_t tokens_in = 0;           // prompt tokens evaluated (not reused)
    uint64_t tokens_out = 0;
    uint64_t decode_steps = 0;
    uint64_t batch_tokens = 0;        // sum of batch sizes (average = batch_tokens / decode_steps)
    uint64_t prefix_hits = 0;
    uint64_t prefix_misses = 0;
    uint64_t prefix_evictions = 0;
    uint64_t cached_tokens = 0;
    uint64_t parks = 0;               // prefix caches moved to host memory (see set_cache_ram) ...
    uint64_t unparks = 0;             // ... loaded back into a slot for a request that reuses one ...
    uint64_t parked_entries = 0;      // ... held there now ...
    uint64_t parked_bytes = 0;        // ... and the bytes they take
    uint64_t swaps_out = 0;
    uint64_t kv_full = 0;             // decodes that found the KV cache full
    uint64_t kv_preemptions = 0;      // running requests swapped out to make room (they resume later)
    uint64_t adapter_switches = 0;    // decode steps whose LoRA set differed from the step before
    uint64_t context_shifts = 0;
    uint64_t draft_steps = 0;         // stream-steps that verified a draft
    uint64_t draft_tokens = 0;        // tokens drafted and verified
    uint64_t draft_accepted = 0;      // of those, accepted
};

class Batcher {
public:
    // signal_interval_ms: the eventfd is written at most this often while streams run
    // (first tokens and final events go at once). Each wake-up of Python costs the
    // decode threads a time slice on a small machine; fewer, fuller wake-ups keep
    // throughput while chunks stay frequent enough for streaming.
    Batcher(const Model & model, Context & ctx, double signal_interval_ms = 20.0, const SpecParams & spec = {});
    ~Batcher();
    Batcher(const Batcher &) = delete;
    Batcher & operator=(const Batcher &) = delete;

    // Validates and queues. Throws InvalidArgument (duplicate id, empty prompt,
    // bad sampling params) or ContextOverflow (prompt does not fit a slot).
    void submit(RequestSpec spec);
    // Queue cancel / pause / resume of a live request for the loop; false: unknown or already done.
    bool control(ControlOp op, const std::string & id);

    std::vector<Event> drain();            // coalesced per request
    int event_fd() const { return event_fd_; }

    std::vector<SlotInfo> slots() const;
    // LoRA adapters (see lora.h). add_adapter waits for the decode step in progress; ids are never reused.
    int32_t add_adapter(const std::string & path, const std::string & name, float scale);
    bool remove_adapter(int32_t id);
    std::vector<AdapterInfo> adapters() const { return adapters_.list(); }
    std::string active_adapters() const;   // the set of the last decode step ("id:scale,...")
    // When on, a stream that fills its slot's context keeps n_keep prompt tokens, drops half of the rest and
    // goes on (the kept tokens after the dropped ones are evaluated again); when off it ends with context_full.
    void set_context_shift(bool on) { context_shift_.store(on); }
    // Decode steps one LoRA set keeps the context while requests with another set wait (>= 1; default 16):
    // longer turns switch less (each switch re-reserves llama.cpp's graph), shorter ones start every set sooner.
    void set_adapter_turn(int32_t steps);
    // Host memory for prefix caches, in bytes (0: off; negative: no limit). When on, a request coming into
    // a slot moves every other idle slot's cache out of the shared KV cache into host memory, and so does
    // the slot's own cache where the request would overwrite most of it; a request whose prompt starts
    // with a cache held there (longer than what its slot holds) loads it back into its slot. Least
    // recently used caches go beyond the limit. In one shared cache every decode attends over every cell
    // up to the last one in use, so idle caches left there slow every running stream (8-9 % at one
    // stream with 8 slots: benchmarks/idle_caches.py); and host memory holds many more prompts than the
    // slots do. llama-server's --cache-ram does the same. A lower limit drops the least recently used
    // parked caches at once and gives their memory back to the system, between two decode steps (waits for
    // the one in progress): the supervisor shares host memory among its runners' caches.
    void set_cache_ram(int64_t bytes);
    int64_t cache_ram() const { return cache_ram_.load(); }
    // New decode thread pools of these sizes, between two decode steps (waits for the one in progress):
    // the supervisor's core allotment changes as models load and unload.
    void set_threads(int32_t n_threads, int32_t n_threads_batch);
    BatcherCounters counters() const;
    size_t queued() const;                 // waiting for a slot
    size_t active() const;                 // taken from the queue, not finished (in a slot or swapped out)
    size_t live() const;                   // submitted and not finished: queued + active, exact
    int32_t n_slots() const { return n_slots_; }
    uint32_t n_ctx_slot() const { return n_ctx_slot_; }
    bool running() const;
    // How long the loop has been in its current pass (controls, admission, one decode step, events);
    // 0 while it sleeps for lack of work. A pass that never ends is a loop stuck while the runner's
    // HTTP side still answers: the supervisor's liveness probe reads this through /health.
    double stalled_ms() const;
    std::string error() const;             // why the loop stopped, if it did

    // Stop the loop; unfinished requests end with finish reason "error".
    void stop();

private:
    using Clock = std::chrono::steady_clock;
    struct Request;
    struct Slot;
    struct Parked;

    // batcher.cpp: the thread, its wake-ups, events and the slot snapshot
    void loop();
    bool has_work() const;  // the one test of whether the loop has anything to do; mu_ held
    void publish(Event ev);
    void signal(bool force);  // write the eventfd if events wait and it is time
    void snapshot();
    // batcher_admit.cpp: controls, admission into slots, swapping, prefix caches
    void apply_controls();
    void admit();
    std::unique_ptr<Request> next_candidate(bool & from_swap);
    void put_back(std::unique_ptr<Request> req, bool from_swap);
    void swap_out(Slot & s);
    bool restore(Request & r, Slot & s);
    void free_idle_caches();
    void trim_idle_caches(int64_t extra);
    bool parking() const { return shared_kv_ && cache_ram_.load() != 0; }
    void park(Slot & s);
    void park_idle(const Slot * keep);
    size_t drop_parked_beyond(int64_t limit);  // least recently used first; returns how many went
    void apply_cache_ram();                    // on the loop thread: a new limit set_cache_ram waits on
    size_t take_parked(Slot & s, const Request & r, size_t reuse);
    bool kv_room_for(const Request & r) const;
    bool make_kv_room_for(const Request & r);
    // batcher_step.cpp: one decode step, sampling and the end of a request
    void step();
    void handle_decode_error(const Error & e);
    void sample_slot(Slot & s);
    void verify_slot(Slot & s);
    bool emit(Slot & s, llama_token tok, TokenProb prob, Clock::time_point now);
    void draft_for(const std::vector<Slot *> & slots);
    bool sync_draft(const std::vector<Slot *> & drafting);
    Slot * group_donor(const Request & r, bool & wait);
    const std::string * step_adapters();
    bool shift_context(Slot & s);
    void finish(Slot & s, FinishReason reason, const std::string & error = {});
    void finish_request(Request & r, FinishReason reason, const std::string & error);

    std::shared_ptr<ModelHandle> model_handle_;
    std::unique_ptr<Context::Claim> claim_;  // the loop owns the context while it runs
    const Model & model_;
    Context & ctx_;
    int32_t n_slots_;
    uint32_t n_ctx_slot_;
    uint32_t n_ctx_;             // cells of the whole KV cache
    bool shared_kv_;             // one cache for all slots (kv_unified): requests compete for its cells
    uint32_t n_batch_;
    int event_fd_ = -1;
    double signal_interval_ms_;
    bool unsignalled_ = false;   // events published since the last eventfd write
    bool urgent_ = false;        // ... among them a first token or a final event
    Clock::time_point last_signal_{};

    // owned by the loop thread
    std::vector<std::unique_ptr<Slot>> slot_;
    std::deque<std::unique_ptr<Request>> swapped_;  // moved out of their slot: paused, or waiting for KV room
    std::vector<Parked> parked_;                    // prefix caches in host memory (set_cache_ram)
    std::unique_ptr<Batch> batch_;
    uint64_t tick_ = 0;
    std::string active_key_;     // the LoRA set the context applies
    int32_t turn_ = 0;           // decode steps the active set has had while another set waited

    // shared, under mu_
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::condition_variable cache_ram_set_;         // set_cache_ram waits on it for the loop's trim
    uint64_t cache_ram_asked_ = 0, cache_ram_done_ = 0;  // set_cache_ram calls, and those the loop applied
    std::deque<std::unique_ptr<Request>> pending_;
    std::deque<std::pair<ControlOp, std::string>> controls_;
    std::map<std::string, int> live_;                  // ids of requests not yet done
    std::vector<Event> events_;
    std::vector<SlotInfo> slot_snapshot_;
    BatcherCounters counters_;
    bool stop_ = false;
    bool collect_ = false;       // an adapter was removed: the loop frees what no request holds
    bool running_ = false;
    // written by the loop thread, read by stalled_ms() from any thread
    std::atomic<bool> waiting_{true};     // asleep for lack of work, or stopped
    std::atomic<Clock::rep> iteration_start_{0};
    std::string error_;
    std::string active_snapshot_;  // active_key_ for readers, under mu_
    AdapterRegistry adapters_;
    std::mutex engine_mu_;         // held by the loop's passes and by add_adapter: the model's adapter list
    std::atomic<bool> context_shift_{false};
    std::atomic<int32_t> adapter_turn_{16};
    std::atomic<int64_t> cache_ram_{0};
    SpecParams spec_params_;
    std::unique_ptr<DraftModel> draft_;    // draft-simple's model and context; null: none
    common_speculative * spec_ = nullptr;  // null: no speculation
    std::thread thread_;
};

// The log-probability of `token` under `logits` (log-softmax) and the `n` most likely tokens with theirs.
TokenProb token_prob(const float * logits, int32_t n_vocab, llama_token token, int32_t n);

// Smallest x such that at least q of the values are <= x (q in [0, 1]).
double percentile(std::vector<double> values, double q);

}  // namespace mullama
