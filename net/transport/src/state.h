// Internal: the state one Transports instance shares with its listeners, connections and core link.
#pragma once

#include "counters.h"
#include "proxy_header.h"
#include "worker.h"

#include "edge/net/sip/limits.h"
#include "edge/net/transport/config.h"
#include "edge/net/transport/flow_table.h"
#include "edge/net/transport/message_handler.h"
#include "edge/net/transport/transports.h"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace edge::net::detail {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;

class CoreLink;
class Listener;

// The branch of the edge's health OPTIONS to a core: this, the core's index, '.', the CSeq.
inline constexpr std::string_view kHealthBranchPrefix = "z9hG4bK-edge-health-";
// RFC 3261 §18.1.1: above this a request does not go over UDP when a reliable core is there.
inline constexpr std::size_t kUdpRequestLimit = 1300;

struct State final : Redelivery {
  State(const TransportConfig& cfg, std::shared_ptr<MessageHandler> h);

  const TransportConfig config;
  const sip::Limits sip_limits;
  std::vector<std::unique_ptr<Worker>> workers;
  FlowTable table;
  Counters counters;
  Network* outbound = nullptr;  // the owning Transports
  std::atomic<bool> paused{false};
  std::atomic<bool> stopping{false};

  // Handler swap (controlled restart): readers take a reference per message.
  std::shared_ptr<MessageHandler> handler() const { return handler_.load(std::memory_order_acquire); }
  void set_handler(std::shared_ptr<MessageHandler> h) {
    handler_.store(std::move(h), std::memory_order_release);
  }

  std::shared_ptr<ssl::context> tls_server() const;
  std::shared_ptr<ssl::context> tls_client() const;
  void set_tls(std::shared_ptr<ssl::context> server, std::shared_ptr<ssl::context> client);

  Worker& least_loaded() noexcept;
  Worker& next_worker() noexcept;  // round-robin (listeners)

  // Connection admission (max_connections, max_per_source_address); release once per admitted one.
  bool admit(const asio::ip::address& from);
  void release(const asio::ip::address& from);
  // The two halves, for a balancer's connection: the total when it is
  // accepted, the source once its PROXY header has named the client.
  bool admit_total();
  void release_total();
  bool admit_source(const asio::ip::address& from);
  void release_source(const asio::ip::address& from);
  // A load balancer in proxy_protocol.trusted_sources.
  bool trusted_proxy(const asio::ip::address& from) const;
  std::size_t connections() const noexcept { return connections_.load(std::memory_order_relaxed); }

  // Creates and indexes the flow entry of a new connection or UDP peer
  // (adopted: a UDP flow opened by a request from the core, FlowEntry::adopted).
  std::shared_ptr<FlowEntry> open_flow(const flow::FlowKey& key, Worker& w, std::weak_ptr<FlowLink> link,
                                       bool adopted = false);

  // UDP flows this process held and closed (silent past Flow-Timer, evicted,
  // ...), except adopted ones that never registered: a request over one of
  // them is 430 (RFC 5626 §5.3, the flow is gone). Any other UDP flow a valid
  // token names may well be alive (datagrams carry no connection state; the
  // token names the 5-tuple): it is sent to from the listener on the token's
  // local address. Bounded by limits.max_udp_flows, the oldest forgotten
  // first; a flow opened again leaves it. Any thread.
  bool closed_udp(const flow::FlowKey& key) const;
  // The UDP listener whose bound address and port are `local`, or null.
  std::shared_ptr<Listener> udp_listener_at(const flow::Endpoint& local) const;
  // Removes the flow from the table and tells the handler; once per flow, on its worker.
  void close_flow(const std::shared_ptr<FlowEntry>& entry, CloseReason why);

  void deliver(const Inbound& in);  // handler->on_message on the calling worker

  // Redelivery: posts the message to the worker of its flow (the core link's for
  // the core), where deliver_parked() runs it. False when the flow is gone or
  // the transport stops.
  bool redeliver(ParkedMessage m) override;
  // On w: delivers now, or keeps it in w.redelivered while paused.
  void deliver_parked(Worker& w, ParkedMessage m);
  // Serialises redeliver() against stop() tearing the workers down.
  std::mutex redeliver_mu;

  // Every configured core's own address: a UDP datagram from exactly that IP
  // and port is the core's; a stream connection from that IP is a candidate
  // (Inbound::core_address). False without a core.
  bool core_udp_peer(const flow::Endpoint& remote) const noexcept;
  bool core_ip(const flow::Endpoint& remote) const noexcept;
  // Of the cores in core_targets() order (unmapped).
  const std::vector<flow::Endpoint>& core_endpoints() const noexcept { return core_endpoints_; }
  // A message from a core that answers one of our health OPTIONS: handed to
  // its CoreLink (true), never to the handler.
  bool take_health_answer(std::string_view bytes);
  // Counts a message from the core at remote (UDP), for it and in total.
  void count_core_in(const flow::Endpoint& remote);
  // The link a new message for the core goes to (several cores: by health,
  // priority, weight; a response to the core whose Via it names), or null.
  std::shared_ptr<CoreLink> choose_core(std::string_view bytes);

  // Registers a member for pause/resume/stop on its worker (call on that worker).
  static void join(Worker& w, const std::shared_ptr<WorkerMember>& r) { w.members[r.get()] = r; }
  static void leave(Worker& w, WorkerMember* r) { w.members.erase(r); }
  static void park(Worker& w, const std::shared_ptr<WorkerMember>& r) { w.parked.push_back(r); }

  // Why the last TLS core link was refused (CoreLink sets it; stats() reads it).
  void set_core_identity_error(std::string why) {
    std::lock_guard lock(identity_mu_);
    core_identity_error_ = std::move(why);
  }
  std::string core_identity_error() const {
    std::lock_guard lock(identity_mu_);
    return core_identity_error_;
  }

  std::vector<std::shared_ptr<Listener>> listeners;
  std::vector<BoundListener> bound;
  // One link per configured core, in core_targets() order (a UDP core's link
  // has CoreLink::udp_listener set when it is sent to from a UDP listener).
  std::vector<std::shared_ptr<CoreLink>> cores;

 private:
  std::vector<Cidr> trusted_proxies_;
  std::vector<flow::Endpoint> core_endpoints_;  // unmapped
  std::atomic<std::shared_ptr<MessageHandler>> handler_;
  mutable std::mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_server_, tls_client_;
  std::mutex addr_mu_;
  std::unordered_map<flow::Endpoint, std::size_t, flow::EndpointHash> per_address_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<unsigned> rr_{0};
  mutable std::mutex identity_mu_;
  std::string core_identity_error_;
  mutable std::mutex closed_udp_mu_;
  std::atomic<bool> any_closed_udp_{false};
  std::unordered_set<flow::FlowKey, flow::FlowKeyHash> closed_udp_;
  std::deque<flow::FlowKey> closed_udp_order_;  // oldest first; may hold keys opened again since
  void remember_closed_udp(const flow::FlowKey& key);
  void forget_closed_udp(const flow::FlowKey& key);
};

}  // namespace edge::net::detail
