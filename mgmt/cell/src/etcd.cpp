// EtcdClient and EtcdWatch over etcd's v3 gRPC API (the subset in mgmt/proto/etcd).
#include <edge/cell/etcd.h>
#include <grpcpp/grpcpp.h>

#include <fcntl.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <fstream>
#include <sstream>
#include <system_error>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace edge::cell {
namespace pb = etcdserverpb;

namespace {

EtcdError bad_config(const std::string& what) { return EtcdError(what, grpc::StatusCode::INVALID_ARGUMENT); }

// A PEM file of the TLS settings, read and checked here so that a wrong path or a file of the
// wrong kind is refused with its name now, not as an obscure handshake failure later.
std::string read_pem(const std::string& path, const char* setting) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad_config(std::string("etcd TLS ") + setting + " " + path + ": cannot read it");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
Bio pem_bio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// The certificates in a PEM text (at least one), first one kept for the key check.
X509Ptr check_certificates(const std::string& pem, const std::string& path, const char* setting) {
  Bio bio = pem_bio(pem);
  X509Ptr first(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  ERR_clear_error();
  if (!first)
    throw bad_config(std::string("etcd TLS ") + setting + " " + path + ": no PEM certificate in it");
  return first;
}

void check_tls_files(const EtcdTls& tls, grpc::SslCredentialsOptions& ssl) {
  if (!tls.ca_file.empty()) {
    ssl.pem_root_certs = read_pem(tls.ca_file, "ca_file");
    check_certificates(ssl.pem_root_certs, tls.ca_file, "ca_file");
  }
  if (tls.cert_file.empty() != tls.key_file.empty())
    throw bad_config(tls.cert_file.empty() ? "etcd TLS key_file " + tls.key_file + " without a cert_file"
                                           : "etcd TLS cert_file " + tls.cert_file + " without a key_file");
  if (tls.cert_file.empty()) return;
  ssl.pem_cert_chain = read_pem(tls.cert_file, "cert_file");
  ssl.pem_private_key = read_pem(tls.key_file, "key_file");
  X509Ptr cert = check_certificates(ssl.pem_cert_chain, tls.cert_file, "cert_file");
  Bio bio = pem_bio(ssl.pem_private_key);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  ERR_clear_error();
  if (!key) throw bad_config("etcd TLS key_file " + tls.key_file + ": no unencrypted PEM private key in it");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    throw bad_config("etcd TLS key_file " + tls.key_file + " is not the key of cert_file " + tls.cert_file);
  }
}

KeyValue from_pb(const mvccpb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

bool retry_elsewhere(const grpc::Status& st, bool read) {
  return st.error_code() == grpc::StatusCode::UNAVAILABLE ||
         (read && st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
}

// ---- why a TLS endpoint failed ----
//
// gRPC reports a handshake failure as UNAVAILABLE with whatever its transport saw last; when the
// server refuses our client certificate (or its absence) under TLS 1.3 that is only "Endpoint read
// failed" or "Connection reset by peer", which names neither TLS nor the certificate. So when a
// call to a TLS endpoint failed as unavailable, one handshake of our own (OpenSSL, the same CA,
// client certificate and name check, bounded by `budget`) says what went wrong, for the error.

using SslCtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;
using SslPtr = std::unique_ptr<SSL, decltype(&SSL_free)>;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    const char* reason = ERR_reason_error_string(e);
    out += (out.empty() ? "" : "; ") + std::string(reason != nullptr ? reason : buf);
  }
  return out.empty() ? "no detail" : out;
}

bool load_pem_into(SSL_CTX* ctx, const grpc::SslCredentialsOptions& ssl) {
  if (ssl.pem_root_certs.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) return false;
  } else {
    Bio bio = pem_bio(ssl.pem_root_certs);
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, c);
      X509_free(c);
    }
    ERR_clear_error();  // the end of the PEM text
  }
  if (ssl.pem_cert_chain.empty()) return true;
  Bio chain = pem_bio(ssl.pem_cert_chain);
  X509Ptr leaf(PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) return false;
  while (X509* c = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr)) SSL_CTX_add0_chain_cert(ctx, c);
  ERR_clear_error();
  Bio kb = pem_bio(ssl.pem_private_key);
  KeyPtr key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  return key && SSL_CTX_use_PrivateKey(ctx, key.get()) == 1;
}

