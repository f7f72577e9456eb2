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
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
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
  o.roles.assign(m.roles().begin(), m.roles().end());
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
    id.reason = "no client certificate";
    return id;
  }
  std::vector<grpc::string_ref> cns = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  if (cns.empty()) {
    id.reason = "client certificate without a subject CN";
    return id;
  }
  std::string cn(cns.front().data(), cns.front().size());
  id.peer += ",cn:" + cn;
  for (const v1::CertificateRole& r : options.roles) {
    if (r.common_name() == cn && r.role() != v1::ROLE_UNSPECIFIED) {
      id.caller = Caller{"cert:" + cn, r.role()};
      return id;
    }
  }
  id.refusal = grpc::StatusCode::PERMISSION_DENIED;
  id.reason = "certificate CN '" + cn + "' has no role";
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
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = read_pem(d.options.client_ca_file, "client CA");
    ssl.pem_key_cert_pairs.push_back({read_pem(d.options.tls_private_key_file, "TLS private key"),
                                      read_pem(d.options.tls_certificate_file, "TLS certificate")});
    builder.AddListeningPort(d.options.tcp_listen, grpc::SslServerCredentials(ssl), &d.tcp_port);
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
