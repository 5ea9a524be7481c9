#include "batcher.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "errors.h"

namespace mullama {

namespace {

constexpr int kCancel = 0;
constexpr int kPause = 1;
constexpr int kResume = 2;

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

size_t common_prefix(const std::vector<llama_token> & a, const std::vector<llama_token> & b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

// True when the last tokens are one block of k (1..8) tokens repeated more than `limit` times.
bool repeats(const std::vector<llama_token> & t, int32_t limit) {
    if (limit <= 0) return false;
    const size_t reps = static_cast<size_t>(limit) + 1;
    for (size_t k = 1; k <= 8; ++k) {
        if (t.size() < k * reps) break;
        const size_t base = t.size() - k;
        bool all = true;
        for (size_t r = 1; r < reps && all; ++r) {
            for (size_t j = 0; j < k; ++j) {
                if (t[base + j] != t[base - r * k + j]) {
                    all = false;
                    break;
                }
            }
        }
        if (all) return true;
    }
    return false;
}

}  // namespace

double percentile(std::vector<double> values, double q) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const double pos = q * static_cast<double>(values.size());
    size_t idx = pos <= 1.0 ? 0 : static_cast<size_t>(std::ceil(pos)) - 1;
    return values[std::min(idx, values.size() - 1)];
}

struct Batcher::Request {
    RequestSpec spec;
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<TextStream> stream;
    std::vector<llama_token> generated;
    llama_token pending = -1;           // sampled, not yet decoded
    int32_t n_past = 0;                 // tokens in the KV (prompt + decoded generated)
    bool paused = false;
    bool cancelled = false;
    std::vector<uint8_t> saved_state;   // when swapped out
    RequestStats stats;
    Clock::time_point t_submit, t_admit, t_prefill_start, t_first, t_last;
    bool prefill_started = false;
    std::vector<double> gaps;
};

struct Batcher::Slot {
    int32_t index = 0;
    std::unique_ptr<Request> req;       // null: idle
    std::vector<llama_token> cache;     // tokens whose KV this sequence holds (idle slots: the prefix cache)
    int32_t i_batch = -1;               // logits index in the current batch
    int32_t chunk = 0;                  // prompt tokens added to the current batch
    uint64_t last_used = 0;
};

Batcher::Batcher(const Model & model, Context & ctx, double signal_interval_ms)
    : model_handle_(model.handle()), claim_(std::make_unique<Context::Claim>(ctx, "a Batcher")), model_(model), ctx_(ctx),
      signal_interval_ms_(signal_interval_ms) {
    if (!(signal_interval_ms >= 0.0 && signal_interval_ms <= 1000.0)) {
        raise(ErrorKind::InvalidArgument, "signal_interval_ms must be in [0, 1000]");
    }
    n_slots_ = static_cast<int32_t>(ctx.params().n_seq_max);
    n_ctx_slot_ = ctx.n_ctx_seq();
    n_batch_ = ctx.params().n_batch;
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
    claim_.reset();
    if (event_fd_ >= 0) close(event_fd_);
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
    auto r = std::make_unique<Request>();
    r->sampler = std::make_unique<Sampler>(model_, spec.params.sampling);  // validates sampling params
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

bool Batcher::control(int op, const std::string & id) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!live_.count(id)) return false;
    controls_.emplace_back(op, id);
    cv_.notify_all();
    return true;
}

bool Batcher::cancel(const std::string & id) { return control(kCancel, id); }

bool Batcher::pause(const std::string & id) { return control(kPause, id); }

bool Batcher::resume(const std::string & id) { return control(kResume, id); }

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
        } else {
            i.state = "idle";
        }
        snap.push_back(std::move(i));
    }
    std::lock_guard<std::mutex> lock(mu_);
    slot_snapshot_ = std::move(snap);
}

void Batcher::finish_request(Request & r, const char * reason, const std::string & error) {
    const auto now = Clock::now();
    Event ev;
    ev.id = r.spec.id;
    if (std::string(reason) != "stop" || r.stream->matched_stop().empty()) {
        ev.text = r.stream->flush();
    }
    ev.done = true;
    ev.finish_reason = reason;
    ev.stop_string = r.stream->matched_stop();
    ev.error = error;
    r.stats.completion_tokens = static_cast<int32_t>(r.generated.size());
    r.stats.total_ms = ms_between(r.t_submit, now);
    if (!r.generated.empty()) {
        r.stats.decode_ms = ms_between(r.t_first, r.t_last);
    }
    r.stats.itl_p50_ms = percentile(r.gaps, 0.50);
    r.stats.itl_p95_ms = percentile(r.gaps, 0.95);
    ev.stats = r.stats;
    publish(std::move(ev));
}

