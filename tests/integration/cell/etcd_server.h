// EtcdServer: one real etcd member (Debian etcd-server) for a test, on loopback ports of its own,
// in a process group the test owns (ChildProcess: nothing outlives the test).
#pragma once

#include <edge/cell/etcd.h>
#include <edge/test/sip/ports.h>
#include <edge/test/sip/process.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace edge::test {

// TLS on the member's client port (https:// URLs): its certificate and key, the CA whose client
// certificates it requires (--client-cert-auth; empty: none required), and the client's own
// settings, which options() hands out (the readiness probe uses them too).
struct EtcdServerTls {
  std::string cert_file, key_file, client_ca_file;
  edge::cell::EtcdTls client;
};

// One etcd member: its own data directory and loopback ports; start() may be called again
// after stop() on the same data.
class EtcdServer {
 public:
  explicit EtcdServer(std::optional<EtcdServerTls> tls = std::nullopt)
      : client_port_(edge::test::free_port()), peer_port_(edge::test::free_port()), tls_(std::move(tls)) {}
  ~EtcdServer() { stop(); }

  void start() {
    const std::string client = url();
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    edge::test::ProcessOptions o;
    o.program = edge::test::find_program("etcd", "etcd-server");
    o.args = {"--name",
              "t",
              "--data-dir",
              (dir_.path() / "data").string(),
              "--listen-client-urls",
              client,
              "--advertise-client-urls",
              client,
              "--listen-peer-urls",
              peer,
              "--initial-advertise-peer-urls",
              peer,
              "--initial-cluster",
              "t=" + peer,
              "--logger",
              "zap",
              "--log-level",
              "warn"};
    if (tls_) {
      o.args.insert(o.args.end(), {"--cert-file", tls_->cert_file, "--key-file", tls_->key_file});
      if (!tls_->client_ca_file.empty())
        o.args.insert(o.args.end(), {"--client-cert-auth", "--trusted-ca-file", tls_->client_ca_file});
    }
    o.log_file = dir_.path() / "etcd.log";
    proc_ = std::make_unique<edge::test::ChildProcess>(o);
    // Ready when it answers a read (bounded).
    // One client for all tries: it must reconnect to an endpoint that refused it at first.
    edge::cell::EtcdClient probe(options());
    std::string last;
    for (int i = 0; i < 100; ++i) {
      try {
        probe.get("/ready");
        return;
      } catch (const edge::cell::EtcdError& e) {
        last = e.what();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    throw std::runtime_error("etcd did not come up (" + last + "): " + proc_->log());
  }
  void stop() {
    if (proc_) proc_->stop();
    proc_.reset();
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }
  std::string url() const { return (tls_ ? "https://" : "http://") + endpoint(); }
  edge::cell::EtcdOptions options() const {
    edge::cell::EtcdOptions o;
    o.endpoints = {tls_ ? url() : endpoint()};
    if (tls_) o.tls = tls_->client;
    o.call_timeout = std::chrono::milliseconds(1000);
    return o;
  }

 private:
  edge::test::TempDir dir_{"edge-etcd"};
  std::uint16_t client_port_, peer_port_;
  std::optional<EtcdServerTls> tls_;
  std::unique_ptr<edge::test::ChildProcess> proc_;
};

}  // namespace edge::test
