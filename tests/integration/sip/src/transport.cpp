// Names and loopback endpoints for the harness's transports.
#include "edge/test/sip/transport.h"

#include <stdexcept>

#include "edge/test/sip/message.h"

namespace edge::test {

std::string_view via_token(Transport t) {
  switch (t) {
    case Transport::udp: return "UDP";
    case Transport::tcp: return "TCP";
    case Transport::tls: return "TLS";
    case Transport::ws: return "WS";
    case Transport::wss: return "WSS";
  }
  return "?";
}

std::string_view uri_transport(Transport t) {
  switch (t) {
    case Transport::udp: return "udp";
    case Transport::tcp: return "tcp";
    case Transport::tls: return "tls";
    case Transport::ws: return "ws";
    case Transport::wss: return "wss";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, Transport t) { return os << via_token(t); }

Transport parse_transport(std::string_view s) {
  for (Transport t : {Transport::udp, Transport::tcp, Transport::tls, Transport::ws, Transport::wss}) {
    if (iequals(s, via_token(t))) return t;
  }
  throw std::invalid_argument("unknown SIP transport: " + std::string(s));
}

bool is_secure(Transport t) { return t == Transport::tls || t == Transport::wss; }
bool is_websocket(Transport t) { return t == Transport::ws || t == Transport::wss; }
bool is_datagram(Transport t) { return t == Transport::udp; }

std::string Endpoint::host() const { return address.is_v6() ? "[" + address.to_string() + "]" : address.to_string(); }

std::string Endpoint::host_port() const { return host() + ":" + std::to_string(port); }

std::ostream& operator<<(std::ostream& os, const Endpoint& e) { return os << e.host_port(); }

Endpoint loopback(std::uint16_t port, bool v6) {
  return Endpoint{v6 ? boost::asio::ip::address(boost::asio::ip::address_v6::loopback())
                     : boost::asio::ip::address(boost::asio::ip::address_v4::loopback()),
                  port};
}

}  // namespace edge::test
