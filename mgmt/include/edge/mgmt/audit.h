// AuditLog: an append-only JSON-lines record of every change (who, when, what, result); never a secret.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>

namespace edge::mgmt {

class AuditLog {
 public:
  // Creates the file (mode 0640) if needed; throws MgmtError(internal) when it
  // cannot be opened for appending. Each record opens the path anew (O_APPEND,
  // O_NOFOLLOW), so a rotated, removed or replaced file is noticed.
  explicit AuditLog(std::filesystem::path path);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // One line: {"time":"2026-11-26T10:00:00.123Z","actor":"uid:0","action":"apply",
  //            "detail":"...","result":"ok"|"refused: reason"}; written and fsync'ed.
  void record(std::string_view actor, std::string_view action, std::string_view detail,
              std::string_view result);

  // Throws MgmtError(internal) with the reason unless the path opens for
  // appending as a regular file on a file system with room for records.
  void check_writable() const;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::mutex mu_;
};

// JSON string escaping (quotes, backslash, control characters).
std::string json_escape(std::string_view s);

}  // namespace edge::mgmt
