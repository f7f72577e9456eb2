// MgmtServer: serves EdgeManagement on a Unix socket (roles from SO_PEERCRED) and on TCP with mutual TLS.
//
// gRPC cannot tell a handler who is on the other end of a Unix socket, so the
// server owns that socket: it accepts each connection itself, reads the peer's
// credentials, and only then hands the descriptor to gRPC
// (grpc::AddInsecureChannelFromFd). gRPC 1.51 names such a connection "fd:<N>"
// in ServerContext::peer(), which maps the call back to the credentials. The
// descriptor number cannot be reused by another connection while a call on it
// runs: gRPC closes it only when its transport is destroyed, and every call
// holds a reference to its transport.
#include <edge/mgmt/error.h>
#include <edge/mgmt/server.h>
#include <fcntl.h>
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/server_posix.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "service.h"

namespace edge::mgmt {
namespace {

constexpr std::chrono::seconds kShutdownGrace(5);
// Largest request the agent reads (gRPC's own default, made explicit so it is
// a promise): no legitimate request comes near it, and a larger one is refused
// with RESOURCE_EXHAUSTED before it is parsed.
constexpr int kMaxRequestBytes = 4 * 1024 * 1024;

[[noreturn]] void fail(const std::string& what) { throw MgmtError(ErrorCode::internal, what); }

std::string errno_text(int err) { return std::generic_category().message(err); }

std::string read_pem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(std::string("mgmt: cannot read ") + what + " '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path under(const std::filesystem::path& state_dir, const std::string& p) {
  if (p.empty()) return {};
  std::filesystem::path path(p);
  return path.is_absolute() ? path : state_dir / path;
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct CrlFree {
  void operator()(X509_CRL* x) const { X509_CRL_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// A read-only BIO over `pem` (not copied: it must outlive the BIO).
std::unique_ptr<BIO, BioFree> memory_bio(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) fail("mgmt: out of memory reading PEM");
  return bio;
}

// Every PEM CRL in `crl_file`, each checked against a certificate of the
// client CA bundle (its issuer and signature): a CRL the CA did not sign
// would make every handshake fail, so it is refused at start with a reason.
std::vector<std::unique_ptr<X509_CRL, CrlFree>> load_crls(const std::string& crl_file,
                                                          const std::string& ca_pem) {
  std::vector<std::unique_ptr<X509, X509Free>> cas;
  auto ca_bio = memory_bio(ca_pem);
  while (X509* ca = PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr)) cas.emplace_back(ca);
  std::vector<std::unique_ptr<X509_CRL, CrlFree>> crls;
  const std::string crl_pem = read_pem(crl_file, "CRL file");
  auto bio = memory_bio(crl_pem);  // the BIO reads crl_pem in place
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) crls.emplace_back(crl);
  ERR_clear_error();  // the end of the PEM stream reads as an error
  if (crls.empty()) fail("mgmt: no PEM CRL in '" + crl_file + "'");
  for (const auto& crl : crls) {
    const bool signed_by_ca = std::any_of(cas.begin(), cas.end(), [&](const auto& ca) {
      if (X509_NAME_cmp(X509_get_subject_name(ca.get()), X509_CRL_get_issuer(crl.get())) != 0) return false;
      EVP_PKEY* key = X509_get0_pubkey(ca.get());
      return key != nullptr && X509_CRL_verify(crl.get(), key) == 1;
    });
    ERR_clear_error();
    if (!signed_by_ca)
      fail("mgmt: a CRL in '" + crl_file + "' is not signed by a certificate of the client CA");
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
    if (next != nullptr && X509_cmp_current_time(next) < 0)
      spdlog::error(
          "event=mgmt_crl_expired file={} reason=\"nextUpdate has passed: every client handshake fails "
          "until a current CRL is installed and edged restarts\"",
          crl_file);
  }
  return crls;
}

// Writes the CRLs into a fresh private directory as <issuer hash>.r<N>, the
// layout of OpenSSL's hashed-directory lookup that gRPC's crl_directory uses.
std::filesystem::path write_crl_directory(const std::vector<std::unique_ptr<X509_CRL, CrlFree>>& crls) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "edge-mgmt-crl.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) fail("mgmt: cannot create a CRL directory: " + errno_text(errno));
  std::filesystem::path dir(tmpl);
  std::map<unsigned long, int> next_index;
  for (const auto& crl : crls) {
    const unsigned long hash = X509_NAME_hash_ex(X509_CRL_get_issuer(crl.get()), nullptr, nullptr, nullptr);
    char name[32];
    std::snprintf(name, sizeof name, "%08lx.r%d", hash, next_index[hash]++);
    const std::filesystem::path path = dir / name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    const bool ok = f != nullptr && PEM_write_X509_CRL(f, crl.get()) == 1;
    if (f != nullptr && std::fclose(f) != 0) fail("mgmt: cannot write '" + path.string() + "'");
    if (!ok) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      fail("mgmt: cannot write '" + path.string() + "'");
    }
  }
  return dir;
}

