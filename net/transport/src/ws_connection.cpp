// WS and WSS client connections (RFC 7118): HTTP upgrade with "sip" subprotocol, one SIP message per WS
// message.
#include "client_connection.h"
#include "ws_framing.h"

#include "edge/net/sip/utf8.h"

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <type_traits>

namespace edge::net::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

namespace {

template <class Next>
class WsConnection final : public ClientConnection {
  static constexpr bool kTls = !std::is_same_v<Next, tcp::socket>;

 public:
  template <class... Args>
  WsConnection(std::shared_ptr<State> st, Worker& w, flow::Transport t, asio::ip::address peer,
               Args&&... args)
      : ClientConnection(std::move(st), w, t, std::move(peer)), ws_(std::forward<Args>(args)...) {}

  void start() override {
    // TLS handshake and HTTP upgrade both count as the header section.
    arm_deadline(st_->config.limits.header_read_timeout);
    if constexpr (kTls) {
      // Bytes read behind a PROXY header are the start of the ClientHello.
      ws_.next_layer().async_handshake(
          ssl::stream_base::server, asio::buffer(preread_),
          [self = shared(), this](const boost::system::error_code& ec, std::size_t) {
            if (closed_) return;
            preread_.clear();
            if (ec) {
              st_->counters.tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
              close_now(CloseReason::io_error);
              return;
            }
            read_upgrade();
          });
    } else {
      // Read behind a PROXY header: the start of the HTTP upgrade.
      buf_.commit(asio::buffer_copy(buf_.prepare(preread_.size()), asio::buffer(preread_)));
      preread_.clear();
      read_upgrade();
    }
  }

  void resume_reading() override {
    if (closed_ || !parked_message_) return;
    parked_message_ = false;
    on_message();
  }

 private:
  std::shared_ptr<WsConnection> shared() {
    return std::static_pointer_cast<WsConnection>(shared_from_this());
  }

  void read_upgrade() {
    parser_.emplace();
    parser_->header_limit(8192);
    parser_->body_limit(0);
    http::async_read(
        ws_.next_layer(), buf_, *parser_,
        [self = shared(), this](const boost::system::error_code& ec, std::size_t) {
          if (closed_) return;
          if (ec) {
            close_now(ec == http::error::end_of_stream ? CloseReason::peer_closed : CloseReason::io_error);
            return;
          }
          on_upgrade();
        });
  }

  void on_upgrade() {
    auto& req = parser_->get();
    const auto proto = req[http::field::sec_websocket_protocol];
    if (!websocket::is_upgrade(req) || !offers_sip(std::string_view(proto.data(), proto.size()))) {
      // RFC 7118 §4.1: the "sip" subprotocol is mandatory; refuse anything else.
      st_->counters.upgrade_refused.fetch_add(1, std::memory_order_relaxed);
      refusal_.version(req.version());
      refusal_.result(websocket::is_upgrade(req) ? http::status::bad_request
                                                 : http::status::upgrade_required);
      refusal_.set(http::field::connection, "close");
      refusal_.body() = "WebSocket upgrade with Sec-WebSocket-Protocol: sip required\r\n";
      refusal_.prepare_payload();
      http::async_write(ws_.next_layer(), refusal_,
                        [self = shared(), this](const boost::system::error_code&, std::size_t) {
                          close_now(CloseReason::bad_upgrade);
                        });
      return;
    }
    configure_sip_websocket(ws_, st_->config.limits.max_message_size);
    // Pings are answered by Beast inside the read; they also prove the flow alive.
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::ping) {
        st_->counters.of(transport_).keepalives.fetch_add(1, std::memory_order_relaxed);
        touch();
      }
    });
    ws_.async_accept(req, [self = shared(), this](const boost::system::error_code& ec) {
      if (closed_) return;
      if (ec) {
        st_->counters.upgrade_refused.fetch_add(1, std::memory_order_relaxed);
        close_now(CloseReason::bad_upgrade);
        return;
      }
      parser_.reset();
      buf_.consume(buf_.size());
      entry_->clear_read_deadline();
      open_ = true;
      if (!writes_.empty() && !writing_) {
        writing_ = true;
        start_write();
      }
      do_read();
    });
  }

  void do_read() {
    ws_.async_read(buf_, [self = shared(), this](const boost::system::error_code& ec, std::size_t) {
      if (closed_) return;
      if (ec) {
        if (ec == websocket::error::message_too_big) {
          st_->counters.oversized.fetch_add(1, std::memory_order_relaxed);
          close_now(CloseReason::oversized);
        } else {
          close_now(ec == websocket::error::closed ? CloseReason::peer_closed : CloseReason::io_error);
        }
        return;
      }
      on_message();
    });
  }

  void on_message() {
    const auto d = buf_.cdata();
    const std::string_view msg(static_cast<const char*>(d.data()), d.size());
    if (only_crlf(msg)) {
      // A CRLF keep-alive inside a WS message: answer it like on a stream.
      auto& c = st_->counters.of(transport_);
      c.keepalives.fetch_add(1, std::memory_order_relaxed);
      c.keepalive_answers.fetch_add(1, std::memory_order_relaxed);
      touch();
      queued_.fetch_add(1, std::memory_order_relaxed);
      enqueue(std::string("\r\n"));
    } else {
      if (park_if_paused()) {
        parked_message_ = true;
        return;
      }
      deliver(msg);
      if (closed_) return;
    }
    buf_.consume(buf_.size());  // the buffer's storage is reused for the next message
    do_read();
  }

  void start_write() override {
    if (!open_) {  // queued before the upgrade finished: written right after it
      writing_ = false;
      return;
    }
    in_flight_ = 1;  // one SIP message per WebSocket message
    // RFC 7118 §4.2: a text frame must hold UTF-8 (RFC 6455 §8.1: the peer fails the
    // connection otherwise); a message with other octets (a binary body, a Latin-1 display
    // name passed on as it came) goes in a binary frame.
    ws_.text(sip::is_utf8(writes_.front()));
    ws_.async_write(
        asio::buffer(writes_.front()),
        [self = shared(), this](const boost::system::error_code& ec, std::size_t n) { on_write(ec, n); });
  }

  void close_socket() noexcept override {
    boost::system::error_code ec;
    auto& sock = beast::get_lowest_layer(ws_);
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
  }

  websocket::stream<Next> ws_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::response<http::string_body> refusal_;
  bool open_ = false;
  bool parked_message_ = false;
};

}  // namespace

void start_ws_connection(const std::shared_ptr<State>& st, Worker& w, tcp::socket sock, flow::Transport t,
                         const asio::ip::address& peer, std::shared_ptr<ssl::context> tls, Preamble pre) {
  launch_plain_or_tls<WsConnection>(st, w, std::move(sock), t, peer, std::move(tls), std::move(pre));
}

}  // namespace edge::net::detail
