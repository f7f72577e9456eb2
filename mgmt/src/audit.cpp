// AuditLog: one fsync'ed JSON line per management change, appended to a 0640 file.
#include <edge/mgmt/audit.h>
#include <edge/mgmt/error.h>
#include <fcntl.h>
#include <sys/stat.h>
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

AuditLog::AuditLog(std::filesystem::path path) : path_(std::move(path)) {
  // O_APPEND: each record lands at the end even if an operator's tool holds
  // the file open too; the log is only ever added to.
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    throw MgmtError(ErrorCode::internal,
                    "open audit log " + path_.string() + ": " + std::generic_category().message(errno));
  }
  // The umask must not widen or narrow what the operators' group may read.
  ::fchmod(fd_, 0640);
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AuditLog::record(std::string_view actor, std::string_view action, std::string_view detail,
                      std::string_view result) {
  const std::string line = "{\"time\":\"" + utc_now() + "\",\"actor\":\"" + json_escape(actor) +
                           "\",\"action\":\"" + json_escape(action) + "\",\"detail\":\"" +
                           json_escape(detail) + "\",\"result\":\"" + json_escape(result) + "\"}\n";
  std::lock_guard lock(mu_);
  // One write() per line: with O_APPEND a record is never interleaved with another.
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw MgmtError(ErrorCode::internal,
                      "write audit log " + path_.string() + ": " + std::generic_category().message(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd_) != 0) {
    throw MgmtError(ErrorCode::internal,
                    "fsync audit log " + path_.string() + ": " + std::generic_category().message(errno));
  }
}

}  // namespace edge::mgmt
