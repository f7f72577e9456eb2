// Internal: Asio addresses and endpoints to flow::Endpoint and back (where flow keys meet sockets).
#pragma once

#include "edge/net/token/flow_key.h"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <cstdint>

namespace edge::net::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;

flow::Endpoint to_flow(const asio::ip::address& a, std::uint16_t port);
// An Asio endpoint as a flow endpoint; a v4-mapped IPv6 address becomes IPv4.
template <class E>
flow::Endpoint to_flow(const E& ep) {
  return to_flow(ep.address(), ep.port()).unmapped();
}
asio::ip::address to_asio(const flow::Endpoint& e);

}  // namespace edge::net::detail
