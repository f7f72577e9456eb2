// MgmtServer: the gRPC service on a Unix socket (peer credentials) and optionally TCP with mutual TLS.
#pragma once

#include <edge/mgmt/agent.h>
#include <edge/mgmt/v1/config.pb.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace edge::mgmt {

struct ServerOptions {
  // Unix socket (created with `unix_mode`; a stale socket file is replaced).
  // Peers are identified by SO_PEERCRED: uid 0, the daemon's own uid and
  // members of operator_gid are operators, every other peer a viewer.
  std::filesystem::path unix_socket;
  unsigned unix_mode = 0660;
  long operator_gid = -1;
  // TCP with mutual TLS; empty: none. The TLS handshake requires a client
  // certificate signed by client_ca_file (and, with crl_file, not revoked by
  // it): a client without one, or with another CA's, never reaches a handler.
  // The role comes from the first entry of `roles` whose URI or DNS
  // subjectAltName the certificate carries; common_name entries match the
  // subject CN only when cn_fallback is set. A certificate with no URI/DNS
  // SAN (and no usable CN) gets UNAUTHENTICATED, one whose SANs are not
  // listed PERMISSION_DENIED.
  std::string tcp_listen;  // "127.0.0.1:7443" or "[::1]:7443"; port 0: the OS picks
  std::string tls_certificate_file, tls_private_key_file, client_ca_file;
  std::string crl_file;  // PEM, one or more CRLs; empty: no revocation check
  std::vector<v1::CertificateRole> roles;
  bool cn_fallback = false;
};

// Builds ServerOptions out of the configuration's mgmt section (paths relative to state_dir).
ServerOptions server_options(const v1::MgmtSettings& m, const std::filesystem::path& state_dir);

class MgmtServer {
 public:
  // Starts serving; throws MgmtError(internal) with the reason when a
  // listener cannot be opened or the TLS material does not load.
  MgmtServer(Agent& agent, ServerOptions options);
  ~MgmtServer();  // shutdown()
  MgmtServer(const MgmtServer&) = delete;
  MgmtServer& operator=(const MgmtServer&) = delete;

  // The bound TCP port (0 when no TCP listener).
  int tcp_port() const;
  const std::filesystem::path& unix_socket() const;
  // Stops accepting, ends event streams, waits for running calls (bounded).
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edge::mgmt
