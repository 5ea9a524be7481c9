// The Batcher's thread and public face: submit / control / drain, the
// eventfd wake-ups, the slot snapshot, and the loop that runs
// apply_controls -> admit -> step while has_work(). Admission lives in
// batcher_admit.cpp, the decode step and the end of requests in batcher_step.cpp.
#include "batcher.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "batcher_internal.h"
#include "errors.h"
#include "spec_draft.h"

namespace mullama {

namespace {

constexpr std::pair<ControlOp, const char *> kControlNames[] = {
    {ControlOp::Cancel, "cancel"},
    {ControlOp::Pause, "pause"},
    {ControlOp::Resume, "resume"},
};

}  // namespace

const char * to_string(ControlOp op) {
    for (const auto & [o, name] : kControlNames) {
        if (o == op) return name;
    }
    return "cancel";  // unreachable: every enumerator is in the table
}

std::optional<ControlOp> control_op_from_string(std::string_view name) {
    for (const auto & [o, n] : kControlNames) {
        if (name == n) return o;
    }
    return std::nullopt;
}

common_speculative * make_speculative(const SpecParams & p, int32_t n_seq, llama_context * tgt,
                                      DraftModel * draft);  // batcher_spec.cpp
std::unique_ptr<DraftModel> make_draft(const SpecParams & p, const Context & ctx);
void free_speculative(common_speculative * spec);

Batcher::Batcher(const Model & model, Context & ctx, double signal_interval_ms, const SpecParams & spec)
    : model_handle_(model.handle()), claim_(std::make_unique<Context::Claim>(ctx, "a Batcher")), model_(model), ctx_(ctx),
      signal_interval_ms_(signal_interval_ms), adapters_(model.handle()) {
    if (!(signal_interval_ms >= 0.0 && signal_interval_ms <= 1000.0)) {
        raise(ErrorKind::InvalidArgument, "signal_interval_ms must be in [0, 1000]");
    }
    n_slots_ = static_cast<int32_t>(ctx.params().n_seq_max);
    n_ctx_slot_ = ctx.n_ctx_seq();
    n_ctx_ = ctx.n_ctx();
    shared_kv_ = ctx.params().kv_unified && n_slots_ > 1;
    n_batch_ = ctx.params().n_batch;
    spec_params_ = spec;
    draft_ = make_draft(spec, ctx);  // may refuse the parameters: before anything needs freeing
    spec_ = make_speculative(spec, n_slots_, ctx.raw(), draft_.get());
    event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (event_fd_ < 0) {
        raise(ErrorKind::Engine, std::string("eventfd failed: ") + std::strerror(errno));
    }
    for (int32_t i = 0; i < n_slots_; ++i) {
        auto s = std::make_unique<Slot>();
        s->index = i;
        slot_.push_back(std::move(s));
    }
    ctx_.kv_clear();
    batch_ = std::make_unique<Batch>(static_cast<int32_t>(n_batch_), n_slots_);
    snapshot();
    running_ = true;
    thread_ = std::thread([this] { loop(); });
}

Batcher::~Batcher() {
    stop();
    if (!active_key_.empty()) {  // the registry frees its adapters next: the context must not point at them
        try {
            llama_set_adapters_lora(ctx_.raw(), nullptr, 0, nullptr);
        } catch (const Error &) {  // the context is closed already: nothing points at them
        }
    }
    claim_.reset();
    free_speculative(spec_);
    if (event_fd_ >= 0) close(event_fd_);
}

double Batcher::stalled_ms() const {
    if (waiting_.load()) return 0.0;
    const auto started = Clock::time_point(Clock::duration(iteration_start_.load()));
    return std::max(0.0, ms_between(started, Clock::now()));
}

void Batcher::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Batcher::submit(RequestSpec spec) {
    if (spec.id.empty()) raise(ErrorKind::InvalidArgument, "request id must not be empty");
    if (spec.prompt.empty()) raise(ErrorKind::InvalidArgument, "prompt is empty");
    const int32_t n_vocab = model_.info().n_vocab;
    for (llama_token t : spec.prompt) {
        if (t < 0 || t >= n_vocab) {
            raise(ErrorKind::InvalidArgument, "token id " + std::to_string(t) + " out of range [0, " +
                                                  std::to_string(n_vocab) + ")");
        }
    }
    if (spec.prompt.size() >= n_ctx_slot_) {
        raise(ErrorKind::ContextOverflow, "prompt has " + std::to_string(spec.prompt.size()) +
                                              " tokens but a slot holds " + std::to_string(n_ctx_slot_) +
                                              " (the prompt plus at least one generated token must fit)");
    }
    if (spec.repeat_limit < 0) raise(ErrorKind::InvalidArgument, "repeat_limit must be >= 0");
    if (spec.n_keep < -1) raise(ErrorKind::InvalidArgument, "n_keep must be >= -1");
    auto r = std::make_unique<Request>();
    r->lora = adapters_.resolve(spec.lora, spec.lora_defaults);  // throws for an adapter not loaded
    r->stats.adapters = r->lora.key;
    // validates sampling params; ignore_eos bans the end tokens, as llama-server does
    r->sampler = std::make_unique<Sampler>(model_, spec.params.sampling, spec.params.ignore_eos);
    r->stream = std::make_unique<TextStream>(spec.params.stop);
    r->stats.prompt_tokens = static_cast<int32_t>(spec.prompt.size());
    r->t_submit = Clock::now();
    r->spec = std::move(spec);
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!running_) raise(ErrorKind::Closed, "the batching loop is not running" + (error_.empty() ? "" : ": " + error_));
        if (live_.count(r->spec.id)) raise(ErrorKind::InvalidArgument, "duplicate request id '" + r->spec.id + "'");
        live_[r->spec.id] = 1;
        counters_.requests++;
        pending_.push_back(std::move(r));
    }
    cv_.notify_all();
}

