// Typed engine errors. C++ code throws these; bind_errors.cpp maps each kind
// to its Python class in mullama.core.errors (the one place the mapping lives).
#pragma once

#include <stdexcept>
#include <string>

namespace mullama {

enum class ErrorKind {
    Engine,             // anything not covered below
    ModelFileNotFound,  // path does not exist or is not a file
    InvalidModelFile,   // not a GGUF file at all
    CorruptModelFile,   // GGUF, but truncated or inconsistent
    UnsupportedModel,   // architecture or feature llama.cpp does not know
    Aborted,            // a progress callback asked to stop
    OutOfMemory,        // an allocation failed
    ContextOverflow,    // tokens do not fit the context window
    InvalidGrammar,     // GBNF that does not parse
    InvalidSchema,      // JSON schema that cannot be converted to a grammar
    TemplateError,      // chat template missing or not applicable
    InvalidArgument,    // a parameter out of range
    Closed,             // use of a closed model/context
    DecodeError,        // llama_decode failed
    Busy,               // the context is driven by generate() or a Batcher
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string & message) : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

[[noreturn]] inline void raise(ErrorKind kind, const std::string & message) {
    throw Error(kind, message);
}

}  // namespace mullama