void Batcher::finish(Slot & s, const char * reason, const std::string & error) {
    Request & r = *s.req;
    // The slot keeps what its sequence holds as a prefix for the next request.
    s.cache = r.spec.prompt;
    s.cache.insert(s.cache.end(), r.generated.begin(), r.generated.end());
    s.cache.resize(std::min(s.cache.size(), static_cast<size_t>(std::max(r.n_past, 0))));
    if (std::string(reason) == "error") {
        ctx_.kv_seq_rm(s.index, -1, -1);
        s.cache.clear();
    }
    std::unique_ptr<Request> done = std::move(s.req);
    s.i_batch = -1;
    s.last_used = ++tick_;
    snapshot();  // a reader that sees the done event sees the slot idle
    finish_request(*done, reason, error);
}

void Batcher::swap_out(Slot & s) {
    Request & r = *s.req;
    r.saved_state = ctx_.seq_state_save(s.index);
    r.stats.swaps++;
    ctx_.kv_seq_rm(s.index, -1, -1);
    s.cache.clear();
    {
        std::lock_guard<std::mutex> lock(mu_);
        counters_.swaps_out++;
    }
    swapped_.push_back(std::move(s.req));
    s.i_batch = -1;
}

void Batcher::free_idle_caches() {
    for (auto & s : slot_) {
        if (!s->req && !s->cache.empty()) {
            ctx_.kv_seq_rm(s->index, -1, -1);
            s->cache.clear();
            std::lock_guard<std::mutex> lock(mu_);
            counters_.prefix_evictions++;
        }
    }
}

void Batcher::apply_controls() {
    std::deque<std::pair<int, std::string>> ops;
    std::deque<std::unique_ptr<Request>> incoming;
    {
        std::lock_guard<std::mutex> lock(mu_);
        ops.swap(controls_);
    }
    auto find_req = [&](const std::string & id) -> Request * {
        for (auto & s : slot_) {
            if (s->req && s->req->spec.id == id) return s->req.get();
        }
        for (auto & r : swapped_) {
            if (r->spec.id == id) return r.get();
        }
        std::lock_guard<std::mutex> lock(mu_);
        for (auto & r : pending_) {
            if (r->spec.id == id) return r.get();
        }
        return nullptr;
    };
    for (const auto & [op, id] : ops) {
        Request * r = find_req(id);
        if (r == nullptr) continue;
        if (op == kCancel) r->cancelled = true;
        if (op == kPause) {
            if (!r->paused) r->stats.pauses++;
            r->paused = true;
        }
        if (op == kResume) r->paused = false;
    }
    // Cancelled requests end now, wherever they are.
    for (auto & s : slot_) {
        if (s->req && s->req->cancelled) finish(*s, "cancelled");
    }
    for (auto it = swapped_.begin(); it != swapped_.end();) {
        if ((*it)->cancelled) {
            finish_request(**it, "cancelled", {});
            it = swapped_.erase(it);
        } else {
            ++it;
        }
    }
    std::vector<std::unique_ptr<Request>> dropped;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = pending_.begin(); it != pending_.end();) {
            if ((*it)->cancelled) {
                dropped.push_back(std::move(*it));
                it = pending_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto & r : dropped) finish_request(*r, "cancelled", {});
}

