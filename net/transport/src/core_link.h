// Internal: the persistent connection to the core next hop (TCP, TLS or UDP), reconnecting with back-off.
#pragma once

#include "address.h"
#include "state.h"
#include "stream_framer.h"
#include "tls_context.h"
#include "worker.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edge::net::detail {

// Lives on one worker. Messages wait in one bounded queue until they are
// written completely, so a message cut off by a disconnect is sent again, whole,
// on the next connection, unless it waited longer than core.max_queue_age (then
// it is dropped: nothing stale reaches the core). While the link is down
// send() refuses at once (the proxy answers 503). On TCP/TLS a CRLFCRLF ping
// every keepalive_interval must be answered within keepalive_timeout (RFC 5626
// §4.4.1), so a core that stopped answering is dropped within both.
//
// With core.health_interval it also pings its core with OPTIONS (as Kamailio's
// dispatcher does) and keeps the verdict (state()), by which Transports
// chooses the core for a new request. A UDP core is pinged from the UDP
// listener it is sent from (its answers come back there), others over the link.
class CoreLink final : public WorkerMember, public std::enable_shared_from_this<CoreLink> {
 public:
  // index: position in core_targets(); target: that core.
  CoreLink(std::shared_ptr<State> st, Worker& w, std::size_t index, const CoreTarget& target);
  void start();                  // any thread
  bool send(std::string bytes);  // any thread; false when the queue is full
  // The health verdict now (any thread); see CoreState.
  CoreState state() const noexcept;
  bool link_up() const noexcept { return up_.load(std::memory_order_acquire); }
  // The first connection attempt since start is still under way (messages may queue).
  bool first_attempt() const noexcept { return first_attempt_.load(std::memory_order_acquire); }
  const CoreTarget& target() const noexcept { return target_; }
  std::size_t index() const noexcept { return index_; }
  // A UDP core sent to from this listener (Transports::start sets it before start()).
  std::shared_ptr<Listener> udp_listener;
  flow::Endpoint udp_listener_local{};
  // The answer to one of our health OPTIONS (its CSeq number); any thread.
  void health_answer(std::uint32_t seq, int status);
  CoreStats stats() const;
  void count_in();  // a message from this core (any thread)
  // Per-core counters the transport bumps for sends it makes itself (UDP listener).
  std::atomic<std::uint64_t> messages_out{0}, requests{0};
  void resume_reading() override;
  void close_now(CloseReason why) override;
  Worker& worker() const noexcept { return w_; }
  // Messages waiting to be written to the core now (any thread).
  std::size_t queued() const noexcept { return queued_.load(std::memory_order_relaxed); }

 private:
  void connect();
  void on_connected(unsigned gen);
  void do_read(unsigned gen);
  void on_read(unsigned gen, const boost::system::error_code& ec, std::size_t n);
  void process(unsigned gen);
  void enqueue(std::string bytes, Clock::time_point at);
  void enqueue_front_pong();
  void write_next();
  void drop_stale();
  void arm_keepalive(unsigned gen);
  void on_keepalive_timer(unsigned gen);
  void heard_from_core();
  void set_up();  // the core answered (or no pings are asked for): sends may come
  void arm_health();
  void on_health_timer();
  void send_health_ping();
  void health_failed(const std::string& why);
  void set_error(std::string why);
  bool health_on() const noexcept { return cfg_.health_interval.count() > 0; }
  bool pinging() const noexcept { return !udp_ && cfg_.keepalive_interval.count() > 0; }
  // abortive: RST instead of FIN, so the kernel sends none of what is still
  // buffered (a core found dead must not get stale messages when it wakes).
  // why: the link's last error when it was up ("connection lost" unless known better).
  void drop_connection(bool abortive = false, std::string_view why = "connection lost");
  void deliver(std::string_view bytes);
  void expect_identity(ssl::stream<tcp::socket>& s);  // SNI, the name to check
  void refuse_identity(const std::string& why);       // counted, kept for stats()
  template <class F>
  void with_stream(F&& f);
  struct Framing;  // what the framer calls back

  std::shared_ptr<State> st_;
  Worker& w_;
  const std::size_t index_;
  const CoreTarget target_;
  const CoreConfig cfg_;         // the shared settings, transport/address/port of this core
  asio::steady_timer timer_;     // reconnect back-off and connect deadline
  asio::steady_timer ka_timer_;  // keep-alive: next ping, then the pong deadline
  std::optional<tcp::socket> tcp_;
  std::optional<ssl::stream<tcp::socket>> tls_;
  std::shared_ptr<ssl::context> tls_ctx_;
  std::optional<udp::socket> udp_;
  StreamFramer framer_;  // TCP / TLS
  std::vector<char> dgram_;
  struct Queued {
    std::string bytes;
    Clock::time_point at;  // when send() took it
    bool ping = false;     // a health OPTIONS (not counted as a message)
  };
  asio::steady_timer hc_timer_;              // health: the next OPTIONS
  std::uint32_t hc_seq_ = 0;                 // CSeq of the last OPTIONS
  std::atomic<bool> hc_outstanding_{false};  // the last OPTIONS awaits its answer
  std::atomic<bool> healthy_{false};         // the last verdict was "alive"
  std::atomic<unsigned> hc_failures_{0};     // in a row
  std::atomic<bool> ever_up_{false};
  std::string call_id_;  // of our OPTIONS
  mutable std::mutex err_mu_;
  std::string last_error_;
  std::atomic<std::uint64_t> messages_in_{0}, connects_{0}, disconnects_{0}, pings_{0}, answers_{0},
      failures_total_{0}, ka_timeouts_{0};
  std::deque<Queued> queue_;
  std::atomic<std::size_t> queued_{0};
  std::chrono::milliseconds backoff_;
  std::optional<Sha256> pin_;  // core.tls_pin_sha256
  flow::FlowKey key_;
  std::size_t pongs_ = 0;        // CRLF answers owed to the core's CRLFCRLF pings
  bool ping_owed_ = false;       // our CRLFCRLF waits to be written
  bool awaiting_pong_ = false;   // a ping went out (or waits); nothing heard since
  std::atomic<bool> up_{false};  // connected (and the first ping answered), for send() on any thread
  std::atomic<bool> first_attempt_{true};  // the first connection attempt since start is under way
  std::size_t parked_dgram_ = 0;           // size of a UDP datagram held while paused
  unsigned gen_ = 0;                       // bumps on every (re)connect; stale handlers compare and leave
  bool connected_ = false, writing_ = false, closed_ = false, parked_ = false;
};

}  // namespace edge::net::detail
