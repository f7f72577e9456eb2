// Listener sockets: binding as every listener binds, and the names and reasons their errors carry.
#include "listener.h"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/socket_base.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>

namespace edge::net::detail {

namespace {
// IP_FREEBIND (IPv4) / IPV6_FREEBIND (IPv6): bind an address not (yet) on any interface.
template <typename Socket>
void set_freebind(Socket& s, bool v6, boost::system::error_code& ec) {
  const int on = 1;
  const int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
  const int name = v6 ? IPV6_FREEBIND : IP_FREEBIND;
  if (::setsockopt(s.native_handle(), level, name, &on, sizeof on) != 0)
    ec.assign(errno, boost::system::system_category());
}
}  // namespace

void bind_stream(tcp::acceptor& a, const tcp::endpoint& ep, boost::system::error_code& ec, bool freebind) {
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && freebind) set_freebind(a, ep.address().is_v6(), ec);
  if (!ec && ep.address().is_v6()) a.set_option(asio::ip::v6_only(true), ec);
  if (!ec) a.bind(ep, ec);
}

void bind_udp(udp::socket& s, const udp::endpoint& ep, boost::system::error_code& ec, bool freebind) {
  s.open(ep.protocol(), ec);
  if (!ec && freebind) set_freebind(s, ep.address().is_v6(), ec);
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