bool same_dns_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// What a role entry matches, as audit actors and messages name it.
std::string role_selector(const v1::CertificateRole& r) {
  if (!r.uri().empty()) return "uri:" + r.uri();
  if (!r.dns_name().empty()) return "dns:" + r.dns_name();
  return "cn:" + r.common_name();
}

// What SO_PEERCRED (and SO_PEERGROUPS) said about one accepted connection.
struct UnixPeer {
  ucred cred{};
  v1::Role role = v1::ROLE_VIEWER;
};

}  // namespace

ServerOptions server_options(const v1::MgmtSettings& m, const std::filesystem::path& state_dir) {
  ServerOptions o;
  o.unix_socket = under(state_dir, m.unix_socket().empty() ? "mgmt.sock" : m.unix_socket());
  o.unix_mode = m.unix_socket_mode() == 0 ? 0660 : m.unix_socket_mode();
  o.operator_gid = m.operator_gid();
  o.tcp_listen = m.tcp_listen();
  o.tls_certificate_file = under(state_dir, m.tls_certificate()).string();
  o.tls_private_key_file = under(state_dir, m.tls_private_key()).string();
  o.client_ca_file = under(state_dir, m.client_ca_file()).string();
  o.crl_file = under(state_dir, m.crl_file()).string();
  o.roles.assign(m.roles().begin(), m.roles().end());
  o.cn_fallback = m.cn_fallback();
  return o;
}

struct MgmtServer::Impl {
  Impl(Agent& a, ServerOptions o) : agent(a), options(std::move(o)) {}

  Agent& agent;
  ServerOptions options;
  std::atomic<bool> stopping{false};
  std::unique_ptr<ManagementService> service;
  std::unique_ptr<grpc::Server> server;
  int tcp_port = 0;
  std::filesystem::path crl_dir;  // private copy of the CRLs, removed at shutdown

  int listen_fd = -1;
  bool socket_file_ours = false;  // bound by us: ours to remove at shutdown
  int wake[2] = {-1, -1};         // a write to wake[1] ends the accept loop
  std::thread acceptor;
  std::mutex peers_mu;
  std::unordered_map<int, UnixPeer> peers;  // by the descriptor gRPC names "fd:<N>"

  std::once_flag shutdown_once;

  void open_unix_socket();
  void accept_loop();
  v1::Role unix_role(int fd, const ucred& cred) const;
  Identity identify(grpc::ServerContext& ctx);
  Identity identify_unix(const std::string& peer, int fd);
  Identity identify_certificate(grpc::ServerContext& ctx, const std::string& peer);
  void stop();
};

void MgmtServer::Impl::open_unix_socket() {
  const std::string path = options.unix_socket.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) fail("mgmt: bad unix socket path '" + path + "'");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  // Only a stale socket is replaced: a regular file at that path is a mistake
  // to report, and a socket that still answers belongs to a running agent.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) fail("mgmt: '" + path + "' exists and is not a socket");
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) ::close(probe);
    if (live) fail("mgmt: '" + path + "' is in use by a running agent");
    if (::unlink(path.c_str()) != 0)
      fail("mgmt: cannot remove stale socket '" + path + "': " + errno_text(errno));
  }
  listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) fail("mgmt: socket: " + errno_text(errno));
  if (::bind(listen_fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    fail("mgmt: cannot bind '" + path + "': " + errno_text(errno));
  socket_file_ours = true;
  // chmod before listen(): until listen() nobody can connect, so there is no
  // window in which the umask-derived mode lets a peer in.
  if (::chmod(path.c_str(), options.unix_mode) != 0)
    fail("mgmt: cannot chmod '" + path + "': " + errno_text(errno));
  if (::listen(listen_fd, 64) != 0) fail("mgmt: listen on '" + path + "': " + errno_text(errno));
  if (::pipe2(wake, O_CLOEXEC) != 0) fail("mgmt: pipe: " + errno_text(errno));
}

v1::Role MgmtServer::Impl::unix_role(int fd, const ucred& cred) const {
  if (cred.uid == 0 || cred.uid == ::geteuid()) return v1::ROLE_OPERATOR;
  if (options.operator_gid < 0) return v1::ROLE_VIEWER;
  const auto op = static_cast<gid_t>(options.operator_gid);
  if (cred.gid == op) return v1::ROLE_OPERATOR;
  // SO_PEERGROUPS gives the supplementary groups the peer had when it
  // connected (not the group database's view, which may have changed since).
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return std::find(groups.begin(), groups.end(), op) != groups.end() ? v1::ROLE_OPERATOR
                                                                         : v1::ROLE_VIEWER;
    }
    if (errno != ERANGE) break;
    groups.resize(len / sizeof(gid_t));  // ERANGE reports the size needed
  }
  return v1::ROLE_VIEWER;
}

