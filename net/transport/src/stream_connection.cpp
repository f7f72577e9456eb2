// TCP and TLS client connections (Content-Length framing, CRLFCRLF pong) and the stream acceptor.
#include "session.h"

#include "edge/net/sip/error.h"
#include "edge/net/sip/message.h"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <type_traits>

namespace edge::net::detail {

constexpr std::string_view kPong = "\r\n";

namespace {

template <class Stream>
class StreamSession final : public SessionBase {
  static constexpr bool kTls = !std::is_same_v<Stream, tcp::socket>;

 public:
  template <class... Args>
  StreamSession(std::shared_ptr<State> st, Worker& w, flow::Transport t, asio::ip::address peer,
                Args&&... args)
      : SessionBase(std::move(st), w, t, std::move(peer)),
        stream_(std::forward<Args>(args)...),
        buf_(st_->config.limits.max_message_size) {}

  void start() override {
    if constexpr (kTls) {
      // The handshake counts as the header section: a client that stalls in it is closed.
      arm_deadline(st_->config.limits.header_read_timeout);
      stream_.async_handshake(
          ssl::stream_base::server, [self = shared(), this](const boost::system::error_code& ec) {
            if (closed_) return;
            if (ec) {
              st_->counters.tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
              close_now(CloseReason::io_error);
              return;
            }
            entry_->clear_read_deadline();
            do_read();
          });
    } else {
      do_read();
    }
  }

  void resume_reading() override {
    if (closed_) return;
    process();
  }

 private:
  std::shared_ptr<StreamSession> shared() {
    return std::static_pointer_cast<StreamSession>(shared_from_this());
  }

