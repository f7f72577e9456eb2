// Internal: the TLS contexts a configuration needs (listeners, core link), built from its TlsConfig.
#pragma once

#include "edge/net/transport/config.h"

#include <boost/asio/ssl/context.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct x509_st;
struct ssl_st;

namespace edge::net::detail {

namespace ssl = boost::asio::ssl;

// A tls or wss listener needs the server context; a tls core link the client context.
bool needs_server_tls(const TransportConfig& c);
bool needs_client_tls(const TransportConfig& c);

// TLS 1.2+ contexts from configuration; throw TransportError naming the file
// ("tls: cannot load certificate chain /etc/edge/cert.pem: ..."). A private key
// that does not match its certificate is refused here, not at the first handshake.
std::shared_ptr<ssl::context> make_server_tls(const TlsConfig& cfg);
std::shared_ptr<ssl::context> make_client_tls(const TlsConfig& cfg, const CoreConfig& core);

// CoreConfig::tls_pin_sha256: 64 hex digits, colons allowed, any case; nullopt otherwise.
using Sha256 = std::array<std::uint8_t, 32>;
std::optional<Sha256> parse_pin(std::string_view text);
// True when the SHA-256 of the DER certificate or of its SubjectPublicKeyInfo is `pin`.
bool pin_matches(x509_st* cert, const Sha256& pin);
// The name the core's certificate must carry: tls_server_name, or the core's address.
std::string core_identity_name(const CoreConfig& core);
// A TLS connection the core opened to one of our listeners: true when the
// peer showed a certificate that passes the checks the core link makes (the
// pin, and with tls.ca the chain and core_identity_name). False without a
// certificate (the listener asks for one only with tls.client_certs optional
// or required) or with neither tls.ca nor a pin (nothing authenticates it).
bool core_certificate(ssl_st* ssl, const TransportConfig& cfg);

}  // namespace edge::net::detail