void MgmtServer::Impl::accept_loop() {
  pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("event=mgmt_accept_failed reason=poll:{}", errno_text(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // A peer that gave up between poll and accept, or a transient resource shortage.
      if (errno != EAGAIN && errno != ECONNABORTED && errno != EINTR)
        spdlog::warn("event=mgmt_accept_failed reason=accept:{}", errno_text(errno));
      continue;
    }
    UnixPeer p;
    socklen_t len = sizeof(p.cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &p.cred, &len) != 0) {
      spdlog::warn("event=mgmt_refused peer=unix rpc=- reason=\"no peer credentials: {}\"",
                   errno_text(errno));
      ::close(fd);
      continue;
    }
    p.role = unix_role(fd, p.cred);
    {
      // Recorded before gRPC sees the descriptor, so its first call finds it.
      std::lock_guard lock(peers_mu);
      peers[fd] = p;
    }
    grpc::AddInsecureChannelFromFd(server.get(), fd);
  }
}

Identity MgmtServer::Impl::identify(grpc::ServerContext& ctx) {
  std::string peer = ctx.peer();
  constexpr std::string_view kFd = "fd:";
  if (peer.rfind(kFd, 0) == 0) {
    int fd = -1;
    auto [end, ec] = std::from_chars(peer.data() + kFd.size(), peer.data() + peer.size(), fd);
    if (ec == std::errc() && end == peer.data() + peer.size()) return identify_unix(peer, fd);
  }
  return identify_certificate(ctx, peer);
}

Identity MgmtServer::Impl::identify_unix(const std::string& peer, int fd) {
  Identity id;
  std::lock_guard lock(peers_mu);
  auto it = peers.find(fd);
  if (it == peers.end()) {
    id.peer = peer;
    id.reason = "unix connection without recorded peer credentials";
    return id;
  }
  const ucred& c = it->second.cred;
  id.peer =
      "unix:uid:" + std::to_string(c.uid) + ",gid:" + std::to_string(c.gid) + ",pid:" + std::to_string(c.pid);
  id.caller = Caller{"uid:" + std::to_string(c.uid), it->second.role};
  return id;
}

Identity MgmtServer::Impl::identify_certificate(grpc::ServerContext& ctx, const std::string& peer) {
  Identity id;
  id.peer = peer;
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) {
    // The handshake requires a certificate, so this is not expected on TCP.
    id.reason = "no client certificate";
    return id;
  }
  auto values = [&auth](const char* property) {
    std::vector<std::string> out;
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) out.emplace_back(v.data(), v.size());
    return out;
  };
  const std::vector<std::string> uris = values(GRPC_PEER_URI_PROPERTY_NAME);
  const std::vector<std::string> dns_names = values(GRPC_PEER_DNS_PROPERTY_NAME);
  const std::vector<std::string> cns = values(GRPC_X509_CN_PROPERTY_NAME);
  std::string names;  // what the certificate offers, for the log and the refusal
  for (const auto& u : uris) names += (names.empty() ? "uri:" : ",uri:") + u;
  for (const auto& d : dns_names) names += (names.empty() ? "dns:" : ",dns:") + d;
  if (!cns.empty()) names += (names.empty() ? "cn:" : ",cn:") + cns.front();
  if (!names.empty()) id.peer += "," + names;

  for (const v1::CertificateRole& r : options.roles) {
    if (r.role() == v1::ROLE_UNSPECIFIED) continue;
    bool match = false;
    if (!r.uri().empty()) {
      match = std::find(uris.begin(), uris.end(), r.uri()) != uris.end();
    } else if (!r.dns_name().empty()) {
      match = std::any_of(dns_names.begin(), dns_names.end(),
                          [&r](const std::string& d) { return same_dns_name(d, r.dns_name()); });
    } else if (options.cn_fallback && !r.common_name().empty()) {
      match = !cns.empty() && cns.front() == r.common_name();
    }
    if (match) {
      id.caller = Caller{"cert:" + role_selector(r), r.role()};
      return id;
    }
  }
  if (uris.empty() && dns_names.empty() && (!options.cn_fallback || cns.empty())) {
    id.reason = "client certificate has no URI or DNS subjectAltName";
    if (!cns.empty()) id.reason += " (its CN '" + cns.front() + "' counts only with mgmt.tls.cn_fallback)";
    return id;  // UNAUTHENTICATED: nothing in it names the client
  }
  id.refusal = grpc::StatusCode::PERMISSION_DENIED;
  id.reason = "client certificate (" + names + ") matches no entry of mgmt.tls.roles";
  return id;
}

