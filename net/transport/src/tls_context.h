// Internal: the TLS contexts a configuration needs (listeners, core link), built from its TlsConfig.
#pragma once

#include "edge/net/transport/config.h"

#include <boost/asio/ssl/context.hpp>

#include <memory>

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

}  // namespace edge::net::detail