int32_t Batcher::add_adapter(const std::string & path, const std::string & name, float scale) {
    std::lock_guard<std::mutex> engine(engine_mu_);
    return adapters_.add(path, name, scale);
}

bool Batcher::remove_adapter(int32_t id) {
    if (!adapters_.remove(id)) return false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        collect_ = true;  // the loop frees it (it owns the context, which may apply it) once no request holds it
    }
    cv_.notify_all();
    return true;
}

void Batcher::set_adapter_turn(int32_t steps) {
    if (steps < 1) raise(ErrorKind::InvalidArgument, "adapter_turn must be at least 1 step");
    adapter_turn_.store(steps);
}

void Batcher::set_threads(int32_t n_threads, int32_t n_threads_batch) {
    std::lock_guard<std::mutex> engine(engine_mu_);
    ctx_.set_threads(n_threads, n_threads_batch);
    if (draft_) draft_->follow_threads(ctx_);
}

std::string Batcher::active_adapters() const {
    std::lock_guard<std::mutex> lock(mu_);
    return active_snapshot_;
}

bool Batcher::control(ControlOp op, const std::string & id) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!live_.count(id)) return false;
    controls_.emplace_back(op, id);
    cv_.notify_all();
    return true;
}

std::vector<Event> Batcher::drain() {
    std::vector<Event> raw;
    {
        std::lock_guard<std::mutex> lock(mu_);
        raw.swap(events_);
    }
    std::vector<Event> out;
    std::map<std::string, size_t> at;
    for (auto & e : raw) {
        auto it = at.find(e.id);
        if (it == at.end() || out[it->second].done) {
            at[e.id] = out.size();
            out.push_back(std::move(e));
            continue;
        }
        Event & o = out[it->second];
        o.first = o.first || e.first;
        o.text += e.text;
        o.tokens.insert(o.tokens.end(), e.tokens.begin(), e.tokens.end());
        o.probs.insert(o.probs.end(), std::make_move_iterator(e.probs.begin()),
                       std::make_move_iterator(e.probs.end()));
        if (e.done) {
            o.done = true;
            o.finish_reason = std::move(e.finish_reason);
            o.stop_string = std::move(e.stop_string);
            o.error = std::move(e.error);
            o.stats = e.stats;
        }
    }
    return out;
}

std::vector<SlotInfo> Batcher::slots() const {
    std::lock_guard<std::mutex> lock(mu_);
    return slot_snapshot_;
}

BatcherCounters Batcher::counters() const {
    std::lock_guard<std::mutex> lock(mu_);
    return counters_;
}

size_t Batcher::queued() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_.size();
}

size_t Batcher::active() const {
    // live_ counts every request from submit to its final event; the rest wait in the queue.
    std::lock_guard<std::mutex> lock(mu_);
    return live_.size() - std::min(live_.size(), pending_.size());
}

size_t Batcher::live() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.size();
}

bool Batcher::running() const {
    std::lock_guard<std::mutex> lock(mu_);
    return running_;
}

std::string Batcher::error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
}

// ---------------------------------------------------------------- loop thread

