// The Prometheus endpoint of edged: collectors over the front end's snapshot (the counters that
// status and the status line read) and over /proc/self, serialized by prometheus-cpp, served over HTTP(S).
#pragma once

#include "front_end.h"

#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <prometheus/collectable.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace edge::firmware {

struct MetricsOptions {
  std::string listen;  // "127.0.0.1:9464"; empty: no endpoint
  // TLS when certificate is set (private_key then required); client_ca: only
  // clients with a certificate it signed may connect.
  std::filesystem::path certificate, private_key, client_ca;
  bool enabled() const { return !listen.empty(); }
  bool tls() const { return !certificate.empty(); }
};

// metrics.* with relative paths resolved against the state directory.
MetricsOptions metrics_options(const mgmt::v1::MetricsSettings& m, const std::filesystem::path& state_dir);

// The edge_* metrics. Every value is read at scrape time from
// SipFrontEnd::snapshot() (and the config generation from the agent): there is
// no second set of counters. The front end must outlive the collector.
std::shared_ptr<prometheus::Collectable> make_edge_collector(const SipFrontEnd& front_end,
                                                             std::function<std::uint64_t()> generation);
// The edge_cell_* metrics (docs/operations.md, "Running a cell"), from the agent's cell summary
// (refreshed by the agent every second; never waits for etcd). Nothing when not in a cell.
std::shared_ptr<prometheus::Collectable> make_cell_collector(std::function<mgmt::v1::CellSummary()> summary);
// The process_* metrics of the Prometheus client conventions (CPU, RSS,
// virtual memory, open and maximum fds, start time, threads), from /proc/self.
std::shared_ptr<prometheus::Collectable> make_process_collector();

// The HTTP(S) server: GET (or HEAD) /metrics in the text exposition format,
// serialized by prometheus-cpp. Boost.Beast over Asio on one thread of its
// own (Debian's civetweb, prometheus-cpp's usual server, crashes on its first
// TLS connection against OpenSSL 3). Every request is bounded: 16 KB of
// request head, no body, 10 s for the whole exchange (TLS handshake
// included), one request per connection, at most kMaxConnections at once.
// Throws std::runtime_error with the reason (address in use, unreadable or
// mismatched TLS material).
class MetricsServer {
 public:
  static constexpr std::size_t kMaxConnections = 16;
  MetricsServer(const MetricsOptions& options,
                std::vector<std::shared_ptr<prometheus::Collectable>> collectors);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  std::uint16_t port() const noexcept;
  const MetricsOptions& options() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace edge::firmware
