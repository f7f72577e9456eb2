// check(): configuration rules, listener addresses, TLS material and trial binds, without starting anything.
#include "edge/net/transport/check.h"

#include "address.h"
#include "config_rules.h"
#include "listener.h"
#include "tls_context.h"

#include "edge/net/transport/transports.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace edge::net {

namespace {

using detail::tcp;
using detail::udp;

bool datagram(flow::Transport t) { return t == flow::Transport::udp; }

// The address as Asio reads it, so "::1" and "0:0::1" are one address.
std::optional<boost::asio::ip::address> address_of(const ListenerConfig& l) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(l.address, ec);
  if (ec) return std::nullopt;
  return a;
}

bool same_listener(const ListenerConfig& a, const ListenerConfig& b) {
  if (a.transport != b.transport || a.port != b.port) return false;
  if (a.address == b.address) return true;
  const auto x = address_of(a), y = address_of(b);
  return x && y && *x == *y;
}

// Binds a socket for `l` as its listener would, closes it; "" or the reason.
std::string try_bind(const ListenerConfig& l, const boost::asio::ip::address& addr, bool freebind) {
  boost::asio::io_context io;
  boost::system::error_code ec;
  if (datagram(l.transport)) {
    udp::socket s(io);
    detail::bind_udp(s, udp::endpoint(addr, l.port), ec, freebind);
  } else {
    // Bound, not listening: a probe must not accept a connection, even for a moment.
    tcp::acceptor a(io);
    detail::bind_stream(a, tcp::endpoint(addr, l.port), ec, freebind);
  }
  if (!ec) return {};
  return detail::listener_name(l) + ": cannot bind: " + detail::bind_error_reason(ec);
}

std::string check_or_throw(const TransportConfig& next, const std::vector<ListenerConfig>& already_bound) {
  detail::validate(next);
  std::vector<boost::asio::ip::address> addresses;
  addresses.reserve(next.listeners.size());
  for (const auto& l : next.listeners) addresses.push_back(detail::parse_address(l));
  for (std::size_t i = 0; i < next.listeners.size(); ++i) {
    const auto& a = next.listeners[i];
    for (std::size_t j = 0; j < i; ++j) {
      const auto& b = next.listeners[j];
      if (a.port != 0 && a.port == b.port && datagram(a.transport) == datagram(b.transport) &&
          addresses[i] == addresses[j]) {
        return detail::listener_name(b) + " and " + detail::listener_name(a) + ": same address and port";
      }
    }
  }
  if (detail::needs_server_tls(next)) detail::make_server_tls(next.tls);
  if (detail::needs_client_tls(next)) detail::make_client_tls(next.tls, next.core);
  for (std::size_t i = 0; i < next.listeners.size(); ++i) {
    const auto& l = next.listeners[i];
    if (l.port == 0) continue;  // the OS picks a free one
    bool bound = false;
    for (const auto& b : already_bound) bound = bound || same_listener(b, l);
    if (bound) continue;
    if (auto reason = try_bind(l, addresses[i], next.freebind); !reason.empty()) return reason;
  }
  return {};
}

}  // namespace

std::string check(const TransportConfig& next, const std::vector<ListenerConfig>& already_bound) {
  try {
    return check_or_throw(next, already_bound);
  } catch (const std::exception& e) {  // TransportError; anything from Asio or OpenSSL too
    return e.what();
  }
}

}  // namespace edge::net
