// The configuration rules checked before start() binds or loads anything.
#include "config_rules.h"

#include "listener.h"
#include "proxy_header.h"
#include "tls_context.h"

#include "edge/net/transport/transports.h"

#include <boost/asio/ip/address.hpp>

namespace edge::net::detail {

void validate(const TransportConfig& c) {
  for (const auto& l : c.listeners) {
    switch (l.transport) {
      case flow::Transport::udp:
      case flow::Transport::tcp:
      case flow::Transport::tls:
      case flow::Transport::ws:
      case flow::Transport::wss:
        break;
      default:
        throw TransportError(listener_name(l) + ": transport not supported by a listener");
    }
    if (l.proxy_protocol && l.transport == flow::Transport::udp) {
      throw TransportError(listener_name(l) + ": the PROXY protocol is for stream listeners");
    }
    // Without a trusted balancer every header would be refused: a mistake, not a configuration.
    if (l.proxy_protocol && c.proxy_trusted_sources.empty()) {
      throw TransportError(listener_name(l) + ": proxy listener without proxy_protocol.trusted_sources");
    }
  }
  for (const auto& s : c.proxy_trusted_sources) {
    if (!Cidr::parse(s))
      throw TransportError("proxy_protocol.trusted_sources: '" + s + "' is not an address range");
  }
  if (c.core.enabled) {
    const auto t = c.core.transport;
    if (t != flow::Transport::tcp && t != flow::Transport::tls && t != flow::Transport::udp) {
      throw TransportError("core: transport must be tcp, tls or udp");
    }
    boost::system::error_code ec;
    boost::asio::ip::make_address(c.core.address, ec);
    if (ec) throw TransportError("core " + c.core.address + ": not an IP address");
    if (!c.core.tls_pin_sha256.empty() && !parse_pin(c.core.tls_pin_sha256)) {
      throw TransportError(
          "core: tls_pin_sha256 is not 64 hex digits (SHA-256 of the certificate or its key)");
    }
    if (c.core.max_queue_age.count() <= 0) throw TransportError("core: max_queue_age must be positive");
    if (c.core.keepalive_interval.count() < 0) throw TransportError("core: keepalive_interval is negative");
    if (c.core.keepalive_interval.count() > 0 && c.core.keepalive_timeout.count() <= 0)
      throw TransportError("core: keepalive_timeout must be positive when keep-alives are on");
    if (c.core.health_interval.count() < 0) throw TransportError("core: health_interval is negative");
    if (c.core.health_interval.count() > 0 && c.core.health_failures == 0)
      throw TransportError("core: health_failures must be at least 1 when health checks are on");
    const auto targets = core_targets(c.core);
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const auto& k = targets[i];
      const std::string name = "core " + k.address + ":" + std::to_string(k.port);
      // One transport for all; a UDP first core may have reliable (TCP/TLS) ones
      // beside it, which take the requests too large for UDP (RFC 3261 §18.1.1).
      if (k.transport != c.core.transport && c.core.transport != flow::Transport::udp)
        throw TransportError(name + ": every core must use the same transport (" +
                             flow::to_string(c.core.transport) + ")");
      boost::asio::ip::make_address(k.address, ec);
      if (ec) throw TransportError(name + ": not an IP address");
      if (k.weight == 0) throw TransportError(name + ": weight must be at least 1");
      for (std::size_t j = 0; j < i; ++j) {
        if (targets[j].address == k.address && targets[j].port == k.port &&
            targets[j].transport == k.transport)
          throw TransportError(name + ": configured twice");
      }
    }
  }
  if (c.limits.max_message_size < 512) throw TransportError("limits: max_message_size below 512 bytes");
  if (c.limits.max_udp_flows == 0) throw TransportError("limits: max_udp_flows must be at least 1");
  if (c.limits.sweep_interval.count() <= 0) throw TransportError("limits: sweep_interval must be positive");
  if (c.limits.handler_timer_interval.count() <= 0)
    throw TransportError("limits: handler_timer_interval must be positive");
}

}  // namespace edge::net::detail
