// Small helpers the agent's parts share: time, summary text, events and the audit wrapper.
//
// Not a part: no state and no lock. Each part that records a change to the
// audit log or publishes an event does it through these, so that every audit
// line has the same shape ("ok" or "refused: <reason>") whichever part wrote it.
#pragma once

#include <edge/mgmt/audit.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/events.h>
#include <edge/mgmt/v1/agent.pb.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edge::mgmt::agent_parts {

using Clock = std::chrono::steady_clock;

inline std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// A generation's summary ("a: 1 -> 2; b: x -> y") back into its changes.
inline std::vector<std::string> split_summary(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    const auto p = s.find("; ", start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) break;
    start = p + 2;
  }
  return out;
}

inline void publish(EventBus& bus, v1::Event::Kind kind, std::uint64_t generation, const std::string& actor,
                    bool ok, const std::string& message) {
  v1::Event e;
  e.set_kind(kind);
  e.set_generation(generation);
  e.set_actor(actor);
  e.set_ok(ok);
  e.set_message(message);
  bus.publish(std::move(e));
}

// Runs `f` and writes one audit record with its outcome; `detail` is read
// afterwards so the body may complete it (e.g. with the applied changes). A
// foreign exception is reported to the caller as ErrorCode::internal.
//
// No change is made that cannot be audited: unless `must_run` (a safety
// action such as the confirm-deadline rollback, which runs anyway), an audit
// log that does not take a write (missing, not a regular file, unwritable, a
// full file system) refuses the call before `f` runs, saying nothing changed.
// If the record of a change that was made still fails, the error says that
// the change is in effect and that its record is missing.
template <class F>
auto audited(AuditLog& audit, std::string_view actor, std::string_view action, std::string& detail, F&& f,
             bool must_run = false) -> decltype(f()) {
  if (!must_run) {
    try {
      audit.check_writable();
    } catch (const std::exception& e) {
      throw MgmtError(ErrorCode::unavailable, std::string(e.what()) + "; nothing was changed (" +
                                                  std::string(action) +
                                                  " is refused while it cannot be audited)");
    }
  }
  auto record_refusal = [&](const MgmtError& e) {
    try {
      audit.record(actor, action, detail, std::string("refused: ") + e.what());
    } catch (const std::exception& a) {
      throw MgmtError(e.code(), std::string(e.what()) + "; its audit record was not written: " + a.what());
    }
  };
  std::optional<decltype(f())> result;
  try {
    result.emplace(f());
  } catch (const MgmtError& e) {
    record_refusal(e);
    throw;
  } catch (const std::exception& e) {
    const MgmtError internal(ErrorCode::internal, e.what());
    record_refusal(internal);
    throw internal;
  }
  try {
    audit.record(actor, action, detail, "ok");
  } catch (const std::exception& e) {
    throw MgmtError(ErrorCode::internal, std::string(action) + " was done and is in effect (" + detail +
                                             "), but its audit record was not written: " + e.what());
  }
  return std::move(*result);
}

}  // namespace edge::mgmt::agent_parts
