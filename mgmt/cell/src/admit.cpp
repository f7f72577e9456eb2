// admit_with_edge_hsm: the SO act of admission in a process of its own (edge-hsm cell trust),
// because PKCS#11 allows one login type per application and the caller is logged in as user.
#include <edge/cell/cell.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

extern char** environ;  // NOLINT(readability-redundant-declaration): posix_spawn's environment

namespace edge::cell {
namespace {

// A 0600 temporary file holding the identity blob; removed on destruction.
class TempIdentityFile {
 public:
  explicit TempIdentityFile(const std::vector<std::uint8_t>& bytes) {
    const char* tmp = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): read only
    std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/edge-cell-id-XXXXXX";
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    const int fd = ::mkstemp(name.data());  // mode 0600
    if (fd < 0)
      throw CellError("cannot create a temporary file for the identity: " +
                      std::generic_category().message(errno));
    path_ = name.data();
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        ::unlink(path_.c_str());
        throw CellError("cannot write the identity to " + path_);
      }
      off += static_cast<std::size_t>(n);
    }
    ::fchmod(fd, 0600);
    ::close(fd);
  }
  ~TempIdentityFile() { ::unlink(path_.c_str()); }
  TempIdentityFile(const TempIdentityFile&) = delete;
  TempIdentityFile& operator=(const TempIdentityFile&) = delete;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

struct ChildResult {
  int status = 0;
  bool timed_out = false;
  std::string err;  // the child's stderr (bounded)
};

// Runs argv[0] with argv in a process group of its own, stderr into a pipe (stdout to /dev/null); waits at
// most `timeout`, then kills the group. At most 64 KiB of output is kept.
ChildResult run_child(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw CellError("pipe: " + std::generic_category().message(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));  // NOLINT: execv's type
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw CellError("cannot run " + args[0] + ": " + std::generic_category().message(rc));
  }
  ChildResult r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;  // timeout: the deadline check ends the loop
    const ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: the child closed its stderr (it exits)
    if (r.err.size() < 65536) r.err.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fds[0]);
  if (r.timed_out) ::kill(-pid, SIGKILL);
  // After EOF the child exits promptly; bound that wait too.
  for (int i = 0;; ++i) {
    const pid_t w = ::waitpid(pid, &r.status, r.timed_out || i >= 200 ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (w == 0) {
      if (i == 199) ::kill(-pid, SIGKILL);
      ::usleep(10000);
    }
  }
  return r;
}

std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

std::function<void(const std::string&, const std::vector<std::uint8_t>&, const std::string&)>
admit_with_edge_hsm(std::filesystem::path edge_hsm, std::vector<std::string> base_args,
                    std::filesystem::path so_pin_file, std::chrono::milliseconds timeout) {
  return
      [edge_hsm = std::move(edge_hsm), base_args = std::move(base_args), so_pin_file = std::move(so_pin_file),
       timeout](const std::string& member, const std::vector<std::uint8_t>& identity,
                const std::string& fingerprint) {
        TempIdentityFile file(identity);
        std::vector<std::string> args{edge_hsm.string()};
        args.insert(args.end(), base_args.begin(), base_args.end());
        args.insert(args.end(), {"cell", "trust", "--public-key", file.path(), "--fingerprint", fingerprint,
                                 "--so-pin-file", so_pin_file.string(), "--", member});
        const ChildResult r = run_child(args, timeout);
        if (r.timed_out)
          throw CellError("admitting " + member + ": edge-hsm cell trust did not finish within " +
                          std::to_string(timeout.count()) + " ms (killed)");
        if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
          std::string why = one_line(r.err);
          const std::string prefix = "edge-hsm: ";
          if (why.rfind(prefix, 0) == 0) why = why.substr(prefix.size());
          throw CellError("admitting " + member +
                          " failed: " + (why.empty() ? "edge-hsm cell trust failed" : why));
        }
      };
}

}  // namespace edge::cell
