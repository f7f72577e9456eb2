// Internal: the transport layer's atomic counters, bumped on the workers and read by Transports::stats().
#pragma once

#include "edge/net/token/flow_key.h"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace edge::net::detail {

struct AtomicTransportCounters {
  std::atomic<std::uint64_t> accepted{0}, flows_opened{0}, flows_closed{0}, messages_in{0}, messages_out{0},
      bytes_in{0}, bytes_out{0}, keepalives{0}, keepalive_answers{0};
};

struct Counters {
  std::array<AtomicTransportCounters, 8> per_transport;
  std::atomic<std::uint64_t> refused_max_connections{0}, refused_per_address{0}, oversized{0},
      framing_errors{0}, read_timeouts{0}, idle_timeouts{0}, flow_timeouts{0}, udp_garbage{0},
      send_failures{0}, upgrade_refused{0}, tls_handshake_failures{0}, superseded_flows{0},
      stun_unsolicited{0}, udp_flow_evictions{0}, udp_flows_refused{0}, unregistered_lifetime_closes{0},
      udp_unheld_sends{0}, udp_no_listener{0};
  std::atomic<std::uint64_t> core_connects{0}, core_disconnects{0}, core_messages_in{0}, core_messages_out{0},
      core_queue_full{0}, core_identity_failures{0}, core_keepalive_timeouts{0}, core_refused_down{0},
      core_stale_dropped{0}, core_health_downs{0};
  std::atomic<std::uint64_t> redelivered{0}, redelivery_dropped{0};
  // PROXY protocol listeners: headers believed, connections refused by ProxyRefusal.
  std::atomic<std::uint64_t> proxy_accepted{0};
  std::array<std::atomic<std::uint64_t>, 5> proxy_refused{};
  std::atomic<bool> core_connected{false};

  AtomicTransportCounters& of(flow::Transport t) { return per_transport[static_cast<std::size_t>(t) & 7]; }
};

}  // namespace edge::net::detail
