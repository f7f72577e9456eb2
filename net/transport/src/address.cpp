// Asio addresses to flow::Endpoint and back.
#include "address.h"

#include <algorithm>
#include <array>

namespace edge::net::detail {

flow::Endpoint to_flow(const asio::ip::address& a, std::uint16_t port) {
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return flow::Endpoint::v4({b[0], b[1], b[2], b[3]}, port);
  }
  const auto b = a.to_v6().to_bytes();
  std::array<std::uint8_t, 16> x{};
  std::copy(b.begin(), b.end(), x.begin());
  return flow::Endpoint::v6(x, port);
}

asio::ip::address to_asio(const flow::Endpoint& e) {
  if (e.family == flow::Family::ipv4) {
    return asio::ip::address_v4({e.address[0], e.address[1], e.address[2], e.address[3]});
  }
  asio::ip::address_v6::bytes_type b{};
  std::copy(e.address.begin(), e.address.end(), b.begin());
  return asio::ip::address_v6(b);
}

}  // namespace edge::net::detail
