// ensure_fd_limit in a forked child (the limits it sets are the child's only): raises the soft
// RLIMIT_NOFILE up to the hard limit, never past it, and says why when the hard limit is too low.
#include "fd_limit.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace edge::firmware {
namespace {

// Runs `body` in a child with RLIMIT_NOFILE soft:hard and returns what it wrote.
std::string in_child(rlim_t soft, rlim_t hard, const std::function<std::string()>& body) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    ::close(fds[0]);
    const rlimit rl{soft, hard};
    std::string out = ::setrlimit(RLIMIT_NOFILE, &rl) == 0 ? body() : std::string("setrlimit failed");
    const char* p = out.data();
    for (std::size_t left = out.size(); left > 0;) {
      const ssize_t n = ::write(fds[1], p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

std::string soft_now() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return std::to_string(rl.rlim_cur);
}

TEST(FdLimit, RaisesTheSoftLimitToWhatMaxConnectionsNeeds) {
  const std::string out = in_child(300, 4096, [] {
    const FdLimit f = ensure_fd_limit(1000);
    return std::to_string(f.soft) + " " + std::to_string(f.hard) + " " + std::to_string(f.needed) + " " +
           (f.raised ? "raised" : "kept") + " [" + f.problem + "] " + soft_now();
  });
  EXPECT_EQ(out, "1256 4096 1256 raised [] 1256");
}

TEST(FdLimit, KeepsASoftLimitThatIsHighEnough) {
  const std::string out = in_child(3000, 4096, [] {
    const FdLimit f = ensure_fd_limit(1000);
    return std::string(f.raised ? "raised" : "kept") + " [" + f.problem + "] " + soft_now();
  });
  EXPECT_EQ(out, "kept [] 3000");
}

TEST(FdLimit, RefusesAMaxConnectionsTheHardLimitCannotHold) {
  const std::string out = in_child(512, 1024, [] {
    const FdLimit f = ensure_fd_limit(1000);
    return (f.raised ? "raised " : "kept ") + soft_now() + " " + f.problem;
  });
  EXPECT_EQ(
      out,
      "kept 512 limits.max_connections = 1000 needs 1256 file descriptors (256 beyond the connections), "
      "but the hard RLIMIT_NOFILE is 1024 (LimitNOFILE= in the systemd unit, ulimit -Hn): lower "
      "limits.max_connections to at most 768 or raise the limit");
}

}  // namespace
}  // namespace edge::firmware
