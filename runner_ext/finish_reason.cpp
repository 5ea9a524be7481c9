#include "finish_reason.h"

#include <utility>

namespace mullama {

namespace {

constexpr std::pair<FinishReason, const char *> kNames[] = {
    {FinishReason::None, ""},
    {FinishReason::Stop, "stop"},
    {FinishReason::Length, "length"},
    {FinishReason::Cancelled, "cancelled"},
    {FinishReason::RepeatLimit, "repeat_limit"},
    {FinishReason::ContextFull, "context_full"},
    {FinishReason::Error, "error"},
};

}  // namespace

const char * to_string(FinishReason reason) {
    for (const auto & [r, name] : kNames) {
        if (r == reason) return name;
    }
    return "error";  // unreachable: every enumerator is in the table
}

std::optional<FinishReason> finish_reason_from_string(std::string_view name) {
    for (const auto & [r, n] : kNames) {
        if (name == n) return r;
    }
    return std::nullopt;
}

}  // namespace mullama
