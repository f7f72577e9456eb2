// RLIMIT_NOFILE for limits.max_connections: what edged needs, and raising the soft limit to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace edge::firmware {

// Descriptors edged needs beyond one per stream connection: listening
// sockets, UDP sockets, the HSM module's files, the management API and the
// metrics endpoint with their clients, epoll / eventfd / timerfd per worker,
// the config store and audit log, stderr.
inline constexpr std::size_t kFdHeadroom = 256;

struct FdLimit {
  std::uint64_t soft = 0, hard = 0;  // RLIMIT_NOFILE after the call (RLIM_INFINITY as UINT64_MAX)
  std::uint64_t needed = 0;          // max_connections + kFdHeadroom
  bool raised = false;               // the soft limit was raised by this call
  std::string problem;               // "" when the soft limit now covers `needed`, else why not
};

// Makes the soft RLIMIT_NOFILE at least max_connections + kFdHeadroom: raised
// to exactly that when lower, up to the hard limit (never lowered, the hard
// limit never touched: only a privileged process could raise it). glibc's
// setrlimit is the prlimit64 system call, which the unit's
// SystemCallFilter=@system-service allows (~@resources denies only the
// legacy setrlimit call); the unit's LimitNOFILE= is the hard limit.
// `problem` names the property, what it needs and what the limit allows.
FdLimit ensure_fd_limit(std::size_t max_connections);

}  // namespace edge::firmware
