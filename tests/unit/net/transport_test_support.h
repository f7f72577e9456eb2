// Helpers for the transport tests: a recording MessageHandler, loopback clients with timeouts, test
// certificates.
#pragma once

#include "edge/net/transport/transports.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace edge::net::test {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

// A minimal, valid SIP request (Content-Length framed).
inline std::string sip_request(const std::string& method, const std::string& call_id,
                               const std::string& body = {}) {
  std::string m = method +
                  " sip:bob@example.test SIP/2.0\r\n"
                  "Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-" +
                  call_id +
                  "\r\n"
                  "Max-Forwards: 70\r\n"
                  "From: <sip:alice@example.test>;tag=a1\r\n"
                  "To: <sip:bob@example.test>\r\n"
                  "Call-ID: " +
                  call_id +
                  "\r\n"
                  "CSeq: 1 " +
                  method +
                  "\r\n"
                  "Content-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n" + body;
  return m;
}

struct Received {
  FlowKey flow;
  bool from_core = false;
  std::string bytes;
  bool core_address = false;  // Inbound::core_address
};

// Records what the transport layer delivers; optionally answers every message
// from a client on its own flow ("echo") and forwards nothing.
class RecordingHandler final : public MessageHandler {
 public:
  std::string echo_prefix;  // non-empty: send echo_prefix + message back on the same flow

  void on_message(const Inbound& in, Network& out) override {
    {
      std::lock_guard lock(mu_);
      messages_.push_back({in.flow, in.from_core, std::string(in.bytes), in.core_address});
    }
    cv_.notify_all();
    if (!echo_prefix.empty() && !in.from_core) out.send_to_flow(in.flow, echo_prefix + std::string(in.bytes));
  }
  void on_flow_closed(const FlowKey& flow) override {
    {
      std::lock_guard lock(mu_);
      closed_.push_back(flow);
    }
    cv_.notify_all();
  }

  bool wait_messages(std::size_t n, ms t = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, t, [&] { return messages_.size() >= n; });
  }
  bool wait_closed(const FlowKey& k, ms t = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, t, [&] {
      for (const auto& c : closed_)
        if (c == k) return true;
      return false;
    });
  }
  std::vector<Received> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  std::vector<FlowKey> closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }
  std::size_t closed_count(const FlowKey& k) const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& c : closed_) n += c == k;
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Received> messages_;
  std::vector<FlowKey> closed_;
};

// Polls `pred` until it holds or `t` passes (bounded; for state another thread changes).
inline bool eventually(const std::function<bool()>& pred, ms t = 5s) {
  const auto end = std::chrono::steady_clock::now() + t;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// Short timeouts so the tests run in a second or two.
inline TransportConfig test_config(std::vector<ListenerConfig> listeners) {
  TransportConfig c;
  c.listeners = std::move(listeners);
  c.workers = 2;
  c.limits.sweep_interval = 20ms;
  c.limits.header_read_timeout = 2s;
  c.limits.body_read_timeout = 2s;
  c.limits.idle_timeout = 30s;
  c.limits.flow_timeout_grace = 1s;
  return c;
}

inline ListenerConfig listen(flow::Transport t, const std::string& addr = "127.0.0.1") {
  return {t, addr, 0};
}

// --- async operations with a deadline, on a client-side io_context -----------

struct OpState {
  bool done = false;
  boost::system::error_code ec;
  std::size_t n = 0;
};
struct OpHandler {
  std::shared_ptr<OpState> s;
  void operator()(const boost::system::error_code& ec) const {
    s->done = true;
    s->ec = ec;
  }
  void operator()(const boost::system::error_code& ec, std::size_t n) const {
    s->done = true;
    s->ec = ec;
    s->n = n;
  }
};

// Starts an operation and runs `io` until it completes or the time is up
// (then ec = timed_out and the operation is still pending: close the socket).
template <class Start>
OpState run_op(asio::io_context& io, Start&& start, ms t = 5s) {
  auto st = std::make_shared<OpState>();
  start(OpHandler{st});
  const auto end = std::chrono::steady_clock::now() + t;
  while (!st->done) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= end) {
      OpState r;
      r.ec = asio::error::timed_out;
      return r;
    }
    io.restart();
    io.run_one_for(end - now);
  }
  return *st;
}

inline tcp::endpoint ep(const std::string& addr, std::uint16_t port) {
  return {asio::ip::make_address(addr), port};
}

// A client on a TCP or TLS stream.
template <class Stream>
class StreamClient {
 public:
  template <class... Args>
  explicit StreamClient(Args&&... args) : s(io, std::forward<Args>(args)...) {}

