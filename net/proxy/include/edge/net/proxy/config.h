// Plain configuration of the edge-proxy rules: our advertised addresses, Flow-Timer, Path policy, limits.
#pragma once

#include "edge/net/token/flow_key.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace edge::net {

// One address we put in Via, Path and Record-Route URIs. host is an IP literal or a
// name, IPv6 without brackets; it is only ever *written* into messages and compared
// with what comes back, never resolved.
struct AdvertisedAddress {
  flow::Transport transport = flow::Transport::udp;
  std::string host;
  std::uint16_t port = 5060;
};

struct ProxyLimits {
  // Retry-After on our 503s (HSM or core unavailable).
  std::uint32_t retry_after_seconds = 5;
  // At most this many of our own Route values are looked at in one request (a
  // double Record-Route leaves two per pass through us; more is a loop).
  static constexpr std::size_t kMaxOwnRoutes = 8;
  std::size_t max_own_routes = 4;  // 1..kMaxOwnRoutes
  // The largest message we send toward the core, with our Via, Record-Route
  // and Path added; a larger one is answered 513 instead. The core link's own
  // limit: its framer's max message size on a stream (the transport's
  // limits.max_message_size, which the core's answers are read with), and on
  // UDP also the largest IPv4 datagram payload, 65507 bytes (edged sets it:
  // EdgedConfig::proxy_config). At least 512.
  static constexpr std::size_t kMaxUdpPayload = 65'507;
  std::size_t max_core_message_size = 65'535;
  // Transaction memory, T1/T2 and the log rate belong to the process, not to one
  // set of rules: ProxyStateOptions (proxy_state.h).
};

struct ProxyConfig {
  // Client-facing side: one address per transport (and per address family, when
  // clients reach us over IPv4 and IPv6). The entry matching a flow's transport and
  // family goes into the Via we push toward that flow and into the UA-facing
  // Record-Route.
  std::vector<AdvertisedAddress> client_side;
  // Core-facing side: how the core reaches us. Its transport is the transport of
  // the core next hop (Network::send_to_core); it goes into the Via we push
  // toward the core, into Path, and into the core-facing Record-Route.
  AdvertisedAddress core_side{flow::Transport::tcp, {}, 5060};
  // The core's own address (the `core` URI: an IP literal and port). A request
  // that arrives on a stream from the core's IP (Inbound::core_address: a core
  // that opened its own connection to us) is the core's when its top Via
  // sent-by names this address; empty host: only the transport's from_core.
  AdvertisedAddress core_address{flow::Transport::tcp, {}, 5060};
  // Several cores: the addresses of the others (core_address is the first);
  // a request naming any of them in its top Via is the core's too.
  std::vector<AdvertisedAddress> other_core_addresses;

  // RFC 5626 §5.4: Flow-Timer on 2xx to an outbound REGISTER (and keep= value, RFC 6223).
  std::uint32_t flow_timer_seconds = 30;

  // A REGISTER without "Supported: path" (a plain RFC 3261 phone: most deployed
  // phones send none). true (default, as Kamailio's add_path()): it gets our Path
  // with the flow token all the same (and no Require: path), so the core reaches
  // the phone back through its flow. false: RFC 3327 §5.2's SHOULD NOT, no Path
  // (or 421, see require_path).
  bool path_without_supported = true;

  // RFC 3327 §5.2, with path_without_supported false: when true a REGISTER without
  // "Supported: path" is answered 421 (Require: path); when false it is forwarded
  // without a Path header.
  bool require_path = false;

  // Flow-token security (RFC 5626 §5.2): the proxy needs a TokenCodec for this key
  // set. When false, no token is ever minted: outbound REGISTERs get 439 (RFC 5626
  // §5.1 allows "reject" instead of a token) and nothing can be routed to a flow.
  bool flow_token_security = true;
  std::string key_set;  // for status and logs; the codec passed to the proxy serves it

  // A client presenting a valid token of *another* client's flow (learned from a
  // Record-Route, say). RFC 5626 §5.3 forwards it straight over that flow; that
  // would let clients reach each other around the core's authentication and
  // policy. false (default): the Route value is left in place and the request goes
  // to the core, which routes it back through us if it agrees. true: the RFC's
  // direct forwarding.
  bool client_to_client_direct = false;

  ProxyLimits limits;

  // The client-facing address for a flow: same transport and family, else same
  // transport; null when no entry has the transport.
  const AdvertisedAddress* client_address(const flow::FlowKey& flow) const noexcept;
  // Throws std::invalid_argument naming the first problem (start-up path).
  void validate() const;
};

}  // namespace edge::net
