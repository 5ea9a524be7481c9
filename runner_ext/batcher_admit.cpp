// Between decode steps: apply cancel / pause / resume, admit requests into
// slots (the choice of slot is choose_slot in slot_choice.cpp) when the shared
// KV cache has room for them, and swap paused requests out to make room. What
// becomes of idle prefix caches (dropped, parked in host memory, loaded back) is
// batcher_cache.cpp.
#include <algorithm>
#include <set>
#include <string>

#include "batcher.h"
#include "batcher_internal.h"
#include "slot_choice.h"

namespace mullama {

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

namespace {

// Cells kept free per request in a slot, so that streams that just came in do not
// fill the cache at their first tokens and bounce straight back out.
constexpr int64_t kKvMargin = 16;

}  // namespace

// With one shared KV cache, a request comes into a slot only if the cells of the
// requests already in slots, its own and a margin fit the cache (idle prefix caches
// do not count: they are dropped when it fills). A request alone always comes in.
// Choices of one prompt (a group) hold its cells once: the first in a slot counts them, the others
// only what they generate.
bool Batcher::kv_room_for(const Request & r) const {
    if (!shared_kv_) return true;  // each slot has its own cells: n_ctx_slot bounds a request
    int64_t used = 0;
    int64_t running = 0;
    std::set<std::string> groups;
    auto held = [&](const Request & q) {
        const int64_t all = cells(q.spec.prompt, q.n_past);
        if (q.spec.group.empty() || groups.insert(q.spec.group).second) return all;
        return all - static_cast<int64_t>(q.spec.prompt.size()) + 1;
    };
    for (const auto & s : slot_) {
        if (!s->req) continue;
        used += held(*s->req);
        running++;
    }
    if (running == 0) return true;
    return used + held(r) + kKvMargin * (running + 1) <= static_cast<int64_t>(n_ctx_);
}

// A choice of an n > 1 request shares its siblings' prefill: while a sibling in a slot is still
// prefilling their prompt, it waits (`wait`); once one holds the prompt's KV but for its last
// token, that sibling is the donor it copies from.
Batcher::Slot * Batcher::group_donor(const Request & r, bool & wait) {
    wait = false;
    const int32_t need = static_cast<int32_t>(r.spec.prompt.size()) - 1;
    if (r.spec.group.empty() || need <= 0) return nullptr;
    for (auto & s : slot_) {
        const Request * q = s->req.get();
        if (!q || q->spec.group != r.spec.group || q->spec.prompt != r.spec.prompt) continue;
        if (q->n_past >= need) {
            wait = false;
            return s.get();
        }
        wait = wait || !q->paused;
    }
    return nullptr;
}

// kv_room_for, after swapping paused requests out of their slots if that is what it takes.
bool Batcher::make_kv_room_for(const Request & r) {
    for (auto & s : slot_) {
        if (kv_room_for(r)) return true;
        if (s->req && s->req->paused) swap_out(*s);
    }
    return kv_room_for(r);
}

// Load a swapped-out request's saved state into slot s. The idle prefix caches go
// first if the cache has no room for it; a state that still cannot be restored ends
// the request with an error (never lost, never taking the loop down).
bool Batcher::restore(Request & r, Slot & s) {
    r.spec_begun = false;  // the drafter's state for this slot's sequence is another request's
    for (int attempt = 0;; ++attempt) {
        try {
            ctx_.seq_state_load(r.saved_state, s.index);
            return true;
        } catch (const Error & e) {
            ctx_.kv_seq_rm(s.index, -1, -1);
            if (attempt == 0) {
                free_idle_caches();
                continue;
            }
            finish_request(r, FinishReason::Error, e.what());
            return false;
        }
    }
}

void Batcher::apply_controls() {
    std::deque<std::pair<ControlOp, std::string>> ops;
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
        switch (op) {
            case ControlOp::Cancel:
                r->cancelled = true;
                break;
            case ControlOp::Pause:
                if (!r->paused) r->stats.pauses++;
                r->paused = true;
                break;
            case ControlOp::Resume:
                r->paused = false;
                break;
        }
    }
    // Cancelled requests end now, wherever they are.
    for (auto & s : slot_) {
        if (s->req && s->req->cancelled) finish(*s, FinishReason::Cancelled);
    }
    for (auto it = swapped_.begin(); it != swapped_.end();) {
        if ((*it)->cancelled) {
            finish_request(**it, FinishReason::Cancelled, {});
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
    for (auto & r : dropped) finish_request(*r, FinishReason::Cancelled, {});
}

// Next candidate: resumed swapped-out requests first, then the queue (skipping paused ones).
std::unique_ptr<Batcher::Request> Batcher::next_candidate(bool & from_swap) {
    from_swap = false;
    for (auto it = swapped_.begin(); it != swapped_.end(); ++it) {
        if (!(*it)->paused) {
            std::unique_ptr<Request> req = std::move(*it);
            swapped_.erase(it);
            from_swap = true;
            return req;
        }
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        if (!(*it)->paused) {
            std::unique_ptr<Request> req = std::move(*it);
            pending_.erase(it);
            return req;
        }
    }
    return nullptr;
}

// A candidate that cannot come in yet goes back to the front of the queue it came from.
void Batcher::put_back(std::unique_ptr<Request> req, bool from_swap) {
    if (from_swap) {
        swapped_.push_front(std::move(req));
        return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_front(std::move(req));
}

void Batcher::admit() {
    static const std::vector<llama_token> kNoPrompt;
    for (;;) {
        bool from_swap = false;
        std::unique_ptr<Request> req = next_candidate(from_swap);
        if (!req) return;
        if (!make_kv_room_for(*req)) {
            // It waits, in its place, for running requests to finish: newcomers never take
            // the cells that running requests will need.
            put_back(std::move(req), from_swap);
            return;
        }
        bool wait = false;
        Slot * donor = from_swap ? nullptr : group_donor(*req, wait);
        if (wait) {
            put_back(std::move(req), from_swap);  // a sibling's prefill is nearly done: copy it then
            return;
        }

        // A swapped-out request restores its own state: it reuses no cache (an empty prompt).
        const std::vector<llama_token> & prompt = from_swap ? kNoPrompt : req->spec.prompt;
        std::vector<SlotView> views;
        views.reserve(slot_.size());
        for (const auto & s : slot_) {  // a cache computed under other LoRA adapters is no prefix of this request
            const bool same = s->cache_key == req->lora.key;
            views.push_back(slot_view(s->cache, same ? prompt : kNoPrompt, s->req != nullptr, s->last_used));
        }
        const SlotChoice choice = choose_slot(views, prompt.size());
        Slot * best = choice.slot >= 0 ? slot_[static_cast<size_t>(choice.slot)].get() : nullptr;
        size_t reuse = static_cast<size_t>(choice.reuse);
        if (!best) {
            // No free slot: move a paused request out of its slot to make room.
            for (auto & s : slot_) {
                if (s->req && s->req->paused) {
                    swap_out(*s);
                    best = s.get();
                    reuse = 0;
                    break;
                }
            }
        }
        if (!best) {
            put_back(std::move(req), from_swap);  // it waits for a slot
            return;
        }

        Slot & s = *best;
        Request & r = *req;
        r.t_admit = Clock::now();
        r.stats.slot = s.index;
        if (from_swap) {
            ctx_.kv_seq_rm(s.index, -1, -1);
            s.cache.clear();
            park_idle(&s);
            trim_idle_caches(cells(r.spec.prompt, r.n_past));
            if (!restore(r, s)) continue;  // it ended with an error; the slot stays free
            r.saved_state.clear();
            r.saved_state.shrink_to_fit();
        } else {
            r.stats.queue_ms = ms_between(r.t_submit, r.t_admit);
            const size_t shared = r.spec.prompt.size() - 1;  // what a donor holds for it
            const bool copy = donor != nullptr && donor != &s && shared > reuse;
            // A parked cache may give more of the prompt than its slot's (all but its last token is the most);
            // a slot's cache the request would overwrite most of goes to host memory first. A cache it
            // reuses at least half of is trimmed in place, as llama-server does with a similar slot.
            if (!copy && parking() && reuse + 1 < r.spec.prompt.size()) {
                if (reuse * 2 < s.cache.size()) {
                    park(s);
                    reuse = 0;
                }
                reuse = take_parked(s, r, reuse);
            }
            park_idle(&s);  // the other idle caches leave the KV cache
            const bool evicted = (copy || reuse == 0) && !s.cache.empty();  // a cached prefix thrown away whole
            r.stats.evicted_tokens =
                static_cast<int32_t>(copy ? s.cache.size() : s.cache.size() - std::min(reuse, s.cache.size()));
            if (copy) {
                ctx_.kv_seq_rm(s.index, -1, -1);
                if (shared_kv_) {
                    ctx_.kv_seq_cp(donor->index, s.index, 0, static_cast<llama_pos>(shared));  // cells shared
                } else {
                    ctx_.kv_seq_cp(donor->index, s.index, -1, -1);  // across streams: whole buffers only
                    ctx_.kv_seq_rm(s.index, static_cast<llama_pos>(shared), -1);
                }
                s.cache.assign(r.spec.prompt.begin(), r.spec.prompt.begin() + static_cast<std::ptrdiff_t>(shared));
                reuse = shared;
            } else {
                ctx_.kv_seq_rm(s.index, static_cast<llama_pos>(reuse), -1);
                s.cache.resize(reuse);
            }
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
        s.cache_key = r.lora.key;
        s.req = std::move(req);
        s.last_used = ++tick_;
        trim_idle_caches(0);  // its prompt goes in at the next step: no decode should find the cache full
    }
}

}  // namespace mullama
