// Child processes guarded by a keeper, temp dirs and PATH lookup for the real-peer harness.
#include "edge/test/sip/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace edge::test {
namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

void set_signal(int sig, void (*handler)(int)) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

// Everything the forked processes use, prepared before fork(): after it only
// async-signal-safe calls are allowed (the test process may have threads).
struct Launch {
  const char* program;
  char* const* argv;
  const char* working_dir;  // nullptr: inherit
  int log_fd;
  int null_fd;
  int lifeline;  // keeper's end
  int report;    // keeper writes the program's pid here
};

[[noreturn]] void run_program(const Launch& l) {
  setpgid(0, 0);
  // Ignored signals stay ignored across exec; the program must get the defaults.
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) set_signal(sig, SIG_DFL);
  dup2(l.null_fd, 0);
  dup2(l.log_fd, 1);
  dup2(l.log_fd, 2);
  if (l.working_dir != nullptr && chdir(l.working_dir) != 0) _exit(126);
  close_range(3, ~0U, 0);
  execv(l.program, l.argv);
  _exit(127);
}

[[noreturn]] void run_keeper(const Launch& l) {
  // A name of its own: it must not look like (or be killed by name with) the test binary.
  prctl(PR_SET_NAME, "edge-keeper", 0, 0, 0);
  // The keeper must outlive a test killed by Ctrl-C or a timeout to clean up after it.
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) set_signal(sig, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  pid_t child = fork();
  if (child == 0) run_program(l);
  if (child < 0) _exit(125);
  setpgid(child, child);  // both sides set the group, so it exists before either goes on
  (void)!write(l.report, &child, sizeof child);
  // Keep only the lifeline: other fds (sockets, other keepers' lifelines) are the test's.
  if (l.lifeline > 0) close_range(0, static_cast<unsigned>(l.lifeline - 1), 0);
  close_range(static_cast<unsigned>(l.lifeline + 1), ~0U, 0);

  std::int32_t grace_ms = 1000;  // when the test process died without saying
  int status = 0;
  bool exited = false;
  for (;;) {
    pollfd p{l.lifeline, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      std::int32_t g = 0;
      ssize_t n = recv(l.lifeline, &g, sizeof g, 0);
      if (n == static_cast<ssize_t>(sizeof g)) {
        grace_ms = g;
        continue;
      }
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
    }
    if (waitpid(child, &status, WNOHANG) == child) {
      exited = true;
      break;
    }
  }
  if (!exited) {
    kill(-child, SIGTERM);
    for (std::int32_t waited = 0; waited < grace_ms; waited += 10) {
      if (waitpid(child, &status, WNOHANG) == child) {
        exited = true;
        break;
      }
      sleep_ms(10);
    }
  }
  // Whatever is left of the group goes now (e.g. Kamailio workers whose main process already exited).
  kill(-child, SIGKILL);
  if (!exited) waitpid(child, &status, 0);
  _exit(decode_status(status));
}

}  // namespace

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::filesystem::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

ChildProcess::ChildProcess(const ProcessOptions& options) : log_file_(options.log_file) {
  std::vector<std::string> args;
  args.push_back(options.program.string());
  args.insert(args.end(), options.args.begin(), options.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string program = options.program.string();
  std::string working_dir = options.working_dir.string();

  int log_fd = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw_errno("open " + log_file_.string());
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  // A socket pair rather than a pipe: send(MSG_NOSIGNAL) cannot SIGPIPE the test.
  int lifeline[2];
  int report[2];
  if (null_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, lifeline) != 0 ||
      pipe2(report, O_CLOEXEC) != 0) {
    int e = errno;
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    errno = e;
    throw_errno("ChildProcess set-up");
  }
  Launch launch{program.c_str(), argv.data(), working_dir.empty() ? nullptr : working_dir.c_str(),
                log_fd,          null_fd,     lifeline[1],
                report[1]};
  keeper_ = fork();
  if (keeper_ == 0) {
    close(lifeline[0]);
    close(report[0]);
    run_keeper(launch);
  }
  int fork_errno = errno;
  close(lifeline[1]);
  close(report[1]);
  close(log_fd);
  close(null_fd);
  if (keeper_ < 0) {
    close(lifeline[0]);
    close(report[0]);
    errno = fork_errno;
    throw_errno("fork");
  }
  lifeline_ = lifeline[0];
  pid_t child = -1;
  ssize_t n;
  do {
    n = read(report[0], &child, sizeof child);
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n != static_cast<ssize_t>(sizeof child)) {
    stop(std::chrono::milliseconds(0));
    throw std::runtime_error("could not start " + program);
  }
  pid_ = child;
}

ChildProcess::~ChildProcess() {
  try {
    stop();
  } catch (...) {  // a destructor must not throw; stop() kills by pid whatever happens
  }
}

bool ChildProcess::reap(bool block) {
  if (status_) return true;
  int st = 0;
  pid_t r;
  do {
    r = waitpid(keeper_, &st, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == keeper_) {
    status_ = decode_status(st);
    return true;
  }
  if (r < 0) {  // not our child any more (should not happen): treat as gone
    status_ = 255;
    return true;
  }
  return false;
}

bool ChildProcess::running() { return !reap(false); }

std::optional<int> ChildProcess::exit_status() {
  reap(false);
  return status_;
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  if (lifeline_ >= 0) {
    std::int32_t g = static_cast<std::int32_t>(grace.count());
    (void)send(lifeline_, &g, sizeof g, MSG_NOSIGNAL);
    close(lifeline_);
    lifeline_ = -1;
  }
  if (keeper_ < 0) return status_.value_or(255);
  auto deadline = std::chrono::steady_clock::now() + grace + std::chrono::seconds(3);
  while (!reap(false) && std::chrono::steady_clock::now() < deadline) sleep_ms(10);
  if (!status_) {  // the keeper itself is stuck: kill both by pid
    if (pid_ > 0) kill(-pid_, SIGKILL);
    kill(keeper_, SIGKILL);
    reap(true);
  }
  return *status_;
}

std::string ChildProcess::log() const { return read_file(log_file_); }

}  // namespace edge::test
