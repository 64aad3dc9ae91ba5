#pragma once
// Progress of a long evaluation: a one-line bar with rate and ETA redrawn in place on a terminal, plain
// lines (at most one every `plain_interval` seconds, plus the last) when the output is a file or a pipe.
#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace qsafe::eval {

class ProgressBar {
  public:
    ProgressBar(std::string label, std::size_t total, std::FILE* out = stderr, double plain_interval = 15.0)
        : label_(std::move(label)), total_(total), out_(out), plain_interval_(plain_interval),
          terminal_(::isatty(::fileno(out)) != 0), start_(clock::now()), last_plain_(start_) {}

    /// `done` rows of `total` finished, `tokens` generated so far by this run.
    void update(std::size_t done, std::size_t tokens) {
        const auto now = clock::now();
        const double elapsed = std::chrono::duration<double>(now - start_).count();
        const bool last = done >= total_;
        if (!terminal_ && !last && std::chrono::duration<double>(now - last_plain_).count() < plain_interval_) return;
        last_plain_ = now;
        const double rate = elapsed > 0.0 ? static_cast<double>(tokens) / elapsed : 0.0;
        const double eta = done > done_at_start_ && !last
                               ? elapsed / static_cast<double>(done - done_at_start_) * static_cast<double>(total_ - done)
                               : 0.0;
        std::string bar;
        if (terminal_) {
            constexpr int width = 24;
            const int filled = total_ ? static_cast<int>(width * static_cast<double>(done) / static_cast<double>(total_)) : width;
            bar = "[" + std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
        }
        std::fprintf(out_, "%s%s %s%zu/%zu  %.1f tok/s  elapsed %s  ETA %s%s", terminal_ ? "\r" : "", label_.c_str(), bar.c_str(),
                     done, total_, rate, duration(elapsed).c_str(), duration(eta).c_str(), terminal_ && !last ? "   " : "\n");
        std::fflush(out_);
    }
    /// Rows already finished before this run (resumed): excluded from the ETA's rate.
    void set_already_done(std::size_t n) { done_at_start_ = n; }

    static std::string duration(double seconds) {
        const long s = static_cast<long>(seconds + 0.5);
        char buf[32];
        if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
        else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
        else std::snprintf(buf, sizeof buf, "%lds", s);
        return buf;
    }

  private:
    using clock = std::chrono::steady_clock;
    std::string label_;
    std::size_t total_;
    std::FILE* out_;
    double plain_interval_;
    bool terminal_;
    clock::time_point start_, last_plain_;
    std::size_t done_at_start_ = 0;
};

}  // namespace qsafe::eval
