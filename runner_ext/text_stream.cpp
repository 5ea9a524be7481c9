#include "text_stream.h"

#include <algorithm>

namespace mullama {

size_t utf8_complete_prefix(const std::string & s) {
    // Walk back over at most 3 continuation bytes to the last lead byte.
    const size_t n = s.size();
    size_t i = n;
    size_t back = 0;
    while (i > 0 && back < 4) {
        const auto c = static_cast<unsigned char>(s[i - 1]);
        if ((c & 0xC0) != 0x80) {
            size_t need = 1;
            if ((c & 0xE0) == 0xC0) need = 2;
            else if ((c & 0xF0) == 0xE0) need = 3;
            else if ((c & 0xF8) == 0xF0) need = 4;
            return (n - (i - 1) >= need) ? n : i - 1;
        }
        --i;
        ++back;
    }
    return n;  // only continuation bytes: invalid anyway, emit as is
}

TextStream::TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {
    stop_.erase(std::remove(stop_.begin(), stop_.end(), std::string()), stop_.end());
    for (const auto & s : stop_) max_stop_ = std::max(max_stop_, s.size());
}

std::string TextStream::push(const std::string & piece) {
    if (stopped_) {
        return {};
    }
    pending_ += piece;
    // Full match: cut at the earliest stop string occurrence.
    size_t cut = std::string::npos;
    for (const auto & s : stop_) {
        const size_t at = pending_.find(s);
        if (at != std::string::npos && at < cut) {
            cut = at;
            matched_ = s;
        }
    }
    if (cut != std::string::npos) {
        stopped_ = true;
        std::string out = pending_.substr(0, cut);
        pending_.clear();
        return out;
    }
    // Hold back the longest suffix that is a prefix of some stop string.
    size_t hold = 0;
    for (const auto & s : stop_) {
        for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k) {
            if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    size_t emit = pending_.size() - hold;
    emit = utf8_complete_prefix(pending_.substr(0, emit));
    std::string out = pending_.substr(0, emit);
    pending_.erase(0, emit);
    return out;
}

std::string TextStream::flush() {
    if (stopped_) {
        return {};
    }
    std::string out;
    out.swap(pending_);
    return out;
}

}  // namespace mullama
