// PROXY protocol listeners: the header a trusted balancer must send (and nobody else may), read before
// the session starts.
#include "client_connection.h"
#include "proxy_header.h"

#include <boost/asio/steady_timer.hpp>

#include <array>
#include <span>

namespace edge::net::detail {

namespace {

// One accepted connection until its first bytes say who the client is. It is
// a worker member so that stop() closes it; it reads at most kProxyHeaderMax
// bytes and lives at most header_read_timeout, then hands the socket (and
// what it read past the header) to the session or closes it.
class ProxyPreamble final : public WorkerMember, public std::enable_shared_from_this<ProxyPreamble> {
 public:
  ProxyPreamble(std::shared_ptr<State> st, Worker& w, tcp::socket sock, flow::Transport t,
                asio::ip::address peer, bool trusted, std::shared_ptr<ssl::context> tls)
      : st_(std::move(st)),
        w_(w),
        sock_(std::move(sock)),
        transport_(t),
        peer_(std::move(peer)),
        trusted_(trusted),
        tls_(std::move(tls)),
        timer_(w.ctx) {}

  void start() {
    State::join(w_, shared_from_this());
    timer_.expires_after(st_->config.limits.header_read_timeout);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->done_) return;
      if (self->trusted_) {
        self->refuse(ProxyRefusal::timeout);
      } else {
        // A direct client silent from the start: the slowloris rule, not the balancer's fault.
        self->st_->counters.read_timeouts.fetch_add(1, std::memory_order_relaxed);
        self->end();
      }
    });
    do_read();
  }

  void resume_reading() override {}
  void close_now(CloseReason) override {
    if (!done_) end();
  }

 private:
  void do_read() {
    sock_.async_read_some(asio::buffer(buf_.data() + n_, buf_.size() - n_),
                          [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                            self->on_read(ec, n);
                          });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (done_) return;
    if (ec) {
      // Gone before the stream began. A balancer's health check connects and
      // closes without a byte: nothing to count. Half a header is malformed.
      if (trusted_ && n_ > 0) {
        refuse(ProxyRefusal::malformed);
      } else {
        end();
      }
      return;
    }
    n_ += n;
    const std::span<const std::uint8_t> got(buf_.data(), n_);
    if (!trusted_) {
      switch (looks_like_proxy(got)) {
        case ProxyLook::proxy:
          refuse(ProxyRefusal::untrusted);
          return;
        case ProxyLook::need_more:
          do_read();  // a strict prefix of a signature: fewer than 12 bytes, room is left
          return;
        case ProxyLook::not_proxy:
          hand_over(std::nullopt, peer_, 0);
          return;
      }
      return;
    }
    const ProxyParse p = parse_proxy_header(got);
    switch (p.status) {
      case ProxyParse::Status::need_more:
        // parse_proxy_header refuses a v1 line past 107 bytes and a v2 length past
        // the maximum, so a full buffer here cannot happen; the check keeps the read bounded anyway.
        if (n_ == buf_.size()) {
          refuse(ProxyRefusal::malformed);
        } else {
          do_read();
        }
        return;
      case ProxyParse::Status::refused:
        refuse(p.refusal);
        return;
      case ProxyParse::Status::ok:
        break;
    }
    st_->counters.proxy_accepted.fetch_add(1, std::memory_order_relaxed);
    // LOCAL: the balancer's own connection, counted as its own source.
    const asio::ip::address client = p.header.local ? peer_ : to_asio(p.header.source);
    if (!st_->admit_source(client)) {  // counted as refused_per_address
      end();
      return;
    }
    hand_over(p.header.local ? std::nullopt : std::optional<flow::Endpoint>(p.header.source), client,
              p.consumed);
  }

  // The connection goes on as a session; `admitted` is the source it was admitted as.
  void hand_over(std::optional<flow::Endpoint> remote, const asio::ip::address& admitted,
                 std::size_t header) {
    done_ = true;
    timer_.cancel();
    State::leave(w_, this);
    Preamble pre{remote, std::string(reinterpret_cast<const char*>(buf_.data()) + header, n_ - header)};
    if (transport_ == flow::Transport::tcp || transport_ == flow::Transport::tls) {
      start_stream_connection(st_, w_, std::move(sock_), transport_, admitted, tls_, std::move(pre));
    } else {
      start_ws_connection(st_, w_, std::move(sock_), transport_, admitted, tls_, std::move(pre));
    }
  }

  void refuse(ProxyRefusal why) {
    st_->counters.proxy_refused[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
    end();
  }

  // Closes the socket and gives back what was admitted at accept.
  void end() {
    done_ = true;
    timer_.cancel();
    boost::system::error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_both, ignored);
    sock_.close(ignored);
    if (trusted_) {
      st_->release_total();
    } else {
      st_->release(peer_);
    }
    State::leave(w_, this);
  }

  std::shared_ptr<State> st_;
  Worker& w_;
  tcp::socket sock_;
  const flow::Transport transport_;
  const asio::ip::address peer_;  // the connection's own source (the balancer, when trusted)
  const bool trusted_;
  std::shared_ptr<ssl::context> tls_;
  asio::steady_timer timer_;
  std::array<std::uint8_t, kProxyHeaderMax> buf_{};
  std::size_t n_ = 0;
  bool done_ = false;
};

}  // namespace

void start_proxied_connection(const std::shared_ptr<State>& st, Worker& w, tcp::socket sock,
                              flow::Transport t, const asio::ip::address& peer, bool trusted,
                              std::shared_ptr<ssl::context> tls) {
  std::make_shared<ProxyPreamble>(st, w, std::move(sock), t, peer, trusted, std::move(tls))->start();
}

}  // namespace edge::net::detail
