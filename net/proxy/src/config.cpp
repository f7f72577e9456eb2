// Validation of the edge-proxy configuration (start-up path: exceptions, not codes).
#include "edge/net/proxy/config.h"

#include "edge/net/sip/uri.h"

#include <stdexcept>
#include <string>

namespace edge::net {

namespace {
bool is_v6(const AdvertisedAddress& a) noexcept { return a.host.find(':') != std::string::npos; }
}  // namespace

const AdvertisedAddress* ProxyConfig::client_address(const flow::FlowKey& flow) const noexcept {
  const bool v6 = flow.local.family == flow::Family::ipv6;
  const AdvertisedAddress* any = nullptr;
  for (const AdvertisedAddress& a : client_side) {
    if (a.transport != flow.transport) continue;
    if (is_v6(a) == v6) return &a;
    if (!any) any = &a;
  }
  return any;
}

namespace {
void check_address(const AdvertisedAddress& a, const std::string& what) {
  if (a.host.empty()) throw std::invalid_argument(what + ": host is empty");
  if (!sip::is_valid_hostname(a.host) && !sip::is_valid_ipv6(a.host))
    throw std::invalid_argument(what + ": host '" + a.host + "' is not an IP address or host name");
  if (a.port == 0) throw std::invalid_argument(what + ": port is 0");
}
}  // namespace

void ProxyConfig::validate() const {
  if (client_side.empty()) throw std::invalid_argument("proxy: no client-facing address");
  for (std::size_t i = 0; i < client_side.size(); ++i) {
    check_address(client_side[i], "proxy client_side[" + std::to_string(i) + "]");
    for (std::size_t j = 0; j < i; ++j)
      if (client_side[j].transport == client_side[i].transport &&
          is_v6(client_side[j]) == is_v6(client_side[i]))
        throw std::invalid_argument(std::string("proxy: two client-facing addresses of one family for ") +
                                    flow::to_string(client_side[i].transport));
  }
  check_address(core_side, "proxy core_side");
  // RFC 5626 §4.4: a Flow-Timer of 0 would ask for keep-alives continuously.
  if (flow_timer_seconds == 0) throw std::invalid_argument("proxy: flow_timer_seconds is 0");
  if (flow_token_security && key_set.empty())
    throw std::invalid_argument("proxy: flow-token security enabled without a key set name");
  if (limits.max_core_message_size < 512)
    throw std::invalid_argument("proxy: max_core_message_size below 512 bytes");
  if (limits.max_own_routes == 0 || limits.max_own_routes > ProxyLimits::kMaxOwnRoutes)
    throw std::invalid_argument("proxy: max_own_routes must be 1.." +
                                std::to_string(ProxyLimits::kMaxOwnRoutes));
}

}  // namespace edge::net
