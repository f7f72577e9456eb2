// TLS contexts for the listeners (server) and the core link (client): versions, material, verification.
#include "tls_context.h"

#include "edge/net/transport/transports.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>

#include <optional>
#include <string>

namespace edge::net::detail {

namespace {

[[noreturn]] void tls_fail(const std::string& what, const std::string& file,
                           const boost::system::error_code& ec) {
  throw TransportError("tls: cannot load " + what + " " + file + ": " + ec.message());
}

void restrict_versions(ssl::context& ctx) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
}

// The certificate chain and its private key, which must belong together.
void use_certificate(ssl::context& ctx, const TlsConfig& cfg) {
  boost::system::error_code ec;
  ctx.use_certificate_chain_file(cfg.certificate_chain_file, ec);
  if (ec) tls_fail("certificate chain", cfg.certificate_chain_file, ec);
  ctx.use_private_key_file(cfg.private_key_file, ssl::context::pem, ec);
  if (ec) tls_fail("private key", cfg.private_key_file, ec);
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    throw TransportError("tls: private key " + cfg.private_key_file + " does not match the certificate");
  }
}

}  // namespace

bool needs_server_tls(const TransportConfig& c) {
  for (const auto& l : c.listeners)
    if (l.transport == flow::Transport::tls || l.transport == flow::Transport::wss) return true;
  return false;
}

bool needs_client_tls(const TransportConfig& c) {
  if (!c.core.enabled) return false;
  for (const auto& t : core_targets(c.core))
    if (t.transport == flow::Transport::tls) return true;
  return false;
}

std::shared_ptr<ssl::context> make_server_tls(const TlsConfig& cfg) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  restrict_versions(*ctx);
  boost::system::error_code ec;
  if (cfg.certificate_chain_file.empty()) throw TransportError("tls: no certificate chain file configured");
  if (cfg.private_key_file.empty()) throw TransportError("tls: no private key file configured");
  use_certificate(*ctx, cfg);
  if (!cfg.ca_file.empty()) {
    ctx->load_verify_file(cfg.ca_file, ec);
    if (ec) tls_fail("CA file", cfg.ca_file, ec);
  }
  switch (cfg.client_certs) {
    case ClientCertPolicy::none:
      ctx->set_verify_mode(ssl::verify_none);
      break;
    case ClientCertPolicy::optional:
      ctx->set_verify_mode(ssl::verify_peer);
      break;
    case ClientCertPolicy::required:
      ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      break;
  }
  if (cfg.client_certs != ClientCertPolicy::none && cfg.ca_file.empty()) {
    throw TransportError("tls: client certificates requested but no CA file configured");
  }
  return ctx;
}

std::shared_ptr<ssl::context> make_client_tls(const TlsConfig& cfg, const CoreConfig& core) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  restrict_versions(*ctx);
  boost::system::error_code ec;
  if (!cfg.ca_file.empty()) {
    ctx->load_verify_file(cfg.ca_file, ec);
    if (ec) tls_fail("CA file", cfg.ca_file, ec);
    ctx->set_verify_mode(ssl::verify_peer);
  } else {
    // No CA configured: the core link is only encrypted, not authenticated.
    ctx->set_verify_mode(ssl::verify_none);
  }
  // Our certificate is presented to the core only when one is configured.
  if (!cfg.certificate_chain_file.empty() && !cfg.private_key_file.empty()) use_certificate(*ctx, cfg);
  if (!core.tls_pin_sha256.empty() && !parse_pin(core.tls_pin_sha256)) {
    throw TransportError("core: tls_pin_sha256 is not 64 hex digits");
  }
  return ctx;
}

std::optional<Sha256> parse_pin(std::string_view text) {
  Sha256 out{};
  std::size_t nibbles = 0;
  for (const char ch : text) {
    if (ch == ':') continue;
    int v = -1;
    if (ch >= '0' && ch <= '9') v = ch - '0';
    if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') v = ch - 'A' + 10;
    if (v < 0 || nibbles >= 64) return std::nullopt;
    out[nibbles / 2] = static_cast<std::uint8_t>(out[nibbles / 2] | (nibbles % 2 == 0 ? v << 4 : v));
    ++nibbles;
  }
  if (nibbles != 64) return std::nullopt;
  return out;
}

bool pin_matches(X509* cert, const Sha256& pin) {
  if (cert == nullptr) return false;
  Sha256 digest{};
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), digest.data(), &len) == 1 && len == digest.size() && digest == pin)
    return true;
  len = 0;
  return X509_pubkey_digest(cert, EVP_sha256(), digest.data(), &len) == 1 && len == digest.size() &&
         digest == pin;
}

std::string core_identity_name(const CoreConfig& core) {
  return core.tls_server_name.empty() ? core.address : core.tls_server_name;
}

bool core_certificate(SSL* ssl, const TransportConfig& cfg) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return false;
  const bool ca = !cfg.tls.ca_file.empty();
  const std::optional<Sha256> pin =
      cfg.core.tls_pin_sha256.empty() ? std::nullopt : parse_pin(cfg.core.tls_pin_sha256);
  if (!ca && !pin) return false;
  if (pin && !pin_matches(cert, *pin)) return false;
  if (!ca) return true;
  if (SSL_get_verify_result(ssl) != X509_V_OK) return false;
  // Several cores: the certificate of any of them (each one's own address unless tls_server_name names them
  // all).
  for (const auto& t : core_targets(cfg.core)) {
    CoreConfig one = cfg.core;
    one.address = t.address;
    const std::string name = core_identity_name(one);
    boost::system::error_code ec;
    boost::asio::ip::make_address(name, ec);
    if (!ec ? X509_check_ip_asc(cert, name.c_str(), 0) == 1
            : X509_check_host(cert, name.data(), name.size(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                              nullptr) == 1)
      return true;
  }
  return false;
}

}  // namespace edge::net::detail