  // `preamble`: bytes written right after the TCP connect, before any TLS (a PROXY protocol header).
  bool connect(const tcp::endpoint& to, std::string_view preamble = {}) {
    auto r = run_op(io, [&](OpHandler h) { s.lowest_layer().async_connect(to, h); });
    if (r.ec) return false;
    if (!preamble.empty()) {
      auto w = run_op(io, [&](OpHandler h) {
        asio::async_write(beast::get_lowest_layer(s), asio::buffer(preamble.data(), preamble.size()), h);
      });
      if (w.ec) return false;
    }
    if constexpr (!std::is_same_v<Stream, tcp::socket>) {
      auto hs = run_op(io, [&](OpHandler h) { s.async_handshake(ssl::stream_base::client, h); });
      if (hs.ec) return false;
    }
    return true;
  }
  bool write(std::string_view data) {
    auto r =
        run_op(io, [&](OpHandler h) { asio::async_write(s, asio::buffer(data.data(), data.size()), h); });
    return !r.ec;
  }
  // Reads until the inbox contains `what`; false on timeout or close.
  bool read_until(std::string_view what, ms t = 5s) {
    const auto end = std::chrono::steady_clock::now() + t;
    while (inbox.find(what) == std::string::npos) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= end || !read_some(std::chrono::duration_cast<ms>(end - now))) return false;
    }
    return true;
  }
  // One read; false on timeout (pending read cancelled) or EOF/error (closed = true).
  bool read_some(ms t) {
    auto r = run_op(
        io, [&](OpHandler h) { s.async_read_some(asio::buffer(chunk), h); }, t);
    if (r.ec == asio::error::timed_out) {
      boost::system::error_code ec;
      s.lowest_layer().cancel(ec);
      io.restart();
      io.run_for(50ms);
      return false;
    }
    if (r.ec) {
      closed = true;
      return false;
    }
    inbox.append(chunk.data(), r.n);
    return true;
  }
  // True when the server closed the connection within t (bytes read meanwhile go to the inbox).
  bool wait_closed(ms t = 5s) {
    const auto end = std::chrono::steady_clock::now() + t;
    while (!closed) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= end) return false;
      read_some(std::chrono::duration_cast<ms>(end - now));
    }
    return true;
  }
  tcp::endpoint local() { return s.lowest_layer().local_endpoint(); }

  asio::io_context io;
  Stream s;
  std::string inbox;
  bool closed = false;

 private:
  std::array<char, 65536> chunk{};
};
// The socket of this process whose local end is `local` and remote end `remote` (the server side
// of a loopback connection the test made), found by walking /proc/self/fd; -1 when none.
inline int socket_fd_between(const tcp::endpoint& local, const tcp::endpoint& remote) {
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::atoi(e.path().filename().c_str());
    sockaddr_storage a{}, b{};
    socklen_t la = sizeof a, lb = sizeof b;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &la) != 0) continue;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&b), &lb) != 0) continue;
    tcp::endpoint l, r;
    if (la > l.capacity() || lb > r.capacity()) continue;
    std::memcpy(l.data(), &a, la);
    l.resize(la);
    std::memcpy(r.data(), &b, lb);
    r.resize(lb);
    if (l == local && r == remote) return fd;
  }
  return -1;
}

// TCP_NODELAY of that socket: 1 on, 0 off, -1 when it cannot be read.
inline int tcp_nodelay(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  if (fd < 0 || ::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) != 0) return -1;
  return on != 0 ? 1 : 0;
}

using TcpClient = StreamClient<tcp::socket>;
using TlsClient = StreamClient<ssl::stream<tcp::socket>>;

inline std::shared_ptr<ssl::context> client_tls_context() {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_verify_mode(ssl::verify_none);  // the tests check transport, not PKI
  return ctx;
}

// Throw-away self-signed certificate for 127.0.0.1, ::1 and localhost.
class TestCert {
 public:
  TestCert() {
    char tmpl[] = "/tmp/edge-transport-test-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (!d) throw std::runtime_error("mkdtemp failed");
    dir = d;
    cert = (dir / "cert.pem").string();
    key = (dir / "key.pem").string();
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '" + key +
        "' -out '" + cert +
        "' -days 1 -subj /CN=localhost "
        "-addext subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0 || !std::filesystem::exists(cert)) {
      throw std::runtime_error("openssl req failed: cannot make a test certificate");
    }
  }
  ~TestCert() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TlsConfig tls() const {
    TlsConfig t;
    t.certificate_chain_file = cert;
    t.private_key_file = key;
    return t;
  }

  std::filesystem::path dir;
  std::string cert, key;
};

// A WebSocket client (plain or over TLS) offering the "sip" subprotocol.
template <class Next>
class WsClient {
 public:
  template <class... Args>
  explicit WsClient(Args&&... args) : ws(io, std::forward<Args>(args)...) {}

  // `preamble`: bytes written right after the TCP connect, before TLS and the upgrade (a PROXY header).
  bool connect(const tcp::endpoint& to, const std::string& protocol = "sip", std::string_view preamble = {}) {
    auto r = run_op(io, [&](OpHandler h) { beast::get_lowest_layer(ws).async_connect(to, h); });
    if (r.ec) return false;
    if (!preamble.empty()) {
      auto w = run_op(io, [&](OpHandler h) {
        asio::async_write(beast::get_lowest_layer(ws), asio::buffer(preamble.data(), preamble.size()), h);
      });
      if (w.ec) return false;
    }
    if constexpr (!std::is_same_v<Next, tcp::socket>) {
      auto hs =
          run_op(io, [&](OpHandler h) { ws.next_layer().async_handshake(ssl::stream_base::client, h); });
      if (hs.ec) return false;
    }
    ws.set_option(websocket::stream_base::decorator([protocol](websocket::request_type& req) {
      if (!protocol.empty()) req.set(beast::http::field::sec_websocket_protocol, protocol);
    }));
    auto hs = run_op(io, [&](OpHandler h) { ws.async_handshake(response, "127.0.0.1", "/", h); });
    return !hs.ec;
  }
  bool send(std::string_view text) {
    ws.text(true);
    auto r = run_op(io, [&](OpHandler h) { ws.async_write(asio::buffer(text.data(), text.size()), h); });
    return !r.ec;
  }
  // One WS message; nullopt-like empty + false on timeout/close.
  bool read(std::string& out, ms t = 5s) {
    buf.consume(buf.size());
    auto r = run_op(
        io, [&](OpHandler h) { ws.async_read(buf, h); }, t);
    if (r.ec) {
      if (r.ec != asio::error::timed_out) closed = true;
      return false;
    }
    out = beast::buffers_to_string(buf.data());
    return true;
  }

  asio::io_context io;
  websocket::stream<Next> ws;
  websocket::response_type response;
  beast::flat_buffer buf;
  bool closed = false;
};

}  // namespace edge::net::test
