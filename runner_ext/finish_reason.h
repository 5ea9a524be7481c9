// Why a generation ended. C++ code uses the enum; the strings exist only at the
// Python boundary (Event.finish_reason, GenerateResult.finish_reason) and are
// produced by to_string, the one place the names live.
#pragma once

#include <optional>
#include <string_view>

namespace mullama {

enum class FinishReason {
    None,         // not finished (a streaming event): ""
    Stop,         // EOS or a stop string: "stop"
    Length,       // max_tokens reached: "length"
    Cancelled,    // cancelled by the caller: "cancelled"
    RepeatLimit,  // the repetition detector fired: "repeat_limit"
    ContextFull,  // no position left in the sequence: "context_full"
    Error,        // decode/sampling failed or the loop stopped: "error"
};

// The exact string Python sees.
const char * to_string(FinishReason reason);

// The inverse of to_string; nullopt for a string no reason maps to.
std::optional<FinishReason> finish_reason_from_string(std::string_view name);

}  // namespace mullama