void Batcher::admit() {
    for (;;) {
        // Next candidate: resumed swapped-out requests first, then the queue (skipping paused ones).
        std::unique_ptr<Request> req;
        bool from_swap = false;
        for (auto it = swapped_.begin(); it != swapped_.end(); ++it) {
            if (!(*it)->paused) {
                req = std::move(*it);
                swapped_.erase(it);
                from_swap = true;
                break;
            }
        }
        if (!req) {
            std::lock_guard<std::mutex> lock(mu_);
            for (auto it = pending_.begin(); it != pending_.end(); ++it) {
                if (!(*it)->paused) {
                    req = std::move(*it);
                    pending_.erase(it);
                    break;
                }
            }
        }
        if (!req) return;

        // A free slot: the one with the longest cached prefix among those worth reusing -- the prefix
        // keeps 3/4 of the slot's cache (the same conversation, a long shared prompt) or covers 90%
        // of the prompt (a repeated prompt) -- ties: least recently used; else an empty
        // slot; else the least recently used. A short common start (a default system prompt) thus
        // never overwrites another conversation's cache while an older one can go.
        Slot * best = nullptr;
        size_t best_lcp = 0;
        int best_rank = -1;
        for (auto & s : slot_) {
            if (s->req) continue;
            const size_t lcp = from_swap ? 0 : common_prefix(s->cache, req->spec.prompt);
            const size_t n_prompt = req->spec.prompt.size();
            const bool reusable = lcp > 0 && (4 * lcp >= 3 * s->cache.size() || 10 * lcp >= 9 * n_prompt);
            const int rank = s->cache.empty() ? 1 : (reusable ? 2 : 0);
            const bool longer = rank == 2 && lcp != best_lcp;
            const bool better = best && (longer ? lcp > best_lcp : s->last_used < best->last_used);
            if (!best || rank > best_rank || (rank == best_rank && better)) {
                best = s.get();
                best_lcp = lcp;
                best_rank = rank;
            }
        }
        if (!best) {
            // No free slot: move a paused request out of its slot to make room.
            for (auto & s : slot_) {
                if (s->req && s->req->paused) {
                    swap_out(*s);
                    best = s.get();
                    best_lcp = 0;
                    break;
                }
            }
        }
        if (!best) {
            // Put it back where it was and wait for a slot.
            if (from_swap) {
                swapped_.push_front(std::move(req));
            } else {
                std::lock_guard<std::mutex> lock(mu_);
                pending_.push_front(std::move(req));
            }
            return;
        }

        Slot & s = *best;
        Request & r = *req;
        r.t_admit = Clock::now();
        r.stats.slot = s.index;
        if (from_swap) {
            ctx_.kv_seq_rm(s.index, -1, -1);
            ctx_.seq_state_load(r.saved_state, s.index);
            r.saved_state.clear();
            r.saved_state.shrink_to_fit();
            s.cache.clear();
        } else {
            r.stats.queue_ms = ms_between(r.t_submit, r.t_admit);
            size_t reuse = std::min(best_lcp, r.spec.prompt.size() - 1);  // at least one token is evaluated
            const bool evicted = reuse == 0 && !s.cache.empty();  // a cached prefix thrown away whole
            r.stats.evicted_tokens = static_cast<int32_t>(s.cache.size() - std::min(reuse, s.cache.size()));
            ctx_.kv_seq_rm(s.index, static_cast<llama_pos>(reuse), -1);
            s.cache.resize(reuse);
            r.n_past = static_cast<int32_t>(reuse);
            r.stats.cached_tokens = static_cast<int32_t>(reuse);
            std::lock_guard<std::mutex> lock(mu_);
            if (reuse > 0) {
                counters_.prefix_hits++;
                counters_.cached_tokens += reuse;
            } else {
                counters_.prefix_misses++;
            }
            if (evicted) counters_.prefix_evictions++;
        }
        s.req = std::move(req);
        s.last_used = ++tick_;
    }
}

void Batcher::sample_slot(Slot & s) {
    Request & r = *s.req;
    const auto now = Clock::now();
    llama_token tok;
    try {
        tok = r.sampler->sample(ctx_, s.i_batch);
    } catch (const std::exception & e) {
        finish(s, "error", e.what());
        return;
    }
    s.i_batch = -1;
    if (r.generated.empty()) {
        r.t_first = now;
        r.stats.ttft_ms = ms_between(r.t_submit, now);
        r.stats.prefill_ms = ms_between(r.t_prefill_start, now);
    } else {
        r.gaps.push_back(ms_between(r.t_last, now));
    }
    r.t_last = now;
    const GenerateParams & p = r.spec.params;
    if (p.max_tokens == 0) {
        finish(s, "length");
        return;
    }
    if (!p.ignore_eos && model_.is_eog(tok)) {
        finish(s, "stop");
        return;
    }
    r.generated.push_back(tok);
    {
        std::lock_guard<std::mutex> lock(mu_);
        counters_.tokens_out++;
    }
    Event ev;
    ev.id = r.spec.id;
    ev.first = r.generated.size() == 1;
    ev.text = r.stream->push(model_.token_to_piece(tok, false));
    ev.tokens.push_back(tok);
    publish(std::move(ev));
    if (r.stream->stopped()) {
        finish(s, "stop");
    } else if (p.max_tokens >= 0 && static_cast<int32_t>(r.generated.size()) >= p.max_tokens) {
        finish(s, "length");
    } else if (repeats(r.generated, r.spec.repeat_limit)) {
        finish(s, "repeat_limit");
    } else if (static_cast<uint32_t>(r.n_past) >= n_ctx_slot_) {
        finish(s, "context_full");
    } else {
        r.pending = tok;
    }
}

