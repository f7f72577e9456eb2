// Internal: a listening socket on one worker, the listener factories, and how a listener binds and is named.
#pragma once

#include "address.h"
#include "state.h"
#include "worker.h"

#include "edge/net/transport/config.h"
#include "edge/net/transport/transports.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <string>

namespace edge::net::detail {

// A listening socket on one worker.
class Listener : public WorkerMember {
 public:
  virtual BoundListener bound() const = 0;
  // UDP only: one datagram from this listener's socket to `to` (the core); false
  // when the socket is closed or its write queue is full. Any thread.
  virtual bool send_datagram(const flow::Endpoint& to, std::string bytes) {
    (void)to;
    (void)bytes;
    return false;
  }
  // UDP only: a request over a flow this process does not hold (key.local is
  // this listener's address): sent, and the flow opened as if the client had
  // sent to us, so its answers, STUN keep-alives and later requests find it.
  // False when the socket is closed or its write queue is full. Any thread.
  virtual bool send_unheld(const flow::FlowKey& key, std::string bytes) {
    (void)key;
    (void)bytes;
    return false;
  }
};

// Listener factories; they bind (throwing TransportError) and start accepting.
std::shared_ptr<Listener> make_udp_listener(const std::shared_ptr<State>& st, Worker& w,
                                            const ListenerConfig& cfg);
std::shared_ptr<Listener> make_stream_listener(const std::shared_ptr<State>& st, Worker& w,
                                               const ListenerConfig& cfg);

// Open and bind a listener's socket, as its listener does (and as check() probes):
// streams with SO_REUSEADDR (a restart must not wait out TIME_WAIT), UDP without
// (there it would let a second socket share the port); IPV6_V6ONLY on IPv6, so
// an IPv4 and an IPv6 listener can share a port number; with freebind
// (TransportConfig::freebind, sip.freebind) IP_FREEBIND / IPV6_FREEBIND, so an
// address this host does not hold yet binds. ec says why not.
void bind_stream(tcp::acceptor& a, const tcp::endpoint& ep, boost::system::error_code& ec, bool freebind);
void bind_udp(udp::socket& s, const udp::endpoint& ep, boost::system::error_code& ec, bool freebind);

// "tcp 127.0.0.1:5060"
std::string listener_name(const ListenerConfig& cfg);
// "address in use", "permission denied", ... (the OS's text for anything else).
std::string bind_error_reason(const boost::system::error_code& ec);
// TransportError "tcp 127.0.0.1:5060: address in use".
[[noreturn]] void throw_bind_error(const ListenerConfig& cfg, const boost::system::error_code& ec);
// The listener's address; TransportError "tcp 1.2.3:5060: not an IP address" when it is not a literal.
asio::ip::address parse_address(const ListenerConfig& cfg);

}  // namespace edge::net::detail
