// A real Kamailio registrar/proxy (the "core" behind the edge), started and stopped by a test.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "edge/test/sip/pki.h"
#include "edge/test/sip/process.h"
#include "edge/test/sip/transport.h"

namespace edge::test {

struct KamailioOptions {
  std::uint16_t port = 5080;  // UDP and TCP, on 127.0.0.1 (and ::1 with ipv6)
  bool ipv6 = true;
  std::uint16_t tls_port = 0;  // 0: no TLS listener
  std::uint16_t ws_port = 0;   // 0: no WebSocket listener (plain HTTP upgrade on TCP)
  std::uint16_t wss_port = 0;  // 0: no secure WebSocket listener
  // Server: and User-Agent: of the core, so a test can tell its responses from the edge's.
  std::string server_header = "core-kamailio";
  // TLS material for the TLS/WSS listeners; empty: a fresh TestPki issues it.
  CertFiles tls_cert;
  std::filesystem::path tls_ca;  // to verify client certificates; empty: not asked for
  std::chrono::milliseconds start_timeout{10000};
  // Shared and private memory (-m, -M) in MB: enough for tests; a soak with
  // thousands of registrations and transactions needs more shared memory.
  unsigned shm_mb = 32;
  unsigned pkg_mb = 8;
  // Template to render; empty: tests/integration/sip/kamailio/kamailio.cfg.in.
  std::filesystem::path config_template;
};

// Renders the config template into a temp dir, runs
//   kamailio -f CFG -P PIDFILE -w DIR -Y DIR -DD -E -m SHM -M PKG
// (-DD: the main process stays our child; -E: log to stderr, which goes to
// the log file), waits until it answers an OPTIONS over UDP and accepts TCP,
// and stops it by pid (see ChildProcess) on destruction. Throws with the log
// when kamailio is missing, fails its config check, or does not come up.
class KamailioProcess {
 public:
  explicit KamailioProcess(KamailioOptions options = {});
  ~KamailioProcess();
  KamailioProcess(const KamailioProcess&) = delete;
  KamailioProcess& operator=(const KamailioProcess&) = delete;

  const KamailioOptions& options() const { return options_; }
  // Where a UA connects for that transport (v6: [::1]).
  Endpoint endpoint(Transport transport, bool v6 = false) const;
  // "sip:127.0.0.1:5080;transport=tcp;lr": a Route value toward the core.
  std::string route_uri(Transport transport) const;
  // CA that signed the core's TLS certificate (empty without TLS/WSS).
  const std::filesystem::path& ca_file() const { return ca_file_; }
  const std::filesystem::path& config_file() const { return config_file_; }
  const std::filesystem::path& log_file() const;
  std::string log() const;
  bool running();
  void stop();
  // Sends sig to Kamailio's whole process group (every worker): SIGSTOP /
  // SIGCONT for a core that hangs, SIGKILL for one that dies. stop() still
  // reaps it (a stopped group gets SIGKILL after the grace).
  void signal_group(int sig);

 private:
  KamailioOptions options_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<TestPki> pki_;
  std::filesystem::path ca_file_;
  std::filesystem::path config_file_;
  std::unique_ptr<ChildProcess> process_;
};

// Replaces every @NAME@ in text by its value; throws std::runtime_error when a
// placeholder is left without a value (a typo would otherwise ship a broken config).
std::string render_template(std::string text, const std::vector<std::pair<std::string, std::string>>& values);

}  // namespace edge::test
