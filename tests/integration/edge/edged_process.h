// edged (the product daemon) as a child process of a test: config, start, status, reload, stop.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "edge/test/sip/process.h"
#include "edge/test/sip/transport.h"

namespace edge::test {

// What goes into the edged.conf the helper writes. Ports may be fixed: every
// test runs in a private network namespace of its own (netns-run).
struct EdgedOptions {
  // false: no --config; edged writes its embedded lab default (firmware/edged.conf)
  // into the state dir on first boot, and the fields below (except start_timeout)
  // are ignored — endpoint() then gives the lab default ports, which are these defaults.
  bool write_config = true;
  std::uint16_t udp_port = 5060;
  std::uint16_t tcp_port = 5060;
  std::uint16_t tls_port = 5061;
  std::uint16_t ws_port = 5062;
  std::uint16_t wss_port = 5063;  // 0 for any of them: no such listener
  // The core behind the edge (a KamailioProcess on its default port).
  std::string core = "sip:127.0.0.1:5080;transport=tcp";
  std::string key_set = "sipflow";
  std::uint32_t flow_timer = 30;                // sip.flow_timer
  std::optional<std::int64_t> idle_timeout_ms;  // limits.idle_timeout_ms
  std::optional<std::int64_t> flow_grace_ms;    // limits.flow_timeout_grace_ms
  std::string log_level = "info";
  // Further "key = value" lines, appended verbatim.
  std::vector<std::pair<std::string, std::string>> extra;
  std::chrono::milliseconds start_timeout{20000};
  // Extra environment for edged ("NOTIFY_SOCKET=/tmp/x", "WATCHDOG_USEC=500000").
  std::vector<std::string> env;
  // Extra edged arguments ("--production").
  std::vector<std::string> args;
  // A program edged runs under, which execs it in place (absolute path first):
  // {"/usr/bin/prlimit", "--nofile=512:512", "--"}.
  std::vector<std::string> wrapper;
};

// One `event=status` line, its key=value fields.
struct EdgedStatus {
  std::map<std::string, std::string> fields;
  // The numeric value of a field; throws std::runtime_error when it is missing or not a number.
  std::uint64_t number(const std::string& key) const;
  std::string text(const std::string& key) const;
};

// The key=value fields of one edged log line ("... info event=x a=1 b=\"two words\"").
std::map<std::string, std::string> parse_log_fields(std::string_view line);

// Writes a copy of the harness's Kamailio template (tests/integration/sip/kamailio/kamailio.cfg.in)
// whose request_route starts with force_tcp_alias() for TCP requests: a connection
// then also answers for its Via sent-by port, so Kamailio sends requests for the
// edge's Path / Record-Route URI (127.0.0.1:5060;transport=tcp) down the
// connection edged opened to it (its core link) instead of opening one of its
// own. Returns the file's path (in dir), for KamailioOptions::config_template.
std::filesystem::path write_aliasing_core_template(const std::filesystem::path& dir);

// Starts edged with `o` expecting it to fail: EdgedProcess throws when edged
// exits during start-up, and this returns that message (exit status and log),
// or "edged started" when it did not fail.
std::string start_failure(EdgedOptions o);

// Path of build/bin/edged, build/bin/edge-hsm and build/bin/edgectl (set by CMake for the test binaries).
std::filesystem::path edged_program();
std::filesystem::path edge_hsm_program();
std::filesystem::path edgectl_program();

// Writes DIR/edged.conf, runs `edged --state-dir DIR --config DIR/edged.conf`
// (lab mode: SoftHSM token, key set and TLS certificate provisioned on first
// boot), waits for `event=started`. stop() sends SIGTERM and returns the exit
// status (the test asserts 0); the destructor stops it too (SIGKILL after a
// grace period, via ChildProcess's keeper), so no edged outlives its test.
class EdgedProcess {
 public:
  explicit EdgedProcess(EdgedOptions options = {});
  ~EdgedProcess();
  EdgedProcess(const EdgedProcess&) = delete;
  EdgedProcess& operator=(const EdgedProcess&) = delete;

  const EdgedOptions& options() const { return options_; }
  const std::filesystem::path& state_dir() const { return dir_->path(); }
  const std::filesystem::path& config_file() const { return config_file_; }
  std::filesystem::path certificate() const { return dir_->path() / "tls" / "edge.crt"; }
  pid_t pid() const;

  // Where a client connects for that transport.
  Endpoint endpoint(Transport t) const;
  // The config text written (for failure output).
  std::string config_text() const;
  std::string log() const;
  // Log lines containing "event=NAME", in order.
  std::vector<std::string> events(std::string_view name) const;
  // Polls the log until a line with `needle` appears (after `after` bytes of log); bounded.
  bool wait_for_log(std::string_view needle, std::chrono::milliseconds timeout, std::size_t after = 0) const;

  // SIGUSR1, then waits for the next event=status line and parses it.
  EdgedStatus status(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // SIGHUP, then waits for event=reloaded (true) or event=reload_failed (false).
  bool reload(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  // Runs `edge-hsm ARGS...` with EDGE_STATE_DIR set to this edge's state dir;
  // returns the exit status, output in *output when given.
  int edge_hsm(const std::vector<std::string>& args, std::string* output = nullptr) const;
  // Runs `edgectl --socket <state>/mgmt.sock ARGS...` (the management API over its Unix socket).
  int edgectl(const std::vector<std::string>& args, std::string* output = nullptr) const;

  // SIGKILL (no drain, no clean-up): returns the exit status (128 + 9).
  int kill9();
  // Starts edged again on the same state directory (after stop() or kill9()) and
  // waits for event=started; log() then reads the new run's log.
  void restart();

  bool running();
  // SIGTERM; returns the exit status (0 expected). Idempotent.
  int stop();

 private:
  EdgedOptions options_;
  std::unique_ptr<TempDir> dir_;
  std::filesystem::path config_file_;
  std::unique_ptr<ChildProcess> process_;
  int starts_ = 0;

  void launch();
  int run_tool(const std::filesystem::path& program, const std::vector<std::string>& args,
               std::string* output, const std::string& name) const;
};

}  // namespace edge::test
