// Plain configuration of the SIP transport layer: listeners, TLS material, core next hop, limits, workers.
#pragma once

#include "edge/net/token/flow_key.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace edge::net {

// Who must show a client certificate on TLS / WSS listeners.
enum class ClientCertPolicy : std::uint8_t { none, optional, required };

// TLS material for the server side (listeners) and, with ca_file, for checking the core.
// Only TLS 1.2 and newer are offered.
struct TlsConfig {
  std::string certificate_chain_file;  // PEM, leaf first
  std::string private_key_file;        // PEM, unencrypted (the key is not a flow-token key)
  std::string ca_file;                 // PEM; verifies client certificates (and the core)
  ClientCertPolicy client_certs = ClientCertPolicy::none;
};

struct ListenerConfig {
  flow::Transport transport = flow::Transport::udp;  // udp, tcp, tls, ws or wss
  std::string address = "127.0.0.1";                 // IPv4 or IPv6 literal, no brackets
  std::uint16_t port = 5060;                         // 0: the OS picks one (tests)
  // Behind a load balancer (stream listeners only): a connection from a
  // TransportConfig::proxy_trusted_sources address must begin with a PROXY
  // protocol header (v1 or v2), whose client address then names the flow; any
  // other source is a direct client and must not send one.
  bool proxy_protocol = false;
};

// One core of several (CoreConfig::targets): where it is, and how new requests
// choose it. The lowest priority number among the healthy cores wins; among
// cores of that priority a request goes to one in proportion to weight, chosen
// by a hash of its Call-ID (so a CANCEL, ACK or BYE follows its INVITE).
struct CoreTarget {
  flow::Transport transport = flow::Transport::tcp;  // tcp, tls or udp; the same for every core
  std::string address = "127.0.0.1";
  std::uint16_t port = 5060;
  std::uint32_t priority = 1;
  std::uint32_t weight = 1;  // >= 1
};