bool Batcher::step() {
    Batch & batch = *batch_;
    batch.clear();
    // 1. One token for every running stream: they keep decoding while prompts are split.
    for (auto & sp : slot_) {
        Slot & s = *sp;
        s.i_batch = -1;
        s.chunk = 0;
        if (!s.req || s.req->paused || s.req->pending < 0) continue;
        s.i_batch = batch.add(s.req->pending, s.req->n_past, s.index, true);
    }
    // 2. Prompt chunks fill the rest of the batch, oldest admission first.
    std::vector<Slot *> prefill;
    for (auto & sp : slot_) {
        if (sp->req && !sp->req->paused && sp->req->pending < 0 &&
            sp->req->n_past < static_cast<int32_t>(sp->req->spec.prompt.size())) {
            prefill.push_back(sp.get());
        }
    }
    std::sort(prefill.begin(), prefill.end(), [](Slot * a, Slot * b) { return a->last_used < b->last_used; });
    for (Slot * sp : prefill) {
        Request & r = *sp->req;
        const int32_t n_prompt = static_cast<int32_t>(r.spec.prompt.size());
        const int32_t room = static_cast<int32_t>(n_batch_) - batch.size();
        if (room <= 0) break;
        const int32_t n = std::min(room, n_prompt - r.n_past);
        for (int32_t k = 0; k < n; ++k) {
            const int32_t pos = r.n_past + k;
            const bool last = pos == n_prompt - 1;
            const int32_t idx = batch.add(r.spec.prompt[pos], pos, sp->index, last);
            if (last) sp->i_batch = idx;
        }
        sp->chunk = n;
        if (!r.prefill_started) {
            r.prefill_started = true;
            r.t_prefill_start = Clock::now();
        }
    }
    if (batch.size() == 0) return false;

    try {
        ctx_.decode(batch);
    } catch (const Error & e) {
        if (e.kind() == ErrorKind::ContextOverflow) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                counters_.kv_full++;
            }
            // Nothing of this batch was kept: free the prefix caches of idle slots; if
            // there were none, the longest running request ends with context_full.
            bool had_cache = false;
            for (auto & s : slot_) had_cache = had_cache || (!s->req && !s->cache.empty());
            if (had_cache) {
                free_idle_caches();
            } else {
                Slot * longest = nullptr;
                for (auto & s : slot_) {
                    if (s->req && (!longest || s->req->n_past > longest->req->n_past)) longest = s.get();
                }
                if (longest) finish(*longest, "context_full");
            }
            for (auto & s : slot_) {
                if (s->req) ctx_.kv_seq_rm(s->index, s->req->n_past, -1);  // drop partial writes
            }
            return true;
        }
        for (auto & s : slot_) {
            if (s->req) finish(*s, "error", e.what());
        }
        return true;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        counters_.decode_steps++;
        counters_.batch_tokens += static_cast<uint64_t>(batch.size());
    }
    // 3. Advance positions, sample where logits were asked for.
    for (auto & sp : slot_) {
        Slot & s = *sp;
        if (!s.req) continue;
        Request & r = *s.req;
        if (r.pending >= 0 && s.i_batch >= 0) {
            r.n_past++;
            r.pending = -1;
        } else if (s.chunk > 0) {
            r.n_past += s.chunk;
            std::lock_guard<std::mutex> lock(mu_);
            counters_.tokens_in += static_cast<uint64_t>(s.chunk);
        }
        if (s.i_batch >= 0) sample_slot(s);
    }
    return true;
}

void Batcher::loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            auto has_work = [&] {
                if (stop_ || !controls_.empty()) return true;
                bool work = false;
                for (const auto & r : pending_) work = work || !r->paused;
                for (const auto & s : slot_) work = work || (s->req && !s->req->paused);
                for (const auto & r : swapped_) work = work || !r->paused;
                return work;
            };
            if (!has_work()) {
                lock.unlock();
                signal(true);  // going idle: nothing may wait for the next interval
                lock.lock();
            }
            cv_.wait(lock, [&] {
                if (stop_ || !controls_.empty()) return true;
                bool work = false;
                for (const auto & r : pending_) work = work || !r->paused;
                for (const auto & s : slot_) work = work || (s->req && !s->req->paused);
                for (const auto & r : swapped_) work = work || !r->paused;
                return work;
            });
            if (stop_) break;
        }
        try {
            apply_controls();
            admit();
            step();
        } catch (const std::exception & e) {
            // A failure outside decode (e.g. the context was closed): end everything.
            std::string what = e.what();
            for (auto & s : slot_) {
                if (s->req) finish(*s, "error", what);
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
    for (auto & s : slot_) {
        if (s->req) finish(*s, "error", "runner stopped");
    }
    for (auto & r : swapped_) finish_request(*r, "error", "runner stopped");
    swapped_.clear();
    for (auto & r : rest) finish_request(*r, "error", "runner stopped");
    snapshot();
    signal(true);
}

}  // namespace mullama
