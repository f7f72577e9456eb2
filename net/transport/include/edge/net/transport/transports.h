// The SIP transport layer: listeners, worker threads, flow table, core link; implements Network.
#pragma once

#include "edge/net/transport/config.h"
#include "edge/net/transport/flow_table.h"
#include "edge/net/transport/message_handler.h"

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace edge::net {

// Start-up and reconfiguration failures ("tcp 127.0.0.1:5060: address in use",
// "tls: cannot load certificate chain /etc/edge/cert.pem: ..."). The per-message
// path never throws.
class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A listener as bound (port 0 resolved to the port the OS chose).
struct BoundListener {
  flow::Transport transport = flow::Transport::udp;
  flow::Endpoint local;
};

// What a core link is now (CoreStats::state). up: new requests may go to it;
// probing: its first connection attempt is under way, or its link is up but no
// health check (OPTIONS) has been answered since it came up; used only while
// no core is up. down: its link is down, or core.health_failures health checks
// in a row failed.
enum class CoreState : std::uint8_t { down, probing, up };
std::string_view to_string(CoreState s) noexcept;

// One configured core (CoreConfig targets order) as its link sees it.
struct CoreStats {
  CoreTarget target;
  CoreState state = CoreState::down;
  bool link_up = false;    // its connection is up (UDP: its socket is open)
  std::string last_error;  // why it was last down or refused ("" when never)
  std::uint64_t connects = 0, disconnects = 0;
  std::uint64_t messages_in = 0, messages_out = 0;
  std::uint64_t requests = 0;  // new requests chosen for this core (several cores only)
  std::uint64_t health_pings = 0, health_answers = 0, health_failures = 0;
  std::uint64_t keepalive_timeouts = 0;
  std::uint64_t queued_now = 0;
  bool ever_up = false;  // up at least once since the transports started
};

struct TransportCounters {
  std::uint64_t accepted = 0;      // connections accepted (streams)
  std::uint64_t flows_opened = 0;  // flow entries created
  std::uint64_t flows_closed = 0;
  std::uint64_t messages_in = 0, messages_out = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  std::uint64_t keepalives = 0;         // CRLFCRLF / CRLF / STUN / WS ping seen
  std::uint64_t keepalive_answers = 0;  // CRLF pongs and STUN responses sent
};

struct TransportStats {
  // Indexed by the transport wire code (flow::Transport), 0 unused.
  std::array<TransportCounters, 8> per_transport{};
  std::array<std::uint64_t, 8> flows_now{};  // live flows per transport
  std::uint64_t connections_now = 0;
  std::uint64_t refused_max_connections = 0;
  std::uint64_t refused_per_address = 0;
  std::uint64_t oversized = 0;       // messages over max_message_size (any transport)
  std::uint64_t framing_errors = 0;  // streams closed because they could not be framed
  std::uint64_t read_timeouts = 0;   // slowloris closes
  // Stream connections closed because they never registered within
  // limits.unregistered_connection_lifetime (keep-alives do not extend it).
  std::uint64_t unregistered_lifetime_closes = 0;
  std::uint64_t idle_timeouts = 0;     // unregistered flows expired
  std::uint64_t flow_timeouts = 0;     // registered flows expired
  std::uint64_t udp_garbage = 0;       // datagrams that were neither SIP, STUN nor CRLF
  std::uint64_t stun_unsolicited = 0;  // STUN Binding requests from a source with no flow: not answered
  // limits.max_udp_flows: unregistered UDP flows evicted to make room for a new
  // source, and new sources given no flow because registered flows fill the table.
  std::uint64_t udp_flow_evictions = 0;
  std::uint64_t udp_flows_refused = 0;
  // Requests sent over a UDP flow this process never held (a token another
  // member minted, or this box before a restart: the token names the 5-tuple,
  // and a listener on its local address sends from there), and requests
  // refused (430) because no UDP listener has the token's local address.
  std::uint64_t udp_unheld_sends = 0;
  std::uint64_t udp_no_listener = 0;
  std::uint64_t send_failures = 0;     // write queue full or link gone
  std::uint64_t upgrade_refused = 0;   // WebSocket handshakes refused
  std::uint64_t superseded_flows = 0;  // a new connection reused a dead flow's 4-tuple before it was reaped
  std::uint64_t tls_handshake_failures = 0;
  // PROXY protocol listeners: headers believed (PROXY and LOCAL), and
  // connections closed before their first message because of the header.
  std::uint64_t proxy_accepted = 0;
  std::uint64_t proxy_refused_untrusted = 0;    // a header from a source not trusted
  std::uint64_t proxy_refused_missing = 0;      // a trusted source sent none
  std::uint64_t proxy_refused_malformed = 0;    // bad signature, syntax, address or length
  std::uint64_t proxy_refused_unsupported = 0;  // UNIX socket or UDP client
  std::uint64_t proxy_refused_timeout = 0;      // not complete within header_read_timeout
  // Core next hop.
  bool core_connected = false;
  std::uint64_t core_connects = 0, core_disconnects = 0;
  std::uint64_t core_messages_in = 0, core_messages_out = 0;
  std::uint64_t core_queue_full = 0;
  // Links dropped because the core did not answer a CRLFCRLF ping within
  // core.keepalive_timeout (RFC 5626 §4.4.1); messages refused because the
  // link was down (the proxy answered 503); queued messages dropped unsent
  // because they waited longer than core.max_queue_age.
  std::uint64_t core_keepalive_timeouts = 0;
  std::uint64_t core_refused_down = 0;
  std::uint64_t core_stale_dropped = 0;
  // TLS core links refused because the peer was not the configured core: its
  // certificate did not chain to tls.ca, did not name core.tls_server_name, or
  // missed core.tls_pin_sha256. core_identity_error says why, for the last one.
  std::uint64_t core_identity_failures = 0;
  std::string core_identity_error;
  std::uint64_t core_queued_now = 0;  // messages waiting for the core connection
  // Every configured core, in configuration order (empty without a core).
  // core_connected is true while any of them is up (or probing).
  std::vector<CoreStats> cores;
  // Parked messages (they waited for HSM work) delivered again, and those that
  // could not be because their flow was gone or the transport stopped.
  std::uint64_t redelivered = 0, redelivery_dropped = 0;

  const TransportCounters& of(flow::Transport t) const {
    return per_transport[static_cast<std::size_t>(t) & 7];
  }
};

namespace detail {
struct State;
}

// Owns everything below the proxy rules. A daemon builds one from its
// configuration, gives it the proxy's MessageHandler and calls start(); the
// proxy talks back through the Network interface this class implements:
//
//   TransportConfig cfg;                       // from the management schema
//   cfg.listeners = {{Transport::tcp, "192.0.2.10", 5060}, {Transport::udp, "192.0.2.10", 5060}};
//   cfg.core = {.enabled = true, .transport = Transport::tcp, .address = "10.0.0.5", .port = 5060};
//   auto proxy = std::make_shared<EdgeProxy>(...);   // a MessageHandler
//   Transports transports(cfg, proxy);
//   transports.start();                        // throws TransportError with the reason
//   ...                                        // proxy: out.send_to_flow / send_to_core / mark_registered
//   transports.pause(); transports.set_handler(next); transports.reload_tls(tls); transports.resume();
//   transports.stop();
//
// The proxy finds a flow from a token by decoding it (flow::TokenCodec) to a
// FlowKey and asking flow_alive() / flow_token() / send_to_flow() with it.
// Bind listeners to concrete addresses: the FlowKey (and so the token) carries
// the listener's bound address, and a wildcard address would put 0.0.0.0 there.
// Network calls may come from any thread, but not concurrently with stop().
//
// Threads: `workers` threads each run one io_context. A stream connection is
// accepted on its listener's worker straight onto the least-loaded worker's
// io_context and lives there until it closes; the handler runs on that thread.
// A UDP listener is one socket read by one worker (round-robin at start):
// datagrams need no per-connection state, and one socket per port keeps the
// STUN answers and SIP responses leaving from the port the client knows.
//
// Controlled restart: pause() stops delivering new messages (bytes stay in
// the socket buffers or the connection's read buffer; a parked message whose
// HSM work completes waits on its worker), keeps every listening socket and
// every flow; set_handler() and reload_tls() swap the proxy rules
// and the TLS material without touching a socket; resume() carries on.
class Transports final : public Network {
 public:
  Transports(TransportConfig config, std::shared_ptr<MessageHandler> handler);
  ~Transports() override;
  Transports(const Transports&) = delete;
  Transports& operator=(const Transports&) = delete;

  // Loads TLS material, binds and listens on every listener, starts the
  // workers and the core connection. When it returns, every port accepts.
  // Throws TransportError (nothing is left running then).
  void start();
  // Closes listeners and connections (on_flow_closed for each flow), joins the workers.
  void stop();

  void pause();
  void resume();
  bool paused() const noexcept;

  // Takes effect for the next message delivered; any thread.
  void set_handler(std::shared_ptr<MessageHandler> handler);
  // New TLS/WSS connections use the new material; established ones keep theirs.
  // Throws TransportError when the material does not load (the old stays).
  void reload_tls(const TlsConfig& tls);

  // The listeners as bound, in configuration order (valid after start()).
  std::vector<BoundListener> listening() const;
  // Port of the first listener of this transport and family; 0 when none.
  std::uint16_t port(flow::Transport t, flow::Family f = flow::Family::ipv4) const;

  TransportStats stats() const;
  const FlowTable& flows() const;
  std::shared_ptr<FlowEntry> find_flow(const FlowKey& key) const;
  const TransportConfig& config() const noexcept { return config_; }

  // Network
  bool send_to_flow(const FlowKey& flow, std::string bytes) override;
  bool send_to_core(std::string bytes) override;
  std::uint64_t core_link_epoch() const noexcept override;
  bool flow_alive(const FlowKey& flow) const override;
  bool flow_reachable(const FlowKey& flow) const override;
  std::shared_ptr<flow::FlowToken> flow_token(const FlowKey& flow) override;
  void mark_registered(const FlowKey& flow, std::chrono::seconds flow_timer) override;
  // Parked messages come back through the transport's shared state, which a
  // handler's HSM work may outlive this object in: it then drops them.
  std::shared_ptr<Redelivery> redelivery() override;

 private:
  TransportConfig config_;
  std::shared_ptr<detail::State> state_;
};

}  // namespace edge::net
