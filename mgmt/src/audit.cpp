// AuditLog: one fsync'ed JSON line per management change, appended to a 0640 file.
#include <edge/mgmt/audit.h>
#include <edge/mgmt/error.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <system_error>

namespace edge::mgmt {
namespace {

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s.%03dZ", date, static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

namespace {

constexpr int kOpenFlags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW;
// Free space below which a change is refused rather than risk a record that
// does not fit (a record is well under 8 KiB; this leaves room for many).
constexpr unsigned long long kMinFreeBytes = 64ULL * 1024ULL;

[[noreturn]] void audit_fail(const std::string& what, const std::filesystem::path& path, int err) {
  throw MgmtError(ErrorCode::internal,
                  what + " audit log " + path.string() + ": " + std::generic_category().message(err));
}

// Opens the log by its path for one use: a file an operator moved away
// (rotation), removed or replaced is noticed at the next record, not written
// behind its back through a descriptor to the old file.
int open_log(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), kOpenFlags, 0640);
  if (fd < 0) audit_fail("open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    audit_fail("stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw MgmtError(ErrorCode::internal, "audit log " + path.string() + " is not a regular file");
  }
  return fd;
}

struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

}  // namespace

AuditLog::AuditLog(std::filesystem::path path) : path_(std::move(path)) {
  // O_APPEND: each record lands at the end even if an operator's tool holds
  // the file open too; the log is only ever added to.
  Fd f{open_log(path_)};
  // The umask must not widen or narrow what the operators' group may read.
  ::fchmod(f.fd, 0640);
}

AuditLog::~AuditLog() = default;

void AuditLog::check_writable() const {
  Fd f{open_log(path_)};
  struct statvfs vfs {};
  if (::fstatvfs(f.fd, &vfs) != 0) audit_fail("statvfs", path_, errno);
  const unsigned long long free_bytes =
      static_cast<unsigned long long>(vfs.f_bavail) * static_cast<unsigned long long>(vfs.f_frsize);
  if (free_bytes < kMinFreeBytes) {
    throw MgmtError(ErrorCode::internal, "audit log " + path_.string() + ": file system nearly full (" +
                                             std::to_string(free_bytes) + " bytes free)");
  }
}

void AuditLog::record(std::string_view actor, std::string_view action, std::string_view detail,
                      std::string_view result) {
  const std::string line = "{\"time\":\"" + utc_now() + "\",\"actor\":\"" + json_escape(actor) +
                           "\",\"action\":\"" + json_escape(action) + "\",\"detail\":\"" +
                           json_escape(detail) + "\",\"result\":\"" + json_escape(result) + "\"}\n";
  std::lock_guard lock(mu_);
  Fd f{open_log(path_)};
  // One write() per line: with O_APPEND a record is never interleaved with another.
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(f.fd, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      audit_fail("write", path_, errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(f.fd) != 0) audit_fail("fsync", path_, errno);
}

}  // namespace edge::mgmt
