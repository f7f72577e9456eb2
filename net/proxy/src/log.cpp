// Per-event-kind rate limiting of the proxy's log lines.
#include "edge/net/proxy/log.h"

#include <string>

namespace edge::net {

const char* to_string(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
  }
  return "?";
}

const char* to_string(LogEvent e) noexcept {
  switch (e) {
    case LogEvent::bad_request:
      return "bad_request";
    case LogEvent::token_rejected:
      return "token_rejected";
    case LogEvent::hsm_unavailable:
      return "hsm_unavailable";
    case LogEvent::flow_failed:
      return "flow_failed";
    case LogEvent::core_unavailable:
      return "core_unavailable";
    case LogEvent::hsm_busy:
      return "hsm_busy";
    case LogEvent::dropped:
      return "dropped";
    case LogEvent::internal:
      return "internal";
    case LogEvent::count_:
      break;
  }
  return "?";
}

void RateLimitedLog::log(LogLevel level, LogEvent event, std::string_view fields,
                         std::chrono::steady_clock::time_point now) {
  if (!sink_) return;
  std::uint64_t suppressed = 0;
  {
    std::lock_guard lock(mu_);
    Window& w = windows_[static_cast<std::size_t>(event)];
    if (now - w.start >= std::chrono::seconds(1) || now < w.start) {
      w.start = now;
      w.emitted = 0;
    }
    if (per_second_ != 0 && w.emitted >= per_second_) {
      ++w.suppressed;
      suppressed_total_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    ++w.emitted;
    suppressed = w.suppressed;
    w.suppressed = 0;
  }
  // The sink runs outside the lock: it may block on I/O.
  if (suppressed == 0) {
    sink_(level, to_string(event), fields);
  } else {
    std::string line(fields);
    line += " suppressed=";
    line += std::to_string(suppressed);
    sink_(level, to_string(event), line);
  }
}

}  // namespace edge::net