void Batcher::publish(Event ev) {
    unsignalled_ = true;
    urgent_ = urgent_ || ev.done || ev.first;
    std::lock_guard<std::mutex> lock(mu_);
    if (ev.done) live_.erase(ev.id);
    events_.push_back(std::move(ev));
}

void Batcher::signal(bool force) {
    if (!unsignalled_) return;
    const auto now = Clock::now();
    if (!force && !urgent_ && ms_between(last_signal_, now) < signal_interval_ms_) return;
    unsignalled_ = urgent_ = false;
    last_signal_ = now;
    const uint64_t one = 1;
    ssize_t n = write(event_fd_, &one, sizeof(one));
    (void)n;  // EAGAIN only when the counter is saturated: the reader is awake anyway
}

void Batcher::snapshot() {
    std::vector<SlotInfo> snap;
    for (const auto & s : slot_) {
        SlotInfo i;
        i.index = s->index;
        i.n_tokens = static_cast<int32_t>(s->cache.size());
        if (s->req) {
            const Request & r = *s->req;
            i.request_id = r.spec.id;
            i.state = r.paused ? "paused"
                      : r.n_past < static_cast<int32_t>(r.spec.prompt.size()) ? "prefill" : "generating";
            i.n_tokens = r.n_past;
            i.n_cached = r.stats.cached_tokens;
            i.n_prompt = static_cast<int32_t>(r.spec.prompt.size());
            i.n_generated = static_cast<int32_t>(r.generated.size());
            i.adapters = r.lora.key;
        } else {
            i.state = "idle";
            i.adapters = s->cache_key;
        }
        snap.push_back(std::move(i));
    }
    uint64_t parked_bytes = 0;
    for (const auto & p : parked_) parked_bytes += p.state.size();
    std::lock_guard<std::mutex> lock(mu_);
    counters_.parked_entries = parked_.size();
    counters_.parked_bytes = parked_bytes;
    slot_snapshot_ = std::move(snap);
    active_snapshot_ = active_key_;
}

// Stopping, a control to apply, or a request that is not paused anywhere (queued,
// in a slot, swapped out). Called with mu_ held, on the loop thread (which owns
// slot_ and swapped_).
bool Batcher::has_work() const {
    if (stop_ || collect_ || !controls_.empty() || cache_ram_asked_ != cache_ram_done_) return true;
    for (const auto & r : pending_) {
        if (!r->paused) return true;
    }
    for (const auto & s : slot_) {
        if (s->req && !s->req->paused) return true;
    }
    for (const auto & r : swapped_) {
        if (!r->paused) return true;
    }
    return false;
}

void Batcher::loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            if (!has_work()) {
                lock.unlock();
                signal(true);  // going idle: nothing may wait for the next interval
                lock.lock();
            }
            waiting_.store(true);
            cv_.wait(lock, [this] { return has_work(); });
            if (stop_) break;
            iteration_start_.store(Clock::now().time_since_epoch().count());  // before waiting_: no stale start
            waiting_.store(false);
        }
        try {
            std::lock_guard<std::mutex> engine(engine_mu_);
            apply_cache_ram();
            apply_controls();
            admit();
            step();
            {
                std::lock_guard<std::mutex> lock(mu_);
                collect_ = false;
            }
            if (!adapters_.collect().empty() && !active_key_.empty()) {  // removed adapters no request holds now
                llama_set_adapters_lora(ctx_.raw(), nullptr, 0, nullptr);
                active_key_.clear();
            }
        } catch (const std::exception & e) {
            // A failure outside decode (e.g. the context was closed): end everything.
            std::string what = e.what();
            for (auto & s : slot_) {
                if (s->req) finish(*s, FinishReason::Error, what);
            }
            std::lock_guard<std::mutex> lock(mu_);
            error_ = what;
            stop_ = true;
        }
        snapshot();
        signal(false);
    }
    // Unfinished requests end with an error event: no client waits forever.
    std::vector<std::unique_ptr<Request>> rest;
    {
        std::lock_guard<std::mutex> lock(mu_);
        running_ = false;
        for (auto & r : pending_) rest.push_back(std::move(r));
        pending_.clear();
    }
    cache_ram_set_.notify_all();
    for (auto & s : slot_) {
        if (s->req) finish(*s, FinishReason::Error, "runner stopped");
    }
    for (auto & r : swapped_) finish_request(*r, FinishReason::Error, "runner stopped");
    swapped_.clear();
    for (auto & r : rest) finish_request(*r, FinishReason::Error, "runner stopped");
    snapshot();
    signal(true);
}

}  // namespace mullama
