// Running a helper program (softhsm2-util, pkcs11-tool, edge-hsm) and capturing what it says.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edge::test {

struct CommandResult {
  int exit_code = -1;  // exit status; 128+N when killed by signal N
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH when it has no '/') with the current environment
// plus the `env` overrides, feeds `input` on stdin and waits for it to exit.
// Throws std::runtime_error when it cannot be started.
CommandResult run_command(const std::vector<std::string>& argv,
                          const std::vector<std::pair<std::string, std::string>>& env = {},
                          std::string_view input = {});

// Absolute path of a program on PATH (plus the sbin directories, where daemons
// live and a non-login PATH may not look). Throws std::runtime_error naming
// the Debian package to install: a test whose real part is missing fails, it
// never skips.
std::filesystem::path find_program(std::string_view name, std::string_view debian_package);

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on
// destruction unless EDGE_KEEP_TEST_DIRS=1 is set (then its path is printed).
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "edge-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// Sets an environment variable for the lifetime of the object, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace edge::test
