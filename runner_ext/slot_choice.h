// Which slot a new request takes (prefix reuse). Pure: plain data in, a choice
// out; the Batcher calls it in admit() and _engine.choose_slot binds it for tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "llama.h"

namespace mullama {

struct SlotView {
    size_t n_tokens = 0;   // tokens whose KV the slot holds (its prefix cache when free)
    size_t lcp = 0;        // common prefix of that cache and the new prompt
    bool busy = false;     // runs a request: not a candidate
    uint64_t last_used = 0;
};

struct SlotChoice {
    int32_t slot = -1;     // index into the views; -1: no free slot
    int32_t reuse = 0;     // cached prompt tokens to keep (at least one prompt token is always evaluated)
};

size_t common_prefix(const std::vector<llama_token> & a, const std::vector<llama_token> & b);

// The view of one slot for `prompt`. An empty prompt shares nothing (a swapped-out
// request coming back restores its own state and reuses no cache).
SlotView slot_view(const std::vector<llama_token> & cache, const std::vector<llama_token> & prompt, bool busy,
                   uint64_t last_used);

// Among the free slots: the one with the longest common prefix among those worth
// reusing -- the prefix keeps 3/4 of the slot's cache (the same conversation, a
// long shared prompt) or covers 90% of the prompt (a repeated prompt); ties: the
// least recently used. Else an empty slot (least recently used first). Else the
// least recently used. A short common start (a default system prompt, the chat
// template's first tokens) thus never overwrites another conversation's cache
// while an older one can go. Full ties: the lowest index. The chosen slot's
// common prefix is reused whatever made it win, up to n_prompt - 1 tokens.
SlotChoice choose_slot(const std::vector<SlotView> & slots, size_t n_prompt);

}  // namespace mullama
