#include "logging.h"

#include <unistd.h>

#include <atomic>
#include <mutex>

#include "ggml.h"
#include "llama.h"

namespace mullama::logging {

void on_line(int level, const std::string & line);

namespace {

std::mutex g_sink_mutex;
Sink g_sink;
std::atomic<int> g_min_level{GGML_LOG_LEVEL_WARN};
thread_local Capture * t_capture = nullptr;
thread_local std::string t_partial;  // a line logged in pieces (GGML_LOG_LEVEL_CONT)
thread_local int t_partial_level = GGML_LOG_LEVEL_INFO;

void callback(ggml_log_level level, const char * text, void *) {
    if (text == nullptr) {
        return;
    }
    int lvl = level == GGML_LOG_LEVEL_CONT ? t_partial_level : static_cast<int>(level);
    if (level != GGML_LOG_LEVEL_CONT) {
        t_partial_level = lvl;
    }
    // Cheap exit: nobody wants this level and no capture is active.
    if (lvl < g_min_level.load(std::memory_order_relaxed) &&
        (t_capture == nullptr || (lvl < GGML_LOG_LEVEL_WARN && !t_capture->has_hook()))) {
        return;
    }
    t_partial += text;
    // Split off complete lines first: a capture hook may throw (to abort a
    // long operation) and must not leave them behind to be logged again.
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t nl; (nl = t_partial.find('\n', start)) != std::string::npos; start = nl + 1) {
        lines.push_back(t_partial.substr(start, nl - start));
    }
    t_partial.erase(0, start);
    for (const auto & line : lines) {
        on_line(lvl, line);
    }
}

}  // namespace

void on_line(int level, const std::string & line) {
    if (line.empty()) {
        return;
    }
    if (t_capture != nullptr) {
        if (level >= GGML_LOG_LEVEL_WARN) {
            t_capture->lines_.push_back(line);
        }
        if (t_capture->hook_) {
            t_capture->hook_(line);
        }
    }
    if (level < g_min_level.load(std::memory_order_relaxed)) {
        return;
    }
    Sink sink;
    {
        std::lock_guard<std::mutex> lock(g_sink_mutex);
        sink = g_sink;
    }
    if (sink) {
        sink(level, line);
    }
}

void install() {
    static std::once_flag once;
    std::call_once(once, [] { llama_log_set(callback, nullptr); });
}

void set_sink(Sink sink, int min_level) {
    install();
    std::lock_guard<std::mutex> lock(g_sink_mutex);
    g_sink = std::move(sink);
    g_min_level.store(min_level);
}

void clear_sink() {
    std::lock_guard<std::mutex> lock(g_sink_mutex);
    g_sink = nullptr;
    g_min_level.store(GGML_LOG_LEVEL_ERROR + 1);
}

int min_level() { return g_min_level.load(); }

namespace {
std::mutex g_stderr_mutex;  // one redirect at a time
}

StderrCapture::StderrCapture() {
    g_stderr_mutex.lock();
    std::fflush(stderr);
    tmp_ = std::tmpfile();
    saved_ = dup(2);
    if (tmp_ == nullptr || saved_ < 0 || dup2(fileno(tmp_), 2) < 0) {
        if (saved_ >= 0) close(saved_);
        saved_ = -1;
    }
}

std::string StderrCapture::finish() {
    if (done_) return {};
    done_ = true;
    std::string text;
    std::fflush(stderr);
    if (saved_ >= 0) {
        dup2(saved_, 2);
        close(saved_);
        saved_ = -1;
        std::rewind(tmp_);
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof(buf), tmp_)) > 0 && text.size() < (1u << 20)) text.append(buf, n);
    }
    if (tmp_ != nullptr) std::fclose(tmp_);
    tmp_ = nullptr;
    g_stderr_mutex.unlock();
    return text;
}

StderrCapture::~StderrCapture() { finish(); }

Capture::Capture(Hook hook) : hook_(std::move(hook)), previous_(t_capture) { t_capture = this; }

Capture::~Capture() { t_capture = previous_; }

std::string Capture::joined() const {
    std::string out;
    size_t first = lines_.size() > 4 ? lines_.size() - 4 : 0;
    for (size_t i = first; i < lines_.size(); ++i) {
        if (!out.empty()) {
            out += "; ";
        }
        out += lines_[i];
    }
    return out;
}

bool Capture::contains(const std::string & needle) const {
    for (const auto & l : lines_) {
        if (l.find(needle) != std::string::npos) {
            return true;
        }
    }
    return false;
}

}  // namespace mullama::logging
