// The stream acceptor (TCP, TLS, WS, WSS): admits each connection and starts it on the least-loaded worker.
#include "client_connection.h"
#include "listener.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>

namespace edge::net::detail {

namespace {

class StreamListener final : public Listener, public std::enable_shared_from_this<StreamListener> {
 public:
  StreamListener(std::shared_ptr<State> st, Worker& w, const ListenerConfig& cfg)
      : st_(std::move(st)), w_(w), cfg_(cfg), acceptor_(w.ctx), retry_(w.ctx) {}

  void bind() {
    const tcp::endpoint ep(parse_address(cfg_), cfg_.port);
    boost::system::error_code ec;
    bind_stream(acceptor_, ep, ec, st_->config.freebind);
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
    // A trusted balancer's connection counts toward the total now and toward
    // its client's source once the PROXY header names it.
    const bool trusted = !rec && cfg_.proxy_protocol && st_->trusted_proxy(remote.address());
    if (rec || !(trusted ? st_->admit_total() : st_->admit(remote.address()))) {
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
    const bool proxy = cfg_.proxy_protocol;
    asio::post(target.ctx, [st, &target, t, tls, peer, proxy, trusted, s = std::move(sock)]() mutable {
      if (st->stopping.load(std::memory_order_acquire)) {
        boost::system::error_code ignored;
        s.close(ignored);
        if (trusted) {
          st->release_total();
        } else {
          st->release(peer);
        }
        return;
      }
      if (proxy) {
        start_proxied_connection(st, target, std::move(s), t, peer, trusted, tls);
      } else if (t == flow::Transport::tcp || t == flow::Transport::tls) {
        start_stream_connection(st, target, std::move(s), t, peer, tls);
      } else {
        start_ws_connection(st, target, std::move(s), t, peer, tls);
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