// A TCP connection to ep within `budget`, or the reason there is none.
int tcp_connect(const EtcdEndpoint& ep, std::chrono::milliseconds budget, std::string& why) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(ep.host.c_str(), std::to_string(ep.port).c_str(), &hints, &found);
      rc != 0) {
    why = std::string("cannot resolve ") + ep.host + ": " + ::gai_strerror(rc);
    return -1;
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
  // Every address of the name in turn (localhost: ::1 and 127.0.0.1), as gRPC does.
  const auto until = std::chrono::steady_clock::now() + budget;
  int fd = -1;
  for (const addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      why = "socket: " + std::error_code(errno, std::generic_category()).message();
      continue;
    }
    int err = 0;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        pollfd p{fd, POLLOUT, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
        socklen_t len = sizeof err;
        if (n == 0) {
          err = ETIMEDOUT;
        } else if (n < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
          err = errno;
        }
      }
    }
    if (err != 0) {
      ::close(fd);
      fd = -1;
      why = "no TCP connection: " + std::error_code(err, std::generic_category()).message();
    }
  }
  if (fd < 0) return -1;
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{static_cast<time_t>(budget.count() / 1000),
             static_cast<suseconds_t>(budget.count() % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

// What a handshake with ep says, as one phrase; empty when it succeeded (then TLS is not the
// trouble and gRPC's own message stands).
std::string tls_diagnosis(const EtcdEndpoint& ep, const grpc::SslCredentialsOptions& ssl,
                          std::chrono::milliseconds budget) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
  if (!ctx || !load_pem_into(ctx.get(), ssl)) return "TLS: cannot load the TLS settings: " + openssl_errors();
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  std::string why;
  Fd fd{tcp_connect(ep, budget, why)};
  if (fd.fd < 0) return why;
  SslPtr tls(SSL_new(ctx.get()), &SSL_free);
  if (!tls) return "TLS: " + openssl_errors();
  SSL_set_fd(tls.get(), fd.fd);
  X509_VERIFY_PARAM* param = SSL_get0_param(tls.get());
  if (X509_VERIFY_PARAM_set1_ip_asc(param, ep.host.c_str()) != 1) {
    ERR_clear_error();
    X509_VERIFY_PARAM_set1_host(param, ep.host.c_str(), 0);
    SSL_set_tlsext_host_name(tls.get(), ep.host.c_str());
  }
  static const unsigned char h2[] = {2, 'h', '2'};
  SSL_set_alpn_protos(tls.get(), h2, sizeof h2);
  if (SSL_connect(tls.get()) != 1) {
    const long verify = SSL_get_verify_result(tls.get());
    if (verify != X509_V_OK) {
      const bool name = verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH;
      return std::string("TLS handshake: the server's certificate is not accepted: ") +
             X509_verify_cert_error_string(verify) +
             (name ? " (it does not name " + ep.host + ": give the endpoint as a name or address it carries)"
                   : std::string(" (is ca_file the CA that signed it?)"));
    }
    const std::string errors = openssl_errors();
    return "TLS handshake failed: " + errors;
  }
  // Under TLS 1.3 the server judges our certificate (or its absence) after our side is done:
  // its refusal arrives as an alert on the first read. A server that accepted us sends at most
  // session tickets, then waits for gRPC's preface: the read times out (a short wait).
  const timeval tv{0, 300'000};
  ::setsockopt(fd.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char byte;
  const int got = SSL_read(tls.get(), &byte, 1);
  if (got <= 0 && SSL_get_error(tls.get(), got) == SSL_ERROR_SSL) {
    const std::string errors = openssl_errors();
    return "TLS: the server refused this client after the handshake (" + errors + "): " +
           (ssl.pem_cert_chain.empty()
                ? "it requires a client certificate and none is configured (cert_file, key_file)"
                : "it does not accept cert_file");
  }
  ERR_clear_error();
  return "";
}

}  // namespace

bool EtcdError::unavailable() const noexcept {
  return code_ == grpc::StatusCode::UNAVAILABLE || code_ == grpc::StatusCode::DEADLINE_EXCEEDED;
}

EtcdEndpoint parse_etcd_endpoint(std::string_view text) {
  const std::string shown(text);
  auto refuse = [&](const std::string& why) {
    return bad_config("etcd endpoint \"" + shown + "\": " + why +
                      " (expected host:port, http://host:port or https://host:port)");
  };
  EtcdEndpoint ep;
  std::string_view rest = text;
  if (const auto sep = rest.find("://"); sep != std::string_view::npos) {
    const std::string_view scheme = rest.substr(0, sep);
    if (scheme == "https") {
      ep.scheme = EtcdEndpoint::Scheme::https;
    } else if (scheme == "http") {
      ep.scheme = EtcdEndpoint::Scheme::http;
    } else {
      throw refuse("unknown scheme \"" + std::string(scheme) + "\"");
    }
    rest.remove_prefix(sep + 3);
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) throw refuse("no host");
  if (rest.find('/') != std::string_view::npos) throw refuse("a path is not allowed");
  if (rest.find('@') != std::string_view::npos) throw refuse("user information is not allowed");
  std::string_view port;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) throw refuse("no ] after the IPv6 address");
    ep.host = std::string(rest.substr(1, close - 1));
    if (ep.host.empty() || ep.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
      throw refuse("not an IPv6 address between [ ]");
    rest.remove_prefix(close + 1);
    if (rest.empty() || rest.front() != ':') throw refuse("no :port");
    port = rest.substr(1);
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) throw refuse("no :port");
    ep.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
    if (ep.host.empty()) throw refuse("no host");
    if (ep.host.find(':') != std::string::npos) throw refuse("an IPv6 address needs [ ]");
    for (const char ch : ep.host)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-' && ch != '_')
        throw refuse("the host has a character a host name cannot have");
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535)
    throw refuse("the port is not a number in 1..65535");
  ep.port = static_cast<std::uint16_t>(value);
  return ep;
}

