// SIP transports and loopback endpoints as the test harness names them.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace edge::test {

enum class Transport { udp, tcp, tls, ws, wss };

// The Via token: "UDP", "TCP", "TLS", "WS", "WSS" (RFC 3261 §20.42, RFC 7118 §5.3).
std::string_view via_token(Transport t);
// The URI transport parameter value: "udp", "tcp", "tls", "ws", "wss".
std::string_view uri_transport(Transport t);
// Prints the Via token, so parameterised test names and failures read "TCP".
std::ostream& operator<<(std::ostream& os, Transport t);
// Parses either spelling, case-insensitively; throws std::invalid_argument.
Transport parse_transport(std::string_view s);
// TLS and WSS ride on TLS; WS and WSS frame SIP in WebSocket messages.
bool is_secure(Transport t);
bool is_websocket(Transport t);
bool is_datagram(Transport t);

struct Endpoint {
  boost::asio::ip::address address;
  std::uint16_t port = 0;

  // "127.0.0.1:5080" or "[::1]:5080": the form a Via sent-by or a URI host:port takes.
  std::string host_port() const;
  // "127.0.0.1" or "[::1]".
  std::string host() const;
  bool operator==(const Endpoint&) const = default;
};

// Prints host_port(), so assertion failures read "127.0.0.1:5080".
std::ostream& operator<<(std::ostream& os, const Endpoint& e);

// 127.0.0.1:port, or [::1]:port when v6.
Endpoint loopback(std::uint16_t port, bool v6 = false);

}  // namespace edge::test
