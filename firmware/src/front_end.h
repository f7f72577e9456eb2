// SipFrontEnd: net/'s transports and proxy rules behind mgmt's FrontEnd interface (the controlled restart).
#pragma once

#include "config_file.h"

#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/mgmt/front_end.h>
#include <edge/net/flow/token_codec.h>
#include <edge/net/proxy/edge_proxy.h>
#include <edge/net/transport/transports.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace edge::firmware {

// A start-up failure with the exit code that tells the operator what to fix.
class StartError : public std::runtime_error {
 public:
  StartError(int exit_code, const std::string& what) : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

// Everything a controlled restart swaps: the key-set view, the codec and the proxy rules.
struct Rules {
  std::shared_ptr<hsm::KeySetMac> mac;
  std::shared_ptr<flow::TokenCodec> codec;
  std::shared_ptr<net::EdgeProxy> proxy;
};

// The SIP front end of edged. The management agent drives it (one call at a
// time, from its own thread); the signal thread only reads status.
//
// Restart classes (mgmt::FrontEnd::restart_class):
//  - front end: pause delivery, wait for handler calls in progress, swap the
//    proxy rules / key-set view / TLS material, resume. Listening sockets and
//    client flows stay; bytes that arrive meanwhile wait in socket buffers and
//    are answered by the new rules.
//  - listeners (listen, core, workers, limits): the transports are rebuilt;
//    client flows close (clients re-register). validate() first checks that
//    every new listener can bind, so a typo does not take the edge down.
//  - none (log level) and process (HSM, management socket): nothing to restart
//    here; process-class values take effect at the next start of edged.
// The proxy counters edged reports, summed over every proxy a restart
// replaced: a restart builds a new EdgeProxy, and counters that reset on each
// apply would tell an operator nothing.
struct ReportedCounts {
  std::uint64_t requests_from_clients = 0, requests_from_core = 0;
  std::uint64_t r403 = 0, r430 = 0, r503 = 0;
  std::uint64_t verifies_avoided = 0, verifies_hsm = 0, mints_hsm = 0;

  static ReportedCounts of(const net::EdgeProxy& proxy);
  ReportedCounts& operator+=(const ReportedCounts& o);
  ReportedCounts& operator-=(const ReportedCounts& o);
};

class SipFrontEnd final : public mgmt::FrontEnd {
 public:
  SipFrontEnd(hsm::Hsm& hsm, std::filesystem::path state_dir);
  ~SipFrontEnd() override;
  SipFrontEnd(const SipFrontEnd&) = delete;
  SipFrontEnd& operator=(const SipFrontEnd&) = delete;

  // Builds the rules and starts the transports for `config`. Throws StartError
  // (kExitConfig, kExitHsm or kExitListen).
  void boot(const mgmt::v1::ApplianceConfig& config);
  // Drains and closes everything (SIGTERM). Idempotent.
  void stop();
  // One event=status line.
  void log_status();
  std::vector<net::BoundListener> listening() const;
  // When the timer thread last ran (every 100 ms): the systemd watchdog is fed
  // only while it keeps running.
  std::chrono::steady_clock::time_point last_tick() const { return last_tick_.load(); }

  // mgmt::FrontEnd
  mgmt::v1::RestartClass restart_class(const mgmt::v1::ApplianceConfig& current,
                                       const mgmt::v1::ApplianceConfig& next) override;
  std::string validate(const mgmt::v1::ApplianceConfig& next) override;
  std::chrono::milliseconds drain(std::chrono::milliseconds bound) override;
  void apply(const mgmt::v1::ApplianceConfig& next) override;
  void start() override;
  std::string health() override;
  mgmt::v1::FrontEndStatus status() override;
  void key_sets_changed() override;

 private:
  class CountingHandler;
  EdgedConfig convert(const mgmt::v1::ApplianceConfig& config) const;  // throws ConfigError
  Rules build_rules(const EdgedConfig& cfg);                           // throws HsmError & co.
  std::shared_ptr<net::MessageHandler> wrap(const std::shared_ptr<net::EdgeProxy>& proxy);
  void timer_loop();
  ReportedCounts counts_locked() const;  // replaced_counts_ + the current proxy's

  hsm::Hsm& hsm_;
  std::filesystem::path state_dir_;
  std::shared_ptr<std::atomic<int>> in_flight_ = std::make_shared<std::atomic<int>>(0);

  // What one configuration runs with. The one before the last swap is kept, so
  // a rollback swaps it back without an HSM call (the HSM may be what failed).
  struct Running {
    mgmt::v1::ApplianceConfig config;
    EdgedConfig cfg;
    Rules rules;
  };

  mutable std::mutex mu_;  // guards everything below
  mgmt::v1::ApplianceConfig applied_;
  EdgedConfig cfg_;
  Rules rules_;
  std::optional<Running> previous_;
  // Counts of the proxies no longer current (see ReportedCounts).
  ReportedCounts replaced_counts_;
  std::shared_ptr<net::Transports> transports_;
  // Proxies replaced by a restart, driven by the timer until their transactions end.
  std::vector<std::pair<std::shared_ptr<net::EdgeProxy>, std::chrono::steady_clock::time_point>> retiring_;
  std::string state_ = "stopped";  // running | draining | stopped | failed
  std::uint64_t restarts_ = 0;

  std::atomic<bool> timer_stop_{false};
  std::atomic<std::chrono::steady_clock::time_point> last_tick_{std::chrono::steady_clock::now()};
  std::thread timer_;
};

// Loads a certificate chain and its private key the way the TLS listeners will;
// throws std::runtime_error with OpenSSL's reason.
void check_tls_material(const std::string& certificate_chain_file, const std::string& private_key_file);

}  // namespace edge::firmware
