// Idle slots' prefix caches: dropped when the shared KV cache is full, parked in host memory when a
// request comes in (set_cache_ram), loaded back into a slot for a request whose prompt starts with one.
#include <malloc.h>

#include <algorithm>

#include "batcher.h"
#include "batcher_internal.h"
#include "slot_choice.h"
#include "spec_draft.h"

namespace mullama {

// Drop idle prefix caches, least recently used first, until the requests in slots,
// the caches kept and `extra` cells fit the shared KV cache.
void Batcher::trim_idle_caches(int64_t extra) {
    if (!shared_kv_) return;
    int64_t used = extra;
    for (const auto & s : slot_) {
        used += s->req ? cells(s->req->spec.prompt, s->req->n_past) : static_cast<int64_t>(s->cache.size());
    }
    while (used > static_cast<int64_t>(n_ctx_)) {
        Slot * lru = nullptr;
        for (auto & s : slot_) {
            if (!s->req && !s->cache.empty() && (!lru || s->last_used < lru->last_used)) lru = s.get();
        }
        if (!lru) return;
        used -= static_cast<int64_t>(lru->cache.size());
        ctx_.kv_seq_rm(lru->index, -1, -1);
        lru->cache.clear();
        std::lock_guard<std::mutex> lock(mu_);
        counters_.prefix_evictions++;
    }
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

// Move idle slot s's cache out of the KV cache into host memory (a cache that cannot be saved is dropped).
void Batcher::park(Slot & s) {
    Parked p;
    // A parked entry this cache starts with (under the same adapters) can serve no prompt it cannot: it goes,
    // and its memory takes the new state (a repeated prompt does not grow the pool, and fresh pages fault
    // one by one: 13 ms for a 5 MB state on a VM, against 2 ms into memory already in use).
    for (auto it = parked_.begin(); it != parked_.end();) {
        if (it->key == s.cache_key && it->tokens.size() <= s.cache.size() &&
            std::equal(it->tokens.begin(), it->tokens.end(), s.cache.begin())) {
            if (it->state.capacity() > p.state.capacity()) std::swap(p.state, it->state);
            p.last_used = std::max(p.last_used, it->last_used);
            it = parked_.erase(it);
        } else {
            ++it;
        }
    }
    try {
        ctx_.seq_state_save(s.index, p.state);
    } catch (const Error &) {  // no state: the cache is dropped below
        p.state.clear();
    }
    ctx_.kv_seq_rm(s.index, -1, -1);
    if (draft_) draft_->truncate(s.index, 0);  // the draft's copy goes too: it follows again on reuse
    p.tokens = std::move(s.cache);
    s.cache.clear();
    p.key = s.cache_key;
    p.last_used = std::max(p.last_used, s.last_used);  // a covered entry's recency (take_parked bumps it) stays
    const bool saved = !p.state.empty();
    if (saved) parked_.push_back(std::move(p));
    std::lock_guard<std::mutex> lock(mu_);
    if (saved) {
        counters_.parks++;
    } else {
        counters_.prefix_evictions++;
    }
}

// Park every idle slot's cache but `keep`'s, then drop the least recently used parked caches beyond the
// limit.
void Batcher::park_idle(const Slot * keep) {
    if (!parking()) return;
    for (auto & s : slot_) {
        if (!s->req && !s->cache.empty() && s.get() != keep) park(*s);
    }
    drop_parked_beyond(cache_ram_.load());
}

size_t Batcher::drop_parked_beyond(int64_t limit) {
    int64_t bytes = 0;
    for (const auto & p : parked_) bytes += static_cast<int64_t>(p.state.size());
    size_t dropped = 0;
    while (limit >= 0 && bytes > limit && !parked_.empty()) {
        auto lru = std::min_element(parked_.begin(), parked_.end(),
                                    [](const Parked & a, const Parked & b) { return a.last_used < b.last_used; });
        bytes -= static_cast<int64_t>(lru->state.size());
        parked_.erase(lru);
        ++dropped;
    }
    std::lock_guard<std::mutex> lock(mu_);
    counters_.prefix_evictions += dropped;
    counters_.parked_entries = parked_.size();  // as snapshot() counts them: set_cache_ram's caller reads them now
    counters_.parked_bytes = static_cast<uint64_t>(bytes);
    return dropped;
}

void Batcher::set_cache_ram(int64_t bytes) {
    std::unique_lock<std::mutex> lock(mu_);
    cache_ram_.store(bytes);
    const uint64_t ticket = ++cache_ram_asked_;
    cv_.notify_all();
    cache_ram_set_.wait(lock, [&] { return cache_ram_done_ >= ticket || !running_; });
}

// A lower limit frees its memory now, not at the next park: the supervisor lowers it to make room for
// another model. glibc keeps freed heap pages unless asked (malloc_trim gives back every arena's).
void Batcher::apply_cache_ram() {
    uint64_t asked;
    {
        std::lock_guard<std::mutex> lock(mu_);
        asked = cache_ram_asked_;
        if (asked == cache_ram_done_) return;
    }
    if (drop_parked_beyond(cache_ram_.load()) > 0) malloc_trim(0);
    std::lock_guard<std::mutex> lock(mu_);
    cache_ram_done_ = asked;
    cache_ram_set_.notify_all();
}

// Request r came into idle slot s, whose cache gives it `reuse` tokens. A parked cache with a longer
// common prefix (under r's LoRA set) is loaded into s instead: every idle cache leaves the KV cache
// first (s's own too), so it lands from the first free cell, in order. Its state loads whole, so it is
// only taken for a reuse of at least an eighth of it (a copy per token is far cheaper than evaluating
// one, but not free for a long cache). It stays parked unless the request reuses all of it (the slot
// then holds it and more). Returns the tokens reused.
size_t Batcher::take_parked(Slot & s, const Request & r, size_t reuse) {
    const auto & prompt = r.spec.prompt;
    auto best_entry = [&](size_t & best_lcp) {
        auto best = parked_.end();
        best_lcp = 0;
        for (auto it = parked_.begin(); it != parked_.end(); ++it) {
            if (it->key != r.lora.key) continue;
            const size_t lcp = std::min(common_prefix(it->tokens, prompt), prompt.size() - 1);
            if (lcp > best_lcp && lcp * 8 >= it->tokens.size()) {
                best = it;
                best_lcp = lcp;
            }
        }
        return best;
    };
    size_t lcp = 0;
    const auto first = best_entry(lcp);
    if (first == parked_.end() || lcp <= reuse) return reuse;
    first->last_used = ++tick_;  // the most recent now: parking the others past the limit drops them, not it
    park_idle(nullptr);
    const auto best = best_entry(lcp);  // again: parking added entries and may have dropped some
    if (best == parked_.end()) return 0;
    try {
        ctx_.seq_state_load(best->state, s.index);
    } catch (const Error &) {
        ctx_.kv_seq_rm(s.index, -1, -1);
        std::lock_guard<std::mutex> lock(mu_);
        counters_.prefix_evictions++;
        return 0;
    }
    s.cache = best->tokens;
    s.cache_key = best->key;
    if (lcp == best->tokens.size()) parked_.erase(best);  // else it stays for the rest of its tokens
    std::lock_guard<std::mutex> lock(mu_);
    counters_.unparks++;
    return lcp;
}

}  // namespace mullama
