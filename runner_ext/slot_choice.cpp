#include "slot_choice.h"

#include <algorithm>

namespace mullama {

namespace {

constexpr int kOther = 0;     // holds a cache not worth keeping for this prompt
constexpr int kEmpty = 1;     // holds nothing
constexpr int kReusable = 2;  // holds a prefix worth keeping

int rank(const SlotView & s, size_t n_prompt) {
    if (s.n_tokens == 0) return kEmpty;
    const bool reusable = s.lcp > 0 && (4 * s.lcp >= 3 * s.n_tokens || 10 * s.lcp >= 9 * n_prompt);
    return reusable ? kReusable : kOther;
}

}  // namespace

size_t common_prefix(const std::vector<llama_token> & a, const std::vector<llama_token> & b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

SlotView slot_view(const std::vector<llama_token> & cache, const std::vector<llama_token> & prompt, bool busy,
                   uint64_t last_used) {
    return SlotView{cache.size(), common_prefix(cache, prompt), busy, last_used};
}

SlotChoice choose_slot(const std::vector<SlotView> & slots, size_t n_prompt) {
    int32_t best = -1;
    int best_rank = -1;
    for (size_t i = 0; i < slots.size(); ++i) {
        const SlotView & s = slots[i];
        if (s.busy) continue;
        const int r = rank(s, n_prompt);
        bool better = best < 0 || r > best_rank;
        if (!better && r == best_rank) {
            const SlotView & b = slots[static_cast<size_t>(best)];
            better = (r == kReusable && s.lcp != b.lcp) ? s.lcp > b.lcp : s.last_used < b.last_used;
        }
        if (better) {
            best = static_cast<int32_t>(i);
            best_rank = r;
        }
    }
    SlotChoice c;
    c.slot = best;
    if (best >= 0 && n_prompt > 0) {
        c.reuse = static_cast<int32_t>(std::min(slots[static_cast<size_t>(best)].lcp, n_prompt - 1));
    }
    return c;
}

}  // namespace mullama
