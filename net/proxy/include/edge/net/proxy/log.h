// Rate-limited, key=value logging hook for the per-message path (never sees PINs, keys or tokens).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>

namespace edge::net {

enum class LogLevel : std::uint8_t { debug, info, warn, error };
const char* to_string(LogLevel l) noexcept;

// One event: a short stable name ("token_rejected") and key=value fields. The
// daemon points this at spdlog; tests capture it. Called on worker threads, so
// it must not block: edged's logger is asynchronous (a bounded queue that drops
// its oldest line when full).
using LogSink = std::function<void(LogLevel, std::string_view event, std::string_view fields)>;

// The per-message event kinds, each rate-limited on its own so a flood of one kind
// (a scanner sending bad tokens) cannot hide the others.
enum class LogEvent : std::uint8_t {
  bad_request,
  token_rejected,
  hsm_unavailable,
  flow_failed,
  core_unavailable,
  hsm_busy,  // HSM work refused (source budget, queue full) or shed
  dropped,
  internal,
  count_,
};
const char* to_string(LogEvent e) noexcept;

// Lets at most `per_second` lines of each event kind through per one-second
// window; the first line after a suppressed stretch carries suppressed=N.
class RateLimitedLog {
 public:
  RateLimitedLog(LogSink sink, std::uint32_t per_second) : sink_(std::move(sink)), per_second_(per_second) {}

  bool enabled() const noexcept { return static_cast<bool>(sink_); }
  void log(LogLevel level, LogEvent event, std::string_view fields,
           std::chrono::steady_clock::time_point now);
  std::uint64_t suppressed_total() const noexcept {
    return suppressed_total_.load(std::memory_order_relaxed);
  }

 private:
  struct Window {
    std::chrono::steady_clock::time_point start{};
    std::uint32_t emitted = 0;
    std::uint64_t suppressed = 0;
  };
  LogSink sink_;
  std::uint32_t per_second_;
  std::mutex mu_;
  Window windows_[static_cast<std::size_t>(LogEvent::count_)]{};
  std::atomic<std::uint64_t> suppressed_total_{0};
};

}  // namespace edge::net
