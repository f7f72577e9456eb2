// The seam between the transport layer (sockets, flows) and the proxy rules above it.
#pragma once

#include "edge/net/token/flow_key.h"
#include "edge/net/token/hsm_outcome.h"
#include "edge/net/token/token_codec.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace edge::net {

using flow::FlowKey;
using flow::Transport;

// One complete SIP message as the transport layer framed it: a UDP datagram, a
// Content-Length framed message on a stream, or one WebSocket message.
struct Inbound {
  FlowKey flow;  // transport, our local endpoint, the peer's endpoint
  // From the core: on the core link, or a UDP datagram from the configured
  // core's address and port (a core answering our Via sent-by, RFC 3261 §18.2.2).
  bool from_core = false;
  std::string_view bytes;  // valid only during the on_message call
  std::chrono::steady_clock::time_point received{};
  bool registered = false;  // the flow registered through us (the class of its HSM work)
  // Set when this is a parked message delivered again (Redelivery): what the
  // HSM work it waited for decided. Valid only during the on_message call.
  const flow::HsmOutcome* hsm = nullptr;
  // A stream connection of our listeners from the configured core's IP address
  // (TLS: only one whose certificate passed the core identity check): a core
  // that opened its own connection to reach clients. The proxy counts a request
  // on it as the core's when its top Via names the core (ProxyConfig::core_address).
  bool core_address = false;
};

// A message that waits for HSM work, off the I/O worker: its bytes copied once.
struct ParkedMessage {
  FlowKey flow;
  bool from_core = false;
  bool registered = false;
  std::string bytes;
  std::chrono::steady_clock::time_point received{};
  std::shared_ptr<const flow::HsmOutcome> outcome;
};

// Hands a parked message back to the transport, which delivers it again (an
// on_message with Inbound::hsm set) to the handler current then, on the worker
// that owns its flow (the core link's worker for a message from the core), and
// only once resumed when a controlled restart paused delivery. Any thread;
// never blocks.
class Redelivery {
 public:
  virtual ~Redelivery() = default;
  // False, and nothing delivered, when the message's flow is gone (a closed
  // connection or core link: nobody to answer) or the transport stopped.
  virtual bool redeliver(ParkedMessage m) = 0;
};

// What the proxy may ask of the transport layer. Thread-safe; never blocks on I/O
// (a send to a flow owned by another worker is posted to that worker).
class Network {
 public:
  virtual ~Network() = default;

  // Sends on exactly this client flow (UDP: from the listener socket of
  // flow.local to flow.remote). False when the flow is gone: the caller answers 430.
  virtual bool send_to_flow(const FlowKey& flow, std::string bytes) = 0;

  // Sends to the configured core next hop over the persistent connection
  // (queued, bounded, while it reconnects). False when it cannot: 503.
  virtual bool send_to_core(std::string bytes) = 0;

  // Changes whenever the core link goes up or down (a count of both). The
  // proxy compares it to tell a retransmission it absorbed before a reconnect
  // from one the core has already seen. 0 for a Network without a core link.
  virtual std::uint64_t core_link_epoch() const noexcept { return 0; }

  // True while the flow exists (not closed, not timed out).
  virtual bool flow_alive(const FlowKey& flow) const = 0;

  // True when a request can go over the flow: it is alive, or it is a UDP flow
  // this process does not hold but can send on (another member's token after a
  // failover, ours before a restart: from the listener on the token's local
  // address; Transports: State::closed_udp). False: the caller answers 430.
  virtual bool flow_reachable(const FlowKey& flow) const { return flow_alive(flow); }

  // The per-flow token cache kept with the flow table entry (mint once per flow
  // per key version); null when the flow is gone.
  virtual std::shared_ptr<flow::FlowToken> flow_token(const FlowKey& flow) = 0;

  // A REGISTER through this flow succeeded with Flow-Timer `flow_timer`: the
  // flow is now kept until flow_timer + grace of silence (RFC 5626 §5.4).
  virtual void mark_registered(const FlowKey& flow, std::chrono::seconds flow_timer) = 0;

  // Where a handler hands parked messages back. The handler keeps it weakly
  // (the transport may go away while HSM work runs); null when this Network
  // cannot redeliver, and then the handler makes its HSM calls inline.
  virtual std::shared_ptr<Redelivery> redelivery() { return nullptr; }
};

// Implemented by the proxy rules. Calls arrive on transport worker threads and
// must not block on I/O.
class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  // On the worker thread that owns the flow.
  virtual void on_message(const Inbound& in, Network& out) = 0;
  // The flow closed, errored or timed out; it is already gone for routing. On
  // the flow's worker.
  virtual void on_flow_closed(const FlowKey& flow) = 0;
  // Every TransportLimits::handler_timer_interval on worker 0, paused or not,
  // for the handler that is current then (a controlled restart swaps it).
  virtual void on_timer(std::chrono::steady_clock::time_point now, Network& out) {
    (void)now;
    (void)out;
  }
};

}  // namespace edge::net