  void do_read() {
    auto space = buf_.prepare();
    if (space.size() == 0) {  // the framer refuses before this; keep the guard anyway
      fail(sip::Error::message_too_large);
      return;
    }
    stream_.async_read_some(space, [self = shared(), this](const boost::system::error_code& ec,
                                                           std::size_t n) { on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (closed_ || closing_after_write_) return;
    if (ec) {
      close_now(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ? CloseReason::peer_closed
                                                                                   : CloseReason::io_error);
      return;
    }
    buf_.commit(n);
    process();
  }

  // Frames everything buffered; then reads more unless paused, failed or closed.
  void process() {
    const auto& lim = st_->config.limits;
    for (;;) {
      std::string_view data = buf_.data();
      if (data.empty()) {
        in_message_ = in_body_ = false;
        entry_->clear_read_deadline();
        break;
      }
      const sip::Frame f = sip::frame_stream(data, st_->sip_limits, buf_.scanned);
      switch (f.status) {
        case sip::FrameStatus::keep_alive: {
          // RFC 5626 §5.4: answer a CRLFCRLF ping with one CRLF, at once. A
          // pong still queued answers every ping read before it leaves, so a
          // burst of pings costs one queued CRLF, not one each (a client
          // sending 100,000 CRLFs must not fill the write queue that its own
          // responses need).
          auto& c = st_->counters.of(transport_);
          c.keepalives.fetch_add(1, std::memory_order_relaxed);
          touch();
          if (writes_.empty() || writes_.back() != kPong) {
            c.keepalive_answers.fetch_add(1, std::memory_order_relaxed);
            queued_.fetch_add(1, std::memory_order_relaxed);
            enqueue(std::string(kPong));
          }
          buf_.consume(f.size);
          continue;
        }
        case sip::FrameStatus::stray_crlf:
          touch();
          buf_.consume(f.size);
          continue;
        case sip::FrameStatus::message:
          if (park_if_paused()) return;
          deliver(data.substr(0, f.size));
          if (closed_) return;  // the handler may have caused a close
          buf_.consume(f.size);
          in_message_ = in_body_ = false;
          continue;
        case sip::FrameStatus::need_more:
          if (!in_message_) {
            in_message_ = true;
            arm_deadline(lim.header_read_timeout);
          }
          if (f.size != 0 && !in_body_) {
            in_body_ = true;
            arm_deadline(lim.body_read_timeout);
          }
          buf_.scanned = f.scanned;
          do_read();
          return;
        case sip::FrameStatus::error:
          fail(f.error);
          return;
      }
    }
    do_read();
  }

  void fail(sip::Error e) {
    const bool too_big = e == sip::Error::message_too_large || e == sip::Error::content_length_too_large;
    (too_big ? st_->counters.oversized : st_->counters.framing_errors)
        .fetch_add(1, std::memory_order_relaxed);
    const CloseReason why = too_big ? CloseReason::oversized : CloseReason::framing_error;
    std::string answer = error_response(buf_.data(), sip::suggested_status(e), st_->config);
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
  FrameBuffer buf_;
  bool in_message_ = false, in_body_ = false;
};

class StreamListener final : public Listener, public std::enable_shared_from_this<StreamListener> {
 public:
  StreamListener(std::shared_ptr<State> st, Worker& w, const ListenerConfig& cfg)
      : st_(std::move(st)), w_(w), cfg_(cfg), acceptor_(w.ctx), retry_(w.ctx) {}

  void bind() {
    const auto addr = parse_address(cfg_);
    const tcp::endpoint ep(addr, cfg_.port);
    boost::system::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && addr.is_v6()) acceptor_.set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw_bind_error(cfg_, ec);
    local_ = to_flow(acceptor_.local_endpoint());
  }

  void start() {
    asio::post(w_.ctx, [self = shared_from_this()] {
      State::join(self->w_, self);
      self->do_accept();
    });
  }

  BoundListener bound() const override { return {cfg_.transport, local_}; }
  void resume_reading() override {}
  void close_now(CloseReason) override {
    closed_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
    State::leave(w_, this);
  }

 private:
  void do_accept() {
    if (closed_) return;
    // Accept straight onto the least-loaded worker's io_context: the socket
    // never migrates afterwards.
    Worker& target = st_->least_loaded();
    acceptor_.async_accept(target.ctx, [self = shared_from_this(), &target](
                                           const boost::system::error_code& ec, tcp::socket sock) {
      self->on_accept(ec, std::move(sock), target);
    });
  }

  void on_accept(const boost::system::error_code& ec, tcp::socket sock, Worker& target) {
    if (closed_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning.
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
        if (!e) self->do_accept();
      });
      return;
    }
    boost::system::error_code rec;
    const auto remote = sock.remote_endpoint(rec);
    if (rec || !st_->admit(remote.address())) {
      // Refused at once: the socket is closed before any byte is read.
      boost::system::error_code ignored;
      sock.close(ignored);
      do_accept();
      return;
    }
    // SIP is request/response: a message must leave at once, not wait for the
    // peer's delayed ACK of the previous one (Nagle + delayed ACK cost an ACK
    // sent right after a 200 OK, or a BYE right after an ACK, 40 ms).
    sock.set_option(tcp::no_delay(true), rec);
    const auto t = cfg_.transport;
    auto st = st_;
    std::shared_ptr<ssl::context> tls;
    if (t == flow::Transport::tls || t == flow::Transport::wss) tls = st_->tls_server();
    const auto peer = remote.address();
    asio::post(target.ctx, [st, &target, t, tls, peer, s = std::move(sock)]() mutable {
      if (st->stopping.load(std::memory_order_acquire)) {
        boost::system::error_code ignored;
        s.close(ignored);
        st->release(peer);
        return;
      }
      if (t == flow::Transport::tcp) {
        launch<StreamSession<tcp::socket>>(st, target, t, s, peer, nullptr, std::move(s));
      } else if (t == flow::Transport::tls) {
        launch<StreamSession<ssl::stream<tcp::socket>>>(st, target, t, s, peer, tls, std::move(s), *tls);
      } else {
        start_ws_session(st, target, std::move(s), t, peer, tls);
      }
    });
    do_accept();
  }

  std::shared_ptr<State> st_;
  Worker& w_;
  ListenerConfig cfg_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  flow::Endpoint local_;
  bool closed_ = false;
};

}  // namespace

std::shared_ptr<Listener> make_stream_listener(const std::shared_ptr<State>& st, Worker& w,
                                               const ListenerConfig& cfg) {
  auto l = std::make_shared<StreamListener>(st, w, cfg);
  l->bind();
  l->start();
  return l;
}

}  // namespace edge::net::detail