// The core registrar/proxy behind the edge: one persistent connection per core.
struct CoreConfig {
  bool enabled = false;
  flow::Transport transport = flow::Transport::tcp;  // tcp, tls or udp
  std::string address = "127.0.0.1";
  std::uint16_t port = 5060;
  // Reconnect back-off doubles from initial to max; it resets after a connect.
  std::chrono::milliseconds reconnect_initial{100};
  std::chrono::milliseconds reconnect_max{10'000};
  // Messages waiting to be written to the connection (it is up but behind,
  // or it broke under them); send_to_core fails beyond this. While the link is
  // down send_to_core fails at once (the proxy answers 503, RFC 3261 §16.9);
  // only during the first connection attempt after start do messages wait.
  std::size_t max_queued = 1024;
  // A queued message older than this is dropped, never written: after a
  // reconnect nothing stale reaches the core (a caller who hung up long ago).
  std::chrono::milliseconds max_queue_age{4'000};
  // RFC 5626 §4.4.1 on a TCP/TLS core link: a CRLFCRLF ping every
  // keepalive_interval; the core's CRLF pong (or any other bytes from it) must
  // arrive within keepalive_timeout of the ping or the link is dropped (an
  // abortive close, so the kernel sends nothing more of it) and reconnected.
  // A silent core is so noticed within interval + timeout. The first ping goes
  // at connect and the link counts as up (send_to_core accepts) only once it is
  // answered: a stopped core's kernel still completes TCP handshakes. 0: no
  // pings (up at connect; a dead core is then learnt only from TCP, a core that
  // does not answer CRLFCRLF needs this). Not on a UDP core link.
  std::chrono::milliseconds keepalive_interval{5'000};
  std::chrono::milliseconds keepalive_timeout{5'000};
  // TLS to the core: with TlsConfig::ca_file the certificate must chain to that
  // CA *and* name tls_server_name (a DNS name, also sent as SNI, or an IP
  // literal checked against the IP SANs); empty means the core's address. With
  // tls_pin_sha256 the certificate (or its public key) must have that SHA-256;
  // with both, both must hold. With neither the link is encrypted only, not
  // authenticated (edged --production refuses that). Our certificate chain is
  // presented to the core when one is configured.
  std::string tls_server_name;
  // 64 hex digits (colons allowed, any case): SHA-256 of the DER certificate or
  // of its SubjectPublicKeyInfo. Empty: no pin.
  std::string tls_pin_sha256;
  // Several cores (docs/operations.md, "Several cores"): every core, the first
  // the most preferred, each with a link of its own (everything above applies
  // to each; an empty tls_server_name means each core's own address). Empty:
  // one core, transport/address/port above. When set, transport/address/port
  // repeat targets[0].
  std::vector<CoreTarget> targets;
  // Health checks as Kamailio's dispatcher does them: an OPTIONS to each core
  // every health_interval (and at once when its link comes up). Any final
  // answer but 408 and 5xx is "alive"; health_failures pings in a row
  // unanswered (within health_interval each) or answered so mark the core down
  // until one is answered alive again. 0: no OPTIONS pings (a core is up while
  // its link is up).
  std::chrono::milliseconds health_interval{0};
  unsigned health_failures = 3;
};

// Every configured core: targets, or the single core of transport/address/port.
std::vector<CoreTarget> core_targets(const CoreConfig& c);

struct TransportLimits {
  std::size_t max_connections = 10'000;      // stream connections, all listeners
  std::size_t max_per_source_address = 100;  // stream connections from one IP address
  std::size_t max_message_size = 65'535;     // bytes; stream: answer 513 then close, UDP: drop
  // UDP flows, all UDP listeners. A datagram from a new source past it evicts
  // the least recently heard unregistered flow of its listener; registered
  // flows are never evicted (with only those left, the new source gets none).
  std::size_t max_udp_flows = 100'000;
  // Slowloris: a message whose header section is not complete this long after
  // its first byte, or whose body is not complete this long after its headers,
  // closes the connection. The TLS handshake and the WS upgrade count as headers.
  std::chrono::milliseconds header_read_timeout{10'000};
  std::chrono::milliseconds body_read_timeout{10'000};
  // Flows with no successful REGISTER (mark_registered) die after this much silence.
  std::chrono::milliseconds idle_timeout{120'000};
  // A stream connection (TCP, TLS, WS, WSS) that has not registered this long
  // after it was accepted is closed, whatever it sent: keep-alives and other
  // messages do not extend it. A UA registers right after it connects (RFC 5626
  // §4.2), a digest challenge included, within seconds; 60 s leaves room for a
  // slow network and a 503 Retry-After or two. Connections from the core's
  // address (a core that opens its own connection to reach clients) are exempt.
  // 0: no lifetime. UDP flows are bounded by max_udp_flows instead.
  std::chrono::milliseconds unregistered_connection_lifetime{60'000};
  // Registered flows die after Flow-Timer + grace of silence (RFC 5626 §5.4: wait
  // longer than Flow-Timer; reSIProcate uses 30 s).
  std::chrono::milliseconds flow_timeout_grace{30'000};
  // Writes queued on one connection (or the UDP socket) before send_to_flow fails.
  std::size_t max_write_queue = 512;
  // How often each worker walks the flow table for expired flows and stalled
  // reads; bounds the precision of every timeout above.
  std::chrono::milliseconds sweep_interval{1'000};
  // How often worker 0 calls MessageHandler::on_timer (the proxy's transaction
  // timers: retransmission toward UDP clients, 408s). T1/5 is plenty.
  std::chrono::milliseconds handler_timer_interval{100};
};

struct TransportConfig {
  std::vector<ListenerConfig> listeners;
  TlsConfig tls;  // needed when a tls/wss listener or a tls core is configured
  CoreConfig core;
  TransportLimits limits;
  // Worker threads, each owning one io_context; 0 = one per core.
  unsigned workers = 0;
  // Load balancers whose PROXY headers are believed on proxy_protocol
  // listeners: "10.0.0.0/8", "2001:db8::/32", or one address.
  std::vector<std::string> proxy_trusted_sources;
  // sip.freebind: IP_FREEBIND / IPV6_FREEBIND on every listener socket, so a
  // listener binds an address this host does not hold (yet): the virtual
  // address VRRP (keepalived) moves to this box when it takes over. Without
  // it such a bind fails with "address not available".
  bool freebind = false;
  // Sent as Server on the 400/513 the transport answers itself; empty: none.
  std::string server_header = "edge";
};

}  // namespace edge::net