void MgmtServer::Impl::stop() {
  std::call_once(shutdown_once, [this] {
    stopping.store(true);  // WatchEvents handlers see it within one wait
    if (acceptor.joinable()) {
      char byte = 0;
      while (::write(wake[1], &byte, 1) < 0 && errno == EINTR) {
      }
      acceptor.join();
    }
    if (server) server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    if (listen_fd >= 0) ::close(listen_fd);
    if (socket_file_ours) ::unlink(options.unix_socket.c_str());
    if (!crl_dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(crl_dir, ec);
    }
    for (int fd : wake)
      if (fd >= 0) ::close(fd);
  });
}

MgmtServer::MgmtServer(Agent& agent, ServerOptions options)
    : impl_(std::make_unique<Impl>(agent, std::move(options))) {
  Impl& d = *impl_;
  d.service = std::make_unique<ManagementService>(
      agent, [&d](grpc::ServerContext& ctx) { return d.identify(ctx); }, d.stopping);

  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.RegisterService(d.service.get());
  if (!d.options.tcp_listen.empty()) {
    // TlsServerCredentials rather than SslServerCredentials: only the former
    // takes a CRL directory in gRPC 1.51.
    const std::string ca = read_pem(d.options.client_ca_file, "client CA");
    // Everything that can refuse the start comes before the options: gRPC 1.51's
    // TlsServerCredentialsOptions leaks its C options unless credentials take them.
    if (!d.options.crl_file.empty()) d.crl_dir = write_crl_directory(load_crls(d.options.crl_file, ca));
    const std::string key_pem = read_pem(d.options.tls_private_key_file, "TLS private key");
    const std::string cert_pem = read_pem(d.options.tls_certificate_file, "TLS certificate");
    auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
        ca, std::vector<grpc::experimental::IdentityKeyCertPair>{{key_pem, cert_pem}});
    grpc::experimental::TlsServerCredentialsOptions tls(provider);
    tls.watch_root_certs();
    tls.watch_identity_key_cert_pairs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    if (!d.crl_dir.empty()) tls.set_crl_directory(d.crl_dir.string());
    if (std::any_of(d.options.roles.begin(), d.options.roles.end(),
                    [](const v1::CertificateRole& r) { return !r.common_name().empty(); }) &&
        !d.options.cn_fallback)
      spdlog::warn(
          "event=mgmt_cn_roles_ignored reason=\"mgmt.tls.roles has cn: entries but mgmt.tls.cn_fallback is "
          "off\"");
    builder.AddListeningPort(d.options.tcp_listen, grpc::experimental::TlsServerCredentials(tls),
                             &d.tcp_port);
  }
  try {
    if (!d.options.unix_socket.empty()) d.open_unix_socket();
    d.server = builder.BuildAndStart();
    if (!d.server) fail("mgmt: cannot start the gRPC server");
    if (!d.options.tcp_listen.empty() && d.tcp_port == 0)
      fail("mgmt: cannot listen on '" + d.options.tcp_listen + "' (address in use, or bad TLS material)");
    if (d.listen_fd >= 0) d.acceptor = std::thread([&d] { d.accept_loop(); });
  } catch (...) {
    d.stop();
    throw;
  }
  spdlog::info("event=mgmt_listening unix={} tcp={} tcp_port={}", d.options.unix_socket.string(),
               d.options.tcp_listen.empty() ? "-" : d.options.tcp_listen, d.tcp_port);
}

MgmtServer::~MgmtServer() { shutdown(); }

int MgmtServer::tcp_port() const { return impl_->tcp_port; }

const std::filesystem::path& MgmtServer::unix_socket() const { return impl_->options.unix_socket; }

void MgmtServer::shutdown() { impl_->stop(); }

}  // namespace edge::mgmt