std::string EtcdEndpoint::target() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdClient::Impl {
  EtcdOptions options;
  std::vector<EtcdEndpoint> parsed;  // one per endpoint
  bool use_tls = false;              // every endpoint is TLS, or none
  grpc::SslCredentialsOptions ssl;   // with use_tls
  std::shared_ptr<grpc::ChannelCredentials> creds;
  mutable std::mutex mu;
  std::size_t current = 0;  // index into options.endpoints
  std::vector<std::shared_ptr<grpc::Channel>> channels;

  explicit Impl(EtcdOptions o) : options(std::move(o)) {
    if (options.endpoints.empty()) throw bad_config("no etcd endpoint configured");
    std::size_t with_tls = 0;
    for (const std::string& text : options.endpoints) {
      const EtcdEndpoint ep = parse_etcd_endpoint(text);
      if (ep.scheme == EtcdEndpoint::Scheme::http && options.tls)
        throw bad_config("etcd endpoint " + text +
                         " is plain http:// but TLS settings are given: write https://");
      const bool tls = ep.scheme == EtcdEndpoint::Scheme::https ||
                       (ep.scheme == EtcdEndpoint::Scheme::none && options.tls.has_value());
      with_tls += tls ? 1 : 0;
      parsed.push_back(ep);
    }
    if (with_tls != 0 && with_tls != options.endpoints.size())
      throw bad_config(
          "etcd endpoints mix TLS (https://) and plain ones: a plain endpoint would let whoever blocks the "
          "others read and write the cell in clear; give them all as https://");
    use_tls = with_tls != 0;
    if (use_tls) {
      if (options.tls) check_tls_files(*options.tls, ssl);
      creds = grpc::SslCredentials(ssl);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    channels.resize(options.endpoints.size());
  }

  // A channel that failed to connect can stay in its failure state well past the
  // endpoint's return (seen with gRPC 1.51 against an etcd that started a moment
  // later): it is dropped, and the next call to that endpoint makes a new one.
  void drop_channel(std::size_t i) {
    std::lock_guard lock(mu);
    channels[i].reset();
  }

  std::shared_ptr<grpc::Channel> channel(std::size_t i) {
    std::lock_guard lock(mu);
    if (!channels[i]) {
      grpc::ChannelArguments args;
      // Give up on a dead endpoint quickly and try the next one; reconnect soon when it returns.
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
      // Our own subchannels: a channel made again after a failure starts fresh.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      channels[i] = grpc::CreateCustomChannel(parsed[i].target(), creds, args);
    }
    return channels[i];
  }

  void set_deadline(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + options.call_timeout);
  }

  // Runs call(channel, ctx) on the endpoint in use, then on the next ones while they
  // answer as retry_elsewhere says; the endpoint that answered becomes the one in use.
  template <class Call>
  void run(const char* what, bool read, Call&& call) {
    std::size_t start;
    {
      std::lock_guard lock(mu);
      start = current;
    }
    grpc::Status last;
    std::string tried;
    std::vector<std::size_t> unreachable;  // TLS endpoints that answered UNAVAILABLE
    for (std::size_t n = 0; n < options.endpoints.size(); ++n) {
      const std::size_t i = (start + n) % options.endpoints.size();
      grpc::ClientContext ctx;
      set_deadline(ctx);
      last = call(channel(i), ctx);
      if (last.ok()) {
        std::lock_guard lock(mu);
        current = i;
        return;
      }
      tried += (tried.empty() ? "" : ", ") + options.endpoints[i];
      if (last.error_code() == grpc::StatusCode::UNAVAILABLE) {
        drop_channel(i);
        if (use_tls) unreachable.push_back(i);
      }
      if (!retry_elsewhere(last, read)) break;
    }
    // Only now that no endpoint answered (a failover is not slowed down): why, for each TLS one.
    std::string why;
    for (const std::size_t i : unreachable) {
      const std::string d = tls_diagnosis(
          parsed[i], ssl, std::min<std::chrono::milliseconds>(options.call_timeout, std::chrono::seconds(1)));
      if (!d.empty()) why += "; " + options.endpoints[i] + ": " + d;
    }
    throw EtcdError(std::string("etcd ") + what + " failed (" + tried + "): " + last.error_message() + " [" +
                        std::to_string(last.error_code()) + "]" + why,
                    last.error_code());
  }
};

