// Incremental detokenisation for one sequence: emits only complete UTF-8,
// matches stop strings across token boundaries and holds back text that
// could be the start of a stop string. Pure C++, no llama calls.
#pragma once

#include <string>
#include <vector>

namespace mullama {

class TextStream {
public:
    explicit TextStream(std::vector<std::string> stop = {});

    // Append the bytes of one token. Returns text that is now safe to emit.
    // After a stop string matched, stopped() is true and nothing more is emitted.
    std::string push(const std::string & piece);
    // Everything still held back (at the end of generation), without a stop match.
    std::string flush();

    bool stopped() const { return stopped_; }
    const std::string & matched_stop() const { return matched_; }

private:
    std::vector<std::string> stop_;
    size_t max_stop_ = 0;
    std::string pending_;  // bytes not yet emitted
    bool stopped_ = false;
    std::string matched_;
};

// Length of the longest prefix of s that ends on a complete UTF-8 sequence.
size_t utf8_complete_prefix(const std::string & s);

}  // namespace mullama
