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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edge::net::detail {

// Lives on one worker. Messages wait in one bounded queue until they are
// written completely, so a message cut off by a disconnect is sent again, whole,
// on the next connection.
class CoreLink final : public WorkerMember, public std::enable_shared_from_this<CoreLink> {
 public:
  CoreLink(std::shared_ptr<State> st, Worker& w);
  void start();                  // any thread
  bool send(std::string bytes);  // any thread; false when the queue is full
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
  void enqueue(std::string bytes);
  void enqueue_front_pong();
  void write_next();
  void drop_connection();
  void deliver(std::string_view bytes);
  void expect_identity(ssl::stream<tcp::socket>& s);  // SNI, the name to check
  void refuse_identity(const std::string& why);       // counted, kept for stats()
  template <class F>
  void with_stream(F&& f);
  struct Framing;  // what the framer calls back

  std::shared_ptr<State> st_;
  Worker& w_;
  const CoreConfig cfg_;
  asio::steady_timer timer_;  // reconnect back-off and connect deadline
  std::optional<tcp::socket> tcp_;
  std::optional<ssl::stream<tcp::socket>> tls_;
  std::shared_ptr<ssl::context> tls_ctx_;
  std::optional<udp::socket> udp_;
  StreamFramer framer_;  // TCP / TLS
  std::vector<char> dgram_;
  std::deque<std::string> queue_;
  std::atomic<std::size_t> queued_{0};
  std::chrono::milliseconds backoff_;
  std::optional<Sha256> pin_;  // core.tls_pin_sha256
  flow::FlowKey key_;
  std::size_t pongs_ = 0;         // CRLF answers owed to the core's CRLFCRLF pings
  std::size_t parked_dgram_ = 0;  // size of a UDP datagram held while paused
  unsigned gen_ = 0;              // bumps on every (re)connect; stale handlers compare and leave
  bool connected_ = false, writing_ = false, closed_ = false, parked_ = false;
};

}  // namespace edge::net::detail