EtcdClient::EtcdClient(EtcdOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
EtcdClient::~EtcdClient() = default;

std::string EtcdClient::endpoint() const {
  std::lock_guard lock(impl_->mu);
  return impl_->options.endpoints[impl_->current];
}

std::optional<KeyValue> EtcdClient::get(std::string_view key) {
  pb::RangeRequest req;
  req.set_key(std::string(key));
  pb::RangeResponse resp;
  impl_->run("get", true, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Range(&ctx, req, &resp);
  });
  if (resp.kvs_size() == 0) return std::nullopt;
  return from_pb(resp.kvs(0));
}

EtcdClient::Range EtcdClient::get_prefix(std::string_view prefix) {
  pb::RangeRequest req;
  req.set_key(std::string(prefix));
  req.set_range_end(prefix_end(prefix));
  pb::RangeResponse resp;
  impl_->run("get prefix", true, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Range(&ctx, req, &resp);
  });
  Range out;
  out.revision = resp.header().revision();
  for (const auto& kv : resp.kvs()) out.kvs.push_back(from_pb(kv));
  return out;
}

std::int64_t EtcdClient::put(std::string_view key, std::string_view value, std::int64_t lease) {
  pb::PutRequest req;
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  req.set_lease(lease);
  pb::PutResponse resp;
  impl_->run("put", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Put(&ctx, req, &resp);
  });
  return resp.header().revision();
}

namespace {
bool txn_put_if(EtcdClient::Impl& im, std::string_view key, pb::Compare cmp, std::string_view value,
                std::int64_t lease) {
  pb::TxnRequest req;
  *req.add_compare() = std::move(cmp);
  pb::PutRequest* put = req.add_success()->mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  put->set_lease(lease);
  pb::TxnResponse resp;
  im.run("txn", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Txn(&ctx, req, &resp);
  });
  return resp.succeeded();
}
}  // namespace

bool EtcdClient::create(std::string_view key, std::string_view value, std::int64_t lease) {
  pb::Compare cmp;
  cmp.set_key(std::string(key));
  cmp.set_target(pb::Compare::CREATE);
  cmp.set_result(pb::Compare::EQUAL);
  cmp.set_create_revision(0);
  return txn_put_if(*impl_, key, std::move(cmp), value, lease);
}

bool EtcdClient::compare_and_swap(std::string_view key, std::int64_t mod_revision, std::string_view value,
                                  std::int64_t lease) {
  pb::Compare cmp;
  cmp.set_key(std::string(key));
  cmp.set_target(pb::Compare::MOD);
  cmp.set_result(pb::Compare::EQUAL);
  cmp.set_mod_revision(mod_revision);
  return txn_put_if(*impl_, key, std::move(cmp), value, lease);
}

std::int64_t EtcdClient::remove(std::string_view key) {
  pb::DeleteRangeRequest req;
  req.set_key(std::string(key));
  pb::DeleteRangeResponse resp;
  impl_->run("delete", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->DeleteRange(&ctx, req, &resp);
  });
  return resp.deleted();
}

std::int64_t EtcdClient::grant_lease(std::chrono::seconds ttl) {
  if (ttl.count() < 1) throw bad_config("a lease lasts at least 1 s");
  pb::LeaseGrantRequest req;
  req.set_ttl(ttl.count());
  pb::LeaseGrantResponse resp;
  impl_->run("lease grant", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::Lease::NewStub(ch)->LeaseGrant(&ctx, req, &resp);
  });
  if (!resp.error().empty()) throw EtcdError("etcd lease grant: " + resp.error(), grpc::StatusCode::UNKNOWN);
  return resp.id();
}

