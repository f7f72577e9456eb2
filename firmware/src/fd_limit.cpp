// Raises the soft RLIMIT_NOFILE to what limits.max_connections needs, or says why it cannot.
#include "fd_limit.h"

#include <sys/resource.h>

#include <cerrno>
#include <limits>
#include <system_error>

namespace edge::firmware {
namespace {

std::uint64_t value(rlim_t v) {
  return v == RLIM_INFINITY ? std::numeric_limits<std::uint64_t>::max() : static_cast<std::uint64_t>(v);
}

std::string text(std::uint64_t v) {
  return v == std::numeric_limits<std::uint64_t>::max() ? std::string("unlimited") : std::to_string(v);
}

}  // namespace

FdLimit ensure_fd_limit(std::size_t max_connections) {
  FdLimit out;
  out.needed = static_cast<std::uint64_t>(max_connections) + kFdHeadroom;
  const std::string what = "limits.max_connections = " + std::to_string(max_connections) + " needs " +
                           std::to_string(out.needed) + " file descriptors (" + std::to_string(kFdHeadroom) +
                           " beyond the connections)";
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    out.problem = what + ": cannot read RLIMIT_NOFILE: " + std::generic_category().message(errno);
    return out;
  }
  out.soft = value(rl.rlim_cur);
  out.hard = value(rl.rlim_max);
  if (out.soft >= out.needed) return out;
  if (out.hard < out.needed) {
    out.problem =
        what + ", but the hard RLIMIT_NOFILE is " + text(out.hard) +
        " (LimitNOFILE= in the systemd unit, ulimit -Hn): lower limits.max_connections to at most " +
        std::to_string(out.hard > kFdHeadroom ? out.hard - kFdHeadroom : 0) + " or raise the limit";
    return out;
  }
  rlimit want = rl;
  want.rlim_cur = static_cast<rlim_t>(out.needed);
  if (::setrlimit(RLIMIT_NOFILE, &want) != 0) {
    out.problem = what + ": cannot raise the soft RLIMIT_NOFILE from " + text(out.soft) + ": " +
                  std::generic_category().message(errno) + " (set LimitNOFILE= in the systemd unit)";
    return out;
  }
  out.soft = out.needed;
  out.raised = true;
  return out;
}

}  // namespace edge::firmware
