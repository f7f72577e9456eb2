// Internal state shared by the transport layer's pieces: workers, counters, handler, TLS contexts.
#pragma once

#include "edge/net/sip/limits.h"
#include "edge/net/transport/config.h"
#include "edge/net/transport/flow_table.h"
#include "edge/net/transport/seam.h"
#include "edge/net/transport/transports.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace edge::net::detail {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;

flow::Endpoint to_flow(const asio::ip::address& a, std::uint16_t port);
template <class E>
flow::Endpoint to_flow(const E& ep) {
  return to_flow(ep.address(), ep.port()).unmapped();
}
asio::ip::address to_asio(const flow::Endpoint& e);

// Something on a worker that stops delivering while paused and carries on when resumed.
class Resumable {
 public:
  virtual ~Resumable() = default;
  virtual void resume_reading() = 0;  // on its worker
  virtual void close_now(CloseReason why) = 0;  // on its worker
};

struct Worker {
  explicit Worker(unsigned i) : index(i), guard(asio::make_work_guard(ctx)), sweep_timer(ctx) {}
  const unsigned index;
  asio::io_context ctx{1};  // one thread runs it: handlers need no strand
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread thread;
  std::atomic<std::size_t> load{0};  // live connections owned by this worker
  asio::steady_timer sweep_timer;
  // Touched only on this worker's thread.
  std::unordered_map<Resumable*, std::weak_ptr<Resumable>> members;
  std::vector<std::shared_ptr<Resumable>> parked;  // strong: a parked session has no pending operation holding it
  std::vector<std::shared_ptr<FlowEntry>> sweep_buf;
};

struct AtomicTransportCounters {
  std::atomic<std::uint64_t> accepted{0}, flows_opened{0}, flows_closed{0}, messages_in{0},
      messages_out{0}, bytes_in{0}, bytes_out{0}, keepalives{0}, keepalive_answers{0};
};

struct Counters {
  std::array<AtomicTransportCounters, 8> per_transport;
  std::atomic<std::uint64_t> refused_max_connections{0}, refused_per_address{0}, oversized{0},
      framing_errors{0}, read_timeouts{0}, idle_timeouts{0}, flow_timeouts{0}, udp_garbage{0},
      send_failures{0}, upgrade_refused{0}, tls_handshake_failures{0}, superseded_flows{0};
  std::atomic<std::uint64_t> core_connects{0}, core_disconnects{0}, core_messages_in{0},
      core_messages_out{0}, core_queue_full{0};
  std::atomic<bool> core_connected{false};

  AtomicTransportCounters& of(flow::Transport t) { return per_transport[static_cast<std::size_t>(t) & 7]; }
};

class CoreLink;
class Listener;

struct State {
  State(const TransportConfig& cfg, std::shared_ptr<MessageHandler> h);

  const TransportConfig config;
  const sip::Limits sip_limits;
  std::vector<std::unique_ptr<Worker>> workers;
  FlowTable table;
  Counters counters;
  Outbound* outbound = nullptr;  // the owning Transports
  std::atomic<bool> paused{false};
  std::atomic<bool> stopping{false};

  // Handler swap (controlled restart): readers take a reference per message.
  std::shared_ptr<MessageHandler> handler() const { return handler_.load(std::memory_order_acquire); }
  void set_handler(std::shared_ptr<MessageHandler> h) { handler_.store(std::move(h), std::memory_order_release); }

  std::shared_ptr<ssl::context> tls_server() const;
  std::shared_ptr<ssl::context> tls_client() const;
  void set_tls(std::shared_ptr<ssl::context> server, std::shared_ptr<ssl::context> client);

  Worker& least_loaded() noexcept;
  Worker& next_worker() noexcept;  // round-robin (listeners)

  // Connection admission (max_connections, max_per_source_address); release once per admitted one.
  bool admit(const asio::ip::address& from);
  void release(const asio::ip::address& from);
  std::size_t connections() const noexcept { return connections_.load(std::memory_order_relaxed); }

  // Creates and indexes the flow entry of a new connection or UDP peer.
  std::shared_ptr<FlowEntry> open_flow(const flow::FlowKey& key, Worker& w, std::weak_ptr<FlowLink> link);
  // Removes the flow from the table and tells the handler; once per flow, on its worker.
  void close_flow(const std::shared_ptr<FlowEntry>& entry, CloseReason why);

  void deliver(const Inbound& in);  // handler->on_message on the calling worker

  // Registers a member for pause/resume/stop on its worker (call on that worker).
  static void join(Worker& w, const std::shared_ptr<Resumable>& r) { w.members[r.get()] = r; }
  static void leave(Worker& w, Resumable* r) { w.members.erase(r); }
  static void park(Worker& w, const std::shared_ptr<Resumable>& r) { w.parked.push_back(r); }

  std::vector<std::shared_ptr<Listener>> listeners;
  std::vector<BoundListener> bound;
  std::shared_ptr<CoreLink> core;

 private:
  std::atomic<std::shared_ptr<MessageHandler>> handler_;
  mutable std::mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_server_, tls_client_;
  std::mutex addr_mu_;
  std::unordered_map<flow::Endpoint, std::size_t, flow::EndpointHash> per_address_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<unsigned> rr_{0};
};

// A growable read buffer for stream framing: starts small (most phones send a
// few KiB), grows up to the message limit, and is reused for every message.
class FrameBuffer {
 public:
  explicit FrameBuffer(std::size_t max_message) : max_(max_message), buf_(std::min<std::size_t>(4096, max_message)) {}
  // Free space to read into; empty when the buffer holds max bytes of an unfinished message.
  asio::mutable_buffer prepare();
  void commit(std::size_t n) noexcept { end_ += n; }
  std::string_view data() const noexcept { return {buf_.data() + begin_, end_ - begin_}; }
  void consume(std::size_t n) noexcept;
  bool empty() const noexcept { return begin_ == end_; }

  std::size_t scanned = 0;  // framer resume point for the message at data()

 private:
  std::size_t max_;
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0;
};

// TLS contexts from configuration; throw TransportError naming the file.
std::shared_ptr<ssl::context> make_server_tls(const TlsConfig& cfg);
std::shared_ptr<ssl::context> make_client_tls(const TlsConfig& cfg, const CoreConfig& core);

// A 400/513 for the framing error at the start of `bytes`, if enough of the
// request parses to address a response; empty otherwise.
std::string error_response(std::string_view bytes, int status, const TransportConfig& cfg);

}  // namespace edge::net::detail