std::int64_t EtcdClient::keep_alive(std::int64_t lease) {
  pb::LeaseKeepAliveResponse resp;
  // A keep-alive is idempotent: retried on another endpoint like a read.
  impl_->run("lease keep-alive", true,
             [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
               auto stream = pb::Lease::NewStub(ch)->LeaseKeepAlive(&ctx);
               pb::LeaseKeepAliveRequest req;
               req.set_id(lease);
               if (stream->Write(req)) {
                 stream->WritesDone();
                 if (!stream->Read(&resp)) resp.Clear();
               }
               return stream->Finish();
             });
  return resp.ttl();
}

void EtcdClient::revoke_lease(std::int64_t lease) {
  pb::LeaseRevokeRequest req;
  req.set_id(lease);
  pb::LeaseRevokeResponse resp;
  impl_->run("lease revoke", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::Lease::NewStub(ch)->LeaseRevoke(&ctx, req, &resp);
  });
}

// ---- watch ----

struct EtcdWatch::State {
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  grpc::ClientContext* ctx = nullptr;  // the open stream's, to cancel it
  std::int64_t next_revision = 0;
  std::atomic<int> streams{0};
};

EtcdWatch::EtcdWatch(EtcdClient& client, std::string prefix, std::int64_t start_revision, OnEvents on_events,
                     OnCompacted on_compacted)
    : client_(client),
      prefix_(std::move(prefix)),
      on_events_(std::move(on_events)),
      on_compacted_(std::move(on_compacted)),
      state_(std::make_shared<State>()) {
  state_->next_revision = start_revision;
  thread_ = std::thread([this] { run(); });
}

EtcdWatch::~EtcdWatch() {
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
    if (state_->ctx != nullptr) state_->ctx->TryCancel();
  }
  state_->cv.notify_all();
  thread_.join();
}

int EtcdWatch::streams() const { return state_->streams.load(); }

void EtcdWatch::run() {
  EtcdClient::Impl& im = client_.impl();
  std::size_t endpoint = 0;
  {
    std::lock_guard lock(im.mu);
    endpoint = im.current;
  }
  for (;;) {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(state_->mu);
      if (state_->stopping) return;
      state_->ctx = &ctx;
    }
    state_->streams.fetch_add(1);
    auto stream = pb::Watch::NewStub(im.channel(endpoint))->Watch(&ctx);
    pb::WatchRequest req;
    pb::WatchCreateRequest* c = req.mutable_create_request();
    c->set_key(prefix_);
    c->set_range_end(prefix_end(prefix_));
    c->set_start_revision(state_->next_revision);
    bool broke = !stream->Write(req);
    pb::WatchResponse resp;
    while (!broke && stream->Read(&resp)) {
      if (resp.compact_revision() != 0) {
        // What we asked for is gone; the caller re-reads, we go on from what is there.
        state_->next_revision = resp.compact_revision();
        if (on_compacted_) on_compacted_(resp.compact_revision());
        break;
      }
      if (resp.canceled()) break;
      // "From now" becomes a revision once the server has created the watch, so a
      // reconnect resumes where this stream started, not at a later "now".
      if (resp.created() && state_->next_revision == 0) state_->next_revision = resp.header().revision() + 1;
      if (resp.events_size() == 0) continue;
      std::vector<WatchEvent> events;
      events.reserve(static_cast<std::size_t>(resp.events_size()));
      for (const auto& e : resp.events()) {
        WatchEvent w;
        w.type = e.type() == mvccpb::Event::DELETE ? WatchEvent::Type::remove : WatchEvent::Type::put;
        w.kv = from_pb(e.kv());
        state_->next_revision = std::max(state_->next_revision, e.kv().mod_revision() + 1);
        events.push_back(std::move(w));
      }
      on_events_(events);
    }
    ctx.TryCancel();
    stream->Finish();
    std::unique_lock lock(state_->mu);
    state_->ctx = nullptr;
    if (state_->stopping) return;
    // The stream broke: the next endpoint (this one's channel made again), after a short
    // pause (bounded, interruptible).
    im.drop_channel(endpoint);
    endpoint = (endpoint + 1) % im.options.endpoints.size();
    state_->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return state_->stopping; });
    if (state_->stopping) return;
  }
}

}  // namespace edge::cell
