// Real peers as child processes that never outlive their test, plus temp dirs and PATH lookup.
#pragma once

#include <edge/test/process.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edge::test {

// find_program and TempDir: tests/support (edge/test/process.h), one of each for every test.

struct ProcessOptions {
  std::filesystem::path program;      // absolute (see find_program)
  std::vector<std::string> args;      // without argv[0]
  std::filesystem::path log_file;     // stdout and stderr are appended here; stdin is /dev/null
  std::filesystem::path working_dir;  // empty: inherit
};

// A program in a process group of its own.
//
// Why a keeper: a destructor cannot run when ctest's timeout SIGKILLs the test,
// and Kamailio's worker processes survive the death of their main process. So
// a small keeper process (forked before the program) holds one end of a pipe
// whose other end only this process holds; when the pipe closes, because stop()
// closed it or because this process died in any way, the keeper sends SIGTERM
// to the program's group, then SIGKILL after the grace period, reaps it, and
// exits with the program's status. No peer process outlives its test.
class ChildProcess {
 public:
  explicit ChildProcess(const ProcessOptions& options);
  ~ChildProcess();  // stop()
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }  // the program (also its process group id)
  bool running();
  // Terminates the group (SIGTERM, SIGKILL after grace) and returns the
  // program's exit status (128 + signal when killed). Idempotent.
  int stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  // The exit status once the program has ended by itself or been stopped.
  std::optional<int> exit_status();
  const std::filesystem::path& log_file() const { return log_file_; }
  // The log file's current contents.
  std::string log() const;

 private:
  bool reap(bool block);
  std::filesystem::path log_file_;
  pid_t keeper_ = -1;
  pid_t pid_ = -1;
  int lifeline_ = -1;  // write end; the keeper reads
  std::optional<int> status_;
};

// Reads a whole file into a string (empty when it does not exist).
std::string read_file(const std::filesystem::path& path);
// Writes a file atomically enough for a test (truncate + write); throws on error.
void write_file(const std::filesystem::path& path, std::string_view content);

}  // namespace edge::test
