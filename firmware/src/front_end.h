// SipFrontEnd: net/'s transports and proxy rules behind mgmt's FrontEnd interface (the controlled restart).
#pragma once

#include "config_file.h"

#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/mgmt/front_end.h>
#include <edge/net/proxy/edge_proxy.h>
#include <edge/net/token/token_codec.h>
#include <edge/net/transport/transports.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
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
// Restart classes (decided by the agent from the property registry, passed to apply()):
//  - front end: pause delivery, wait for handler calls in progress, swap the
//    proxy rules / key-set view / TLS material, resume. Listening sockets and
//    client flows stay; bytes that arrive meanwhile wait in socket buffers and
//    are answered by the new rules.
//  - listeners (listen, core, workers, limits): the transports are rebuilt;
//    client flows close (clients re-register). validate() first checks that
//    every new listener can bind, so a typo does not take the edge down.
//  - none (log level) and process (HSM, management socket): nothing to restart
//    here; process-class values take effect at the next start of edged.
//
// One net::ProxyState lives as long as this object: every EdgeProxy a restart
// builds shares it, so transactions forwarded before an apply are finished by
// the rules after it (same branch for a CANCEL, one table for the answer, one
// set of timers, which run on a transport worker) and the counters never reset.

// Everything the front end counts, read at one moment: status(), the status
// line and the Prometheus metrics are all made from it (one set of counters).
struct FrontEndSnapshot {
  std::string state;  // running | draining | stopped | failed
  bool has_transports = false;
  std::string key_set;
  std::uint32_t minting_version = 0;
  std::string core;  // the configured core URI ("" when none)
  // One label per configured core, in transport.cores order: the configured
  // URI itself with one core, each core's sip:ADDR:PORT;transport=T with several.
  std::vector<std::string> core_uris;
  std::uint64_t restarts = 0;
  // Controlled restarts' pauses (drain to resume): the last, their sum, and a
  // histogram over kPauseBoundsMs (not cumulative; the last bucket is +Inf).
  static constexpr std::array<std::uint64_t, 8> kPauseBoundsMs{5, 10, 25, 50, 100, 250, 1000, 5000};
  std::array<std::uint64_t, kPauseBoundsMs.size() + 1> pause_buckets{};
  std::uint64_t pause_last_us = 0, pause_sum_us = 0;
  net::TransportStats transport;
  net::ProxyStats proxy;
  flow::HsmWorkStats hsm_work;
  std::uint64_t negative_cache_hits = 0;  // of the current rules' codec
  hsm::OpCountersSnapshot hsm_ops;
  hsm::HsmState hsm_state = hsm::HsmState::available;
  std::uint64_t log_dropped = 0;  // lines the asynchronous log dropped (queue full)
};

class SipFrontEnd final : public mgmt::FrontEnd {
 public:
  // hsm_threads: the threads that make the proxy's HSM calls, for the life of
  // the front end (EdgedConfig::hsm_work_threads()).
  SipFrontEnd(hsm::Hsm& hsm, std::filesystem::path state_dir, unsigned hsm_threads = 4);
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
  // Thread-safe (the metrics endpoint's threads, the signal thread).
  FrontEndSnapshot snapshot() const;
  std::vector<net::BoundListener> listening() const;
  // HSM admission control started or stopped refusing work since the last
  // call (the daemon polls it once a second for the event stream): nullopt
  // when nothing changed.
  struct AdmissionChange {
    bool refusing = false;
    std::string detail;
  };
  std::optional<AdmissionChange> hsm_admission_change();
  // When a transport worker last ran the proxy's timers (every 100 ms): the
  // systemd watchdog is fed only while they keep running.
  std::chrono::steady_clock::time_point last_tick() const { return last_tick_->load(); }
  // Re-reads the key-set views when hsm.keyset_refresh_ms has passed since
  // the last read (the daemon calls it once a second), so a retire done outside
  // the agent (edge-hsm, another process on the token) is seen. An unchanged
  // view keeps the epoch, and with it every cache of verified tokens.
  void poll_key_sets(std::chrono::steady_clock::time_point now);

  // mgmt::FrontEnd
  std::string validate(const mgmt::v1::ApplianceConfig& next) override;
  std::chrono::milliseconds drain(std::chrono::milliseconds bound) override;
  void apply(const mgmt::v1::ApplianceConfig& next, mgmt::v1::RestartClass cls) override;
  void start() override;
  std::string health() override;
  mgmt::v1::FrontEndStatus status() override;
  void key_sets_changed() override;

 private:
  class CountingHandler;
  EdgedConfig convert(const mgmt::v1::ApplianceConfig& config) const;  // throws ConfigError
  Rules build_rules(const EdgedConfig& cfg);                           // throws HsmError & co.
  std::shared_ptr<net::MessageHandler> wrap(const std::shared_ptr<net::EdgeProxy>& proxy);

  hsm::Hsm& hsm_;
  std::filesystem::path state_dir_;
  // Outlives every set of rules: the proxy's transactions, branch seed, counters.
  const std::shared_ptr<net::ProxyState> proxy_state_;
  std::shared_ptr<std::atomic<int>> in_flight_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<std::chrono::steady_clock::time_point>> last_tick_ =
      std::make_shared<std::atomic<std::chrono::steady_clock::time_point>>(std::chrono::steady_clock::now());

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
  std::shared_ptr<net::Transports> transports_;
  // The cores the last apply added or changed (address, port, transport, or any
  // core's TLS identity settings), when it rebuilt the transports: health()
  // waits for each of them to come up once. A core configured before, down
  // now, is an outage, not a mistake in the apply.
  std::vector<net::CoreTarget> cores_to_check_;
  std::string state_ = "stopped";  // running | draining | stopped | failed
  std::uint64_t restarts_ = 0;
  // The pause of the controlled restart in progress (drain() to start()), and those before.
  std::optional<std::chrono::steady_clock::time_point> pause_started_;
  std::array<std::uint64_t, FrontEndSnapshot::kPauseBoundsMs.size() + 1> pause_buckets_{};
  std::uint64_t pause_last_us_ = 0, pause_sum_us_ = 0;
  // hsm_admission_change(): refusals seen at the last poll, and whether refusing.
  // poll_key_sets(): when the views were last read.
  std::chrono::steady_clock::time_point key_sets_read_ = std::chrono::steady_clock::now();
  std::uint64_t admission_refusals_ = 0;
  bool admission_refusing_ = false;
};

}  // namespace edge::firmware
