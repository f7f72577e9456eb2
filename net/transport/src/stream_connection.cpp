// TCP and TLS client connections: framed by StreamFramer, CRLFCRLF pong, 400/513 then close on errors.
#include "client_connection.h"
#include "error_response.h"
#include "stream_framer.h"
#include "tls_context.h"

#include "edge/net/sip/error.h"

#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <type_traits>

namespace edge::net::detail {

namespace {

constexpr std::string_view kPong = "\r\n";

template <class Stream>
class StreamConnection final : public ClientConnection {
  static constexpr bool kTls = !std::is_same_v<Stream, tcp::socket>;

 public:
  template <class... Args>
  StreamConnection(std::shared_ptr<State> st, Worker& w, flow::Transport t, asio::ip::address peer,
                   Args&&... args)
      : ClientConnection(std::move(st), w, t, std::move(peer)),
        stream_(std::forward<Args>(args)...),
        framer_(st_->sip_limits) {}

  void start() override {
    if constexpr (kTls) {
      // The handshake counts as the header section: a client that stalls in it is closed.
      arm_deadline(st_->config.limits.header_read_timeout);
      // Bytes read behind a PROXY header are the start of the ClientHello.
      stream_.async_handshake(ssl::stream_base::server, asio::buffer(preread_),
                              [self = shared(), this](const boost::system::error_code& ec, std::size_t) {
                                if (closed_) return;
                                if (ec) {
                                  st_->counters.tls_handshake_failures.fetch_add(1,
                                                                                 std::memory_order_relaxed);
                                  close_now(CloseReason::io_error);
                                  return;
                                }
                                entry_->clear_read_deadline();
                                preread_.clear();
                                if (st_->core_ip(entry_->key.remote))
                                  core_address_ = core_certificate(stream_.native_handle(), st_->config);
                                do_read();
                              });
    } else if (!preread_.empty()) {
      // Read behind a PROXY header: framed as if this read had returned them.
      const auto room = framer_.prepare();
      const std::size_t n = asio::buffer_copy(room, asio::buffer(preread_));
      framer_.commit(n);
      preread_.clear();
      process();
    } else {
      do_read();
    }
  }

  void resume_reading() override {
    if (closed_) return;
    process();
  }

 private:
  std::shared_ptr<StreamConnection> shared() {
    return std::static_pointer_cast<StreamConnection>(shared_from_this());
  }

  void do_read() {
    stream_.async_read_some(framer_.prepare(), [self = shared(), this](const boost::system::error_code& ec,
                                                                       std::size_t n) { on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (closed_ || closing_after_write_) return;
    if (ec) {
      close_now(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ? CloseReason::peer_closed
                                                                                   : CloseReason::io_error);
      return;
    }
    framer_.commit(n);
    process();
  }

  // Frames everything buffered; then reads more unless paused, failed or closed.
  void process() {
    Framing cb{*this};
    if (framer_.drain(cb) == Drained::read_more) do_read();
  }

  // What the framer calls back.
  struct Framing {
    StreamConnection& c;

    bool on_message(std::string_view m) {
      if (c.park_if_paused()) return false;  // stays buffered; resume_reading() delivers it
      c.deliver(m);
      return !c.closed_;  // the handler may have caused a close
    }

    void on_keepalive(KeepAlive k) {
      c.touch();
      if (k != KeepAlive::ping) return;
      // RFC 5626 §5.4: answer a CRLFCRLF ping with one CRLF, at once. A
      // pong still queued answers every ping read before it leaves, so a
      // burst of pings costs one queued CRLF, not one each (a client
      // sending 100,000 CRLFs must not fill the write queue that its own
      // responses need).
      auto& n = c.st_->counters.of(c.transport_);
      n.keepalives.fetch_add(1, std::memory_order_relaxed);
      if (c.writes_.empty() || c.writes_.back() != kPong) {
        n.keepalive_answers.fetch_add(1, std::memory_order_relaxed);
        c.queued_.fetch_add(1, std::memory_order_relaxed);
        c.enqueue(std::string(kPong));
      }
    }

    // Slowloris: a message must complete its header section, then its body, in time.
    void on_phase(ReadPhase p) {
      const auto& lim = c.st_->config.limits;
      switch (p) {
        case ReadPhase::idle:
          c.entry_->clear_read_deadline();
          break;
        case ReadPhase::header:
          c.arm_deadline(lim.header_read_timeout);
          break;
        case ReadPhase::body:
          c.arm_deadline(lim.body_read_timeout);
          break;
      }
    }

    void on_error(const FramingError& e) { c.fail(e); }
  };

  // Answers 400/513 when the request can be addressed, then closes.
  void fail(const FramingError& e) {
    (e.oversized ? st_->counters.oversized : st_->counters.framing_errors)
        .fetch_add(1, std::memory_order_relaxed);
    const CloseReason why = e.oversized ? CloseReason::oversized : CloseReason::framing_error;
    std::string answer = error_response(e.bytes, e.status, st_->config);
    if (answer.empty()) {
      close_now(why);
      return;
    }
    queued_.fetch_add(1, std::memory_order_relaxed);
    enqueue(std::move(answer));
    close_after_write(why);
  }

  // Everything queued (up to kMaxGather messages) leaves in one write: one
  // writev for TCP instead of a syscall per message when the proxy queued
  // several (a burst toward one client, an ACK right behind a 200 OK).
  void start_write() override {
    in_flight_ = std::min(writes_.size(), kMaxGather);
    for (std::size_t i = 0; i < in_flight_; ++i) gather_[i] = asio::buffer(writes_[i]);
    asio::async_write(
        stream_, BufferView{gather_.data(), gather_.data() + in_flight_},
        [self = shared(), this](const boost::system::error_code& ec, std::size_t n) { on_write(ec, n); });
  }

  void close_socket() noexcept override {
    // No TLS close_notify: a peer that does not answer it would hold the
    // connection; SIP over TLS does not rely on it (a message is framed by Content-Length).
    boost::system::error_code ec;
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ec);
    stream_.lowest_layer().close(ec);
  }

  static constexpr std::size_t kMaxGather = 32;
  // A buffer sequence over gather_ that copies as two pointers (async_write keeps a copy).
  struct BufferView {
    const asio::const_buffer* first;
    const asio::const_buffer* last;
    const asio::const_buffer* begin() const { return first; }
    const asio::const_buffer* end() const { return last; }
  };

  Stream stream_;
  std::array<asio::const_buffer, kMaxGather> gather_{};
  StreamFramer framer_;
};

}  // namespace

void start_stream_connection(const std::shared_ptr<State>& st, Worker& w, tcp::socket sock, flow::Transport t,
                             const asio::ip::address& peer, std::shared_ptr<ssl::context> tls, Preamble pre) {
  launch_plain_or_tls<StreamConnection>(st, w, std::move(sock), t, peer, std::move(tls), std::move(pre));
}

}  // namespace edge::net::detail
