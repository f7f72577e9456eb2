// Listener sockets: binding as every listener binds, and the names and reasons their errors carry.
#include "listener.h"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/socket_base.hpp>

#include <cctype>
#include <cerrno>

namespace edge::net::detail {

void bind_stream(tcp::acceptor& a, const tcp::endpoint& ep, boost::system::error_code& ec) {
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && ep.address().is_v6()) a.set_option(asio::ip::v6_only(true), ec);
  if (!ec) a.bind(ep, ec);
}

void bind_udp(udp::socket& s, const udp::endpoint& ep, boost::system::error_code& ec) {
  s.open(ep.protocol(), ec);
  if (!ec && ep.address().is_v6()) s.set_option(asio::ip::v6_only(true), ec);
  if (!ec) s.bind(ep, ec);
}

std::string listener_name(const ListenerConfig& cfg) {
  std::string t = flow::to_string(cfg.transport);
  for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const bool v6 = cfg.address.find(':') != std::string::npos;
  return t + " " + (v6 ? "[" + cfg.address + "]" : cfg.address) + ":" + std::to_string(cfg.port);
}

std::string bind_error_reason(const boost::system::error_code& ec) {
  if (ec == asio::error::address_in_use) return "address in use";
  if (ec == asio::error::access_denied) return "permission denied";
  if (ec == asio::error::address_family_not_supported) return "address family not supported";
  if (ec.value() == EADDRNOTAVAIL) return "address not available";
  return ec.message();
}

void throw_bind_error(const ListenerConfig& cfg, const boost::system::error_code& ec) {
  throw TransportError(listener_name(cfg) + ": " + bind_error_reason(ec));
}

asio::ip::address parse_address(const ListenerConfig& cfg) {
  boost::system::error_code ec;
  auto a = asio::ip::make_address(cfg.address, ec);
  if (ec) throw TransportError(listener_name(cfg) + ": not an IP address");
  return a;
}

}  // namespace edge::net::detail
