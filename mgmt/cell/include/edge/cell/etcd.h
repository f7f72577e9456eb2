// EtcdClient: the cell's shared state store (issue 15), etcd's v3 API over gRPC.
//
// Why gRPC and not etcd's JSON gateway (measured: docs/performance.md, tests/bench/
// etcd-api-compare; reasons: docs/architecture.md "The cell"): 1.4 to 2.6 times lower latency
// and 1.6 to 3 times less etcd CPU (the gateway is a proxy inside etcd onto this gRPC API),
// watches as streams on the one HTTP/2 connection, typed messages instead of base64 in JSON;
// the agent links gRPC and protobuf already.
// The .proto is a subset of etcd 3.4's own (mgmt/proto/etcd, etcd's package, message and
// field numbers), so nothing but the messages the cell uses is compiled.
//
// Several endpoints: a call goes to the endpoint in use; when it answers UNAVAILABLE (no
// connection, or the member is not serving) the client moves on to the next endpoint and
// tries again, once per endpoint. Reads are retried on DEADLINE_EXCEEDED too; writes are
// not (a write that timed out may have been applied: the caller sees EtcdError and reads
// back). TLS: a CA to verify the members, and optionally a client certificate.
//
// Endpoints are "host:port", "http://host:port" or "https://host:port" (IPv6 as [addr]:port).
// The scheme decides: https:// is TLS, http:// is plain; a bare host:port is TLS exactly when
// EtcdOptions::tls is given. Refused at construction, with the reason (EtcdError,
// INVALID_ARGUMENT): a malformed endpoint, an http:// endpoint beside TLS settings, a list that
// mixes TLS and plain endpoints (a plain one would let whoever blocks the others read and write
// the cell in clear), unreadable or malformed PEM files, a client key that does not match its
// certificate. A TLS handshake that fails (a server certificate the CA did not sign or that does
// not name the endpoint's address, a client certificate the server refuses or none) is an
// EtcdError naming the endpoint and what the handshake said, within the call's deadline.
//
// Thread-safe. Every call has a deadline (EtcdOptions::call_timeout) and throws
// EtcdError with the endpoint and gRPC's status when etcd does not answer as asked.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace edge::cell {

class EtcdError : public std::runtime_error {
 public:
  EtcdError(const std::string& what, int grpc_code) : std::runtime_error(what), code_(grpc_code) {}
  int grpc_code() const noexcept { return code_; }
  // No endpoint could be reached (every one answered UNAVAILABLE or timed out).
  bool unavailable() const noexcept;

 private:
  int code_;
};

struct EtcdTls {
  std::string ca_file;    // PEM CA(s) that signed the etcd members' certificates; empty: the system's
  std::string cert_file;  // client certificate (PEM), optional
  std::string key_file;   // its key (PEM), exactly when cert_file is given
};

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "[http[s]://]host:port", tried in order
  std::optional<EtcdTls> tls;          // none: plain gRPC unless an endpoint says https://
  std::chrono::milliseconds call_timeout{2000};
};

struct KeyValue {
  std::string key, value;
  std::int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct WatchEvent {
  enum class Type { put, remove } type = Type::put;
  KeyValue kv;  // for a removal: the key and the revision of the removal
};

// One endpoint as configured, taken apart. EtcdError (INVALID_ARGUMENT) with the reason when
// it is not "[http://|https://]host:port[/]" with a port in 1..65535.
struct EtcdEndpoint {
  enum class Scheme { none, http, https } scheme = Scheme::none;
  std::string host;  // a name, an IPv4 address, or an IPv6 address without brackets
  std::uint16_t port = 0;
  std::string target() const;  // what gRPC dials: host:port, [v6]:port
};
EtcdEndpoint parse_etcd_endpoint(std::string_view text);

// The range end that selects every key starting with `prefix` (etcd's "prefix + 1").
std::string prefix_end(std::string_view prefix);

class EtcdClient {
 public:
  explicit EtcdClient(EtcdOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  std::optional<KeyValue> get(std::string_view key);
  struct Range {
    std::vector<KeyValue> kvs;  // sorted by key
    std::int64_t revision = 0;  // the store's revision they were read at
  };
  Range get_prefix(std::string_view prefix);

  // Returns the revision of the write.
  std::int64_t put(std::string_view key, std::string_view value, std::int64_t lease = 0);
  // Writes only when the key does not exist; false when it does.
  bool create(std::string_view key, std::string_view value, std::int64_t lease = 0);
  // Writes only when the key's mod_revision is `mod_revision` (0: the key does not exist).
  bool compare_and_swap(std::string_view key, std::int64_t mod_revision, std::string_view value,
                        std::int64_t lease = 0);
  // Removes one key; returns how many were removed (0 or 1).
  std::int64_t remove(std::string_view key);

  // A lease of `ttl` (at least 1 s); its id.
  std::int64_t grant_lease(std::chrono::seconds ttl);
  // Refreshes the lease; the TTL it has now, 0 when it has expired or was revoked.
  std::int64_t keep_alive(std::int64_t lease);
  void revoke_lease(std::int64_t lease);

  // The endpoint calls go to now.
  std::string endpoint() const;

  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Watches every key under a prefix from a revision on, on a thread of its own, and hands
// each batch of events to `on_events` (on that thread). When the stream breaks (the
// endpoint died, a network fault) it reconnects through the client's endpoints and
// resumes after the last revision it delivered, so no event is lost or repeated while
// etcd still holds it; when that revision was compacted away it calls `on_compacted`
// with the oldest revision still there (the caller re-reads) and resumes from it.
class EtcdWatch {
 public:
  using OnEvents = std::function<void(const std::vector<WatchEvent>&)>;
  using OnCompacted = std::function<void(std::int64_t oldest)>;
  EtcdWatch(EtcdClient& client, std::string prefix, std::int64_t start_revision, OnEvents on_events,
            OnCompacted on_compacted = {});
  ~EtcdWatch();  // stops the thread
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Streams opened so far (1 + reconnects).
  int streams() const;

 private:
  void run();
  EtcdClient& client_;
  std::string prefix_;
  OnEvents on_events_;
  OnCompacted on_compacted_;
  struct State;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace edge::cell
