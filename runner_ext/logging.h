// Routes llama.cpp/ggml logging to one sink (set from Python) and lets a
// thread capture the error lines of an operation so that exceptions can name
// the cause llama.cpp reported.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace mullama::logging {

// level uses ggml_log_level values: 1 debug, 2 info, 3 warn, 4 error.
using Sink = std::function<void(int level, const std::string & line)>;

// Install llama.cpp's log callback (idempotent). Lines below min_level are dropped
// before the sink is called, so a quiet sink costs nothing on the hot path.
void install();
void set_sink(Sink sink, int min_level);
void clear_sink();
int min_level();

// RAII: while alive, warn/error lines logged on this thread are also collected,
// and every line (any level) is passed to the optional hook.
class Capture {
public:
    using Hook = std::function<void(const std::string & line)>;
    explicit Capture(Hook hook = nullptr);
    ~Capture();
    Capture(const Capture &) = delete;
    Capture & operator=(const Capture &) = delete;
    const std::vector<std::string> & lines() const { return lines_; }
    std::string joined() const;  // last few lines, "; "-separated
    bool contains(const std::string & needle) const;
    bool has_hook() const { return static_cast<bool>(hook_); }

private:
    friend void on_line(int level, const std::string & line);
    std::vector<std::string> lines_;
    Hook hook_;
    Capture * previous_;
};

// RAII: while alive, what C code writes to file descriptor 2 goes to a temporary
// file instead (llama.cpp's grammar parser prints errors, and the grammar, with
// fprintf(stderr)). Process-wide, so held only around such calls; text() returns
// what was captured.
class StderrCapture {
public:
    StderrCapture();
    ~StderrCapture();
    StderrCapture(const StderrCapture &) = delete;
    StderrCapture & operator=(const StderrCapture &) = delete;
    std::string finish();  // restore fd 2 and return the captured text

private:
    int saved_ = -1;
    std::FILE * tmp_ = nullptr;
    bool done_ = false;
};

}  // namespace mullama::logging
