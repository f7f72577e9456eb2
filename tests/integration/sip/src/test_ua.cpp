// The scripted test UA: Asio/Beast links per transport, a continuous reader, deadline-bounded waits.
#include "edge/test/sip/test_ua.h"

#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <functional>
#include <random>
#include <sstream>

namespace edge::test {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using Clock = std::chrono::steady_clock;
using Done = std::function<void(const beast::error_code&)>;

std::string random_hex(std::size_t chars) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(chars, '0');
  for (auto& c : s) c = kHex[rng() & 0xF];
  return s;
}

bool only_crlf(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n'; });
}

// What the links deliver, and the transcript of everything that passed.
struct Inbox {
  Clock::time_point start = Clock::now();
  std::deque<std::string> messages;
  std::deque<std::vector<std::uint8_t>> stun;
  std::size_t pongs = 0;
  bool closed = false;
  std::uint64_t generation = 0;  // bumped on every arrival, so waits can tell "something new"
  std::string transcript;

  void note(std::string_view direction, std::string_view text) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    std::ostringstream line;
    line << "[+" << ms << "ms] " << direction << "\n" << text;
    transcript += line.str();
    if (!text.empty() && text.back() != '\n') transcript += "\n";
  }
  void message(std::string text) {
    note("<<< received", text);
    messages.push_back(std::move(text));
    ++generation;
  }
  // A datagram or WebSocket message: one SIP message, or a keep-alive.
  void framed(std::string text) {
    if (only_crlf(text)) {
      pong();
    } else {
      message(std::move(text));
    }
  }
  void pong() {
    note("<<< received CRLF pong", "");
    ++pongs;
    ++generation;
  }
  void stun_datagram(std::vector<std::uint8_t> d) {
    note("<<< received STUN, " + std::to_string(d.size()) + " bytes", "");
    stun.push_back(std::move(d));
    ++generation;
  }
  void close(std::string_view reason) {
    if (closed) return;
    note("--- flow closed: " + std::string(reason), "");
    closed = true;
    ++generation;
  }
};

// One open flow. Each link reads continuously from connect to close (Beast's
// do_read/on_read rhythm), so a receive that times out never cancels a
// half-read TLS record or WebSocket frame: it just stops waiting.
class Link {
 public:
  explicit Link(Inbox& inbox) : inbox_(inbox) {}
  virtual ~Link() = default;
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;
  virtual void start_reading() = 0;
  virtual void async_send(std::shared_ptr<const std::string> bytes, Done done) = 0;
  // Starts a polite close (WebSocket close frame); done is called when it ends.
  virtual void async_goodbye(Done done) { done({}); }
  virtual void shutdown() = 0;  // close the socket: every pending operation completes aborted
  virtual tcp::socket* tcp_socket() { return nullptr; }

 protected:
  void deliver_error(const beast::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // our own close()
    inbox_.close(ec.message());
  }
  Inbox& inbox_;
};

class UdpLink final : public Link {
 public:
  UdpLink(Inbox& inbox, udp::socket socket) : Link(inbox), socket_(std::move(socket)) {}
  void start_reading() override {
    socket_.async_receive(asio::buffer(buffer_), [this](const beast::error_code& ec, std::size_t n) {
      if (ec == asio::error::connection_refused) {  // an ICMP error for an earlier send; the flow lives on
        inbox_.note("--- ICMP: connection refused", "");
        start_reading();
        return;
      }
      if (ec) return deliver_error(ec);
      std::span<const std::uint8_t> d(buffer_.data(), n);
      if (looks_like_stun(d)) {
        inbox_.stun_datagram({d.begin(), d.end()});
      } else {
        inbox_.framed(std::string(reinterpret_cast<const char*>(buffer_.data()), n));
      }
      start_reading();
    });
  }
  void async_send(std::shared_ptr<const std::string> bytes, Done done) override {
    socket_.async_send(asio::buffer(*bytes), [bytes, done](const beast::error_code& ec, std::size_t) { done(ec); });
  }
  void shutdown() override {
    beast::error_code ignored;
    socket_.close(ignored);
  }
  udp::socket& socket() { return socket_; }

 private:
  udp::socket socket_;
  std::array<std::uint8_t, 65536> buffer_{};
};

// TCP or TLS: bytes, framed by Content-Length.
template <class Stream>
class StreamLink final : public Link {
 public:
  template <class... Args>
  StreamLink(Inbox& inbox, Args&&... args) : Link(inbox), stream_(std::forward<Args>(args)...) {}
  void start_reading() override {
    stream_.async_read_some(asio::buffer(buffer_), [this](const beast::error_code& ec, std::size_t n) {
      if (ec) return deliver_error(ec);
      framer_.feed(std::string_view(buffer_.data(), n));
      while (auto m = framer_.next()) inbox_.message(std::move(*m));
      for (; pongs_seen_ < framer_.pongs(); ++pongs_seen_) inbox_.pong();
      start_reading();
    });
  }
  void async_send(std::shared_ptr<const std::string> bytes, Done done) override {
    asio::async_write(stream_, asio::buffer(*bytes),
                      [bytes, done](const beast::error_code& ec, std::size_t) { done(ec); });
  }
  void shutdown() override {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).close(ignored);
  }
  tcp::socket* tcp_socket() override { return &beast::get_lowest_layer(stream_); }
  Stream& stream() { return stream_; }

 private:
  Stream stream_;
  StreamFramer framer_;
  std::size_t pongs_seen_ = 0;
  std::array<char, 65536> buffer_{};
};

// WS or WSS: one SIP message per text message (RFC 7118 §5).
template <class NextLayer>
class WsLink final : public Link {
 public:
  template <class... Args>
  WsLink(Inbox& inbox, Args&&... args) : Link(inbox), ws_(std::forward<Args>(args)...) {}
  void start_reading() override {
    ws_.async_read(buffer_, [this](const beast::error_code& ec, std::size_t) {
      if (ec == websocket::error::closed) {
        auto r = ws_.reason();
        return inbox_.close("websocket closed by peer, code " + std::to_string(r.code) + " " +
                            std::string(r.reason.data(), r.reason.size()));
      }
      if (ec) return deliver_error(ec);
      inbox_.framed(beast::buffers_to_string(buffer_.data()));
      buffer_.consume(buffer_.size());
      start_reading();
    });
  }
  void async_send(std::shared_ptr<const std::string> bytes, Done done) override {
    ws_.text(true);
    ws_.async_write(asio::buffer(*bytes), [bytes, done](const beast::error_code& ec, std::size_t) { done(ec); });
  }
  void async_goodbye(Done done) override {
    if (!ws_.is_open()) return done({});
    ws_.async_close(websocket::close_code::normal, [done](const beast::error_code& ec) { done(ec); });
  }
  void shutdown() override {
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
  }
  tcp::socket* tcp_socket() override { return &beast::get_lowest_layer(ws_); }
  websocket::stream<NextLayer>& ws() { return ws_; }

 private:
  websocket::stream<NextLayer> ws_;
  beast::flat_buffer buffer_;
};

Endpoint to_endpoint(const tcp::endpoint& e) { return Endpoint{e.address(), e.port()}; }
Endpoint to_endpoint(const udp::endpoint& e) { return Endpoint{e.address(), e.port()}; }

void add_route_headers(SipMessage& m, const std::vector<std::string>& routes) {
  for (const auto& r : routes) m.add_header("Route", r);
}

}  // namespace

// --- Dialog ------------------------------------------------------------------------

Dialog Dialog::as_uac(const SipMessage& invite, const SipMessage& response) {
  Dialog d;
  d.call_id = invite.call_id();
  d.local = invite.header("From").value_or("");
  d.local_tag = invite.from_tag();
  d.remote = response.header("To").value_or("");
  d.remote_tag = response.to_tag().value_or("");
  auto contact = response.header("Contact");
  if (!contact) throw ParseError("no Contact in " + response.summary() + ": cannot form a dialog");
  d.remote_target = uri_of(*contact);
  d.route_set = response.header_values("Record-Route");
  std::reverse(d.route_set.begin(), d.route_set.end());
  d.local_cseq = invite.cseq_number();
  d.invite_cseq = d.local_cseq;
  return d;
}

Dialog Dialog::as_uas(const SipMessage& invite, std::string local_tag) {
  Dialog d;
  d.call_id = invite.call_id();
  d.local = invite.header("To").value_or("");
  if (!header_param(d.local, "tag")) d.local += ";tag=" + local_tag;
  d.local_tag = std::move(local_tag);
  d.remote = invite.header("From").value_or("");
  d.remote_tag = invite.from_tag();
  auto contact = invite.header("Contact");
  if (!contact) throw ParseError("no Contact in " + invite.summary() + ": cannot form a dialog");
  d.remote_target = uri_of(*contact);
  d.route_set = invite.header_values("Record-Route");
  d.local_cseq = 0;
  d.invite_cseq = invite.cseq_number();
  return d;
}

// --- TestUa::Impl --------------------------------------------------------------------

struct TestUa::Impl {
  UaProfile profile;
  asio::io_context io;
  Inbox inbox;
  std::unique_ptr<ssl::context> tls;  // outlives the link that uses it (declared before it)
  std::unique_ptr<Link> link;
  Transport transport = Transport::udp;
  Endpoint local;
  Endpoint server;
  std::string reg_call_id;
  std::string reg_tag;
  std::uint32_t reg_cseq = 0;

  // Runs the io_context until pred() holds or the deadline passes. Returns
  // early (false) when there is no pending work at all: nothing can arrive then.
  bool run_until(const std::function<bool()>& pred, Clock::time_point deadline) {
    while (!pred()) {
      auto now = Clock::now();
      if (now >= deadline) return false;
      if (io.stopped()) io.restart();
      if (io.run_one_for(deadline - now) == 0 && io.stopped()) return pred();
    }
    return true;
  }

  // Starts one asynchronous operation and waits for it; on the deadline the
  // socket is closed, the aborted handler is let run, and TimeoutError thrown.
  void await(const std::function<void(Done)>& start, Clock::time_point deadline, const std::string& what) {
    auto result = std::make_shared<std::optional<beast::error_code>>();
    start([result](const beast::error_code& ec) { *result = ec; });
    if (!run_until([&] { return result->has_value(); }, deadline)) {
      if (link) link->shutdown();
      run_until([&] { return result->has_value(); }, Clock::now() + std::chrono::seconds(1));
      inbox.close(what + " timed out");
      throw TimeoutError(what + ": timed out\n" + inbox.transcript);
    }
    if (**result) throw std::runtime_error(what + ": " + (*result)->message());
  }

  void connect(Transport t, const Endpoint& to, const ConnectOptions& o);
  void connect_stream(Transport t, const Endpoint& to, const ConnectOptions& o);
  void close();
  void drop_link();

  void send(std::string_view bytes, Clock::time_point deadline) {
    if (!link) throw std::runtime_error("TestUa: send on a flow that is not open");
    inbox.note(">>> sent", bytes);
    auto data = std::make_shared<const std::string>(bytes);
    try {
      await([&](Done done) { link->async_send(data, std::move(done)); }, deadline, "send");
    } catch (const std::exception&) {
      // A write that fails on a connection means the peer closed or reset it;
      // a WebSocket reader does not always learn of that by itself.
      if (transport != Transport::udp) {
        inbox.closed = true;
        ++inbox.generation;
      }
      throw;
    }
  }

  enum class Verdict { take, drop, keep };
  std::optional<SipMessage> take(const std::function<Verdict(const SipMessage&)>& judge, Millis timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      for (auto it = inbox.messages.begin(); it != inbox.messages.end();) {
        SipMessage m;
        try {
          m = SipMessage::parse(*it);
        } catch (const ParseError& e) {
          // Garbage from the peer fails the test once, then is gone from the queue.
          std::string raw = std::move(*it);
          inbox.messages.erase(it);
          throw ParseError(std::string("unparsable message from the peer (") + e.what() + "):\n" + raw);
        }
        switch (judge(m)) {
          case Verdict::take: inbox.messages.erase(it); return m;
          case Verdict::drop: it = inbox.messages.erase(it); break;
          case Verdict::keep: ++it; break;
        }
      }
      if (inbox.closed) return std::nullopt;
      auto seen = inbox.generation;
      if (!run_until([&] { return inbox.generation != seen; }, deadline)) return std::nullopt;
    }
  }
};

void TestUa::Impl::connect(Transport t, const Endpoint& to, const ConnectOptions& o) {
  close();
  inbox.messages.clear();
  inbox.stun.clear();
  inbox.pongs = 0;
  inbox.closed = false;
  transport = t;
  server = to;
  try {
    if (t == Transport::udp) {
      udp::socket s(io);
      s.open(to.address.is_v6() ? udp::v6() : udp::v4());
      if (o.local) s.bind(udp::endpoint(o.local->address, o.local->port));
      s.connect(udp::endpoint(to.address, to.port));  // a connected socket: the flow is this 5-tuple
      local = to_endpoint(s.local_endpoint());
      link = std::make_unique<UdpLink>(inbox, std::move(s));
    } else {
      connect_stream(t, to, o);
    }
  } catch (...) {
    drop_link();  // a failed connect leaves no half-open flow behind
    throw;
  }
  inbox.note("--- " + std::string(via_token(t)) + " flow " + local.host_port() + " -> " + to.host_port(), "");
  link->start_reading();
}

void TestUa::Impl::connect_stream(Transport t, const Endpoint& to, const ConnectOptions& o) {
  auto deadline = Clock::now() + o.timeout;
  const std::string where = std::string(via_token(t)) + " " + to.host_port();
  if (is_secure(t)) {
    tls = std::make_unique<ssl::context>(ssl::context::tls_client);
    if (!o.tls.cert_file.empty()) {
      tls->use_certificate_chain_file(o.tls.cert_file.string());
      tls->use_private_key_file(o.tls.key_file.string(), ssl::context::pem);
    }
    if (!o.tls.ca_file.empty()) {
      tls->load_verify_file(o.tls.ca_file.string());
      tls->set_verify_mode(ssl::verify_peer);
    } else {
      tls->set_verify_mode(ssl::verify_none);
    }
  }
  // The link owns the socket from the start: handshakes run on the stream where it will live.
  switch (t) {
    case Transport::tcp: link = std::make_unique<StreamLink<tcp::socket>>(inbox, io); break;
    case Transport::tls: link = std::make_unique<StreamLink<ssl::stream<tcp::socket>>>(inbox, io, *tls); break;
    case Transport::ws: link = std::make_unique<WsLink<tcp::socket>>(inbox, io); break;
    case Transport::wss: link = std::make_unique<WsLink<ssl::stream<tcp::socket>>>(inbox, io, *tls); break;
    case Transport::udp: break;
  }
  tcp::socket& sock = *link->tcp_socket();
  sock.open(to.address.is_v6() ? tcp::v6() : tcp::v4());
  if (o.local) {
    sock.set_option(tcp::socket::reuse_address(true));
    sock.bind(tcp::endpoint(o.local->address, o.local->port));
  }
  await([&](Done done) { sock.async_connect(tcp::endpoint(to.address, to.port), std::move(done)); }, deadline,
        "connect " + where);
  sock.set_option(tcp::no_delay(true));
  local = to_endpoint(sock.local_endpoint());

  auto tls_handshake = [&](ssl::stream<tcp::socket>& s) {
    std::string name = o.tls.verify_name.empty() ? to.address.to_string() : o.tls.verify_name;
    beast::error_code not_an_ip;
    (void)asio::ip::make_address(name, not_an_ip);
    X509_VERIFY_PARAM* param = SSL_get0_param(s.native_handle());
    if (!not_an_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
      SSL_set_tlsext_host_name(s.native_handle(), name.c_str());  // SNI is for names only (RFC 6066 §3)
    }
    await([&](Done done) { s.async_handshake(ssl::stream_base::client, std::move(done)); }, deadline,
          "TLS handshake with " + where);
  };
  auto ws_handshake = [&](auto& ws) {
    if (!o.ws_protocol.empty()) {
      ws.set_option(websocket::stream_base::decorator([p = o.ws_protocol](websocket::request_type& req) {
        req.set(http::field::sec_websocket_protocol, p);
        req.set(http::field::user_agent, "edge-test-ua");
      }));
    }
    auto response = std::make_shared<websocket::response_type>();
    std::string host = to.host_port();
    try {
      await([&](Done done) { ws.async_handshake(*response, host, o.ws_path, std::move(done)); }, deadline,
            "WebSocket upgrade with " + where);
    } catch (const TimeoutError&) {
      throw;
    } catch (const std::exception& e) {
      std::ostringstream s;
      s << e.what() << " (HTTP " << response->result_int() << ")";
      throw std::runtime_error(s.str());
    }
    if (!o.ws_protocol.empty() && (*response)[http::field::sec_websocket_protocol] != o.ws_protocol) {
      throw std::runtime_error("WebSocket server did not accept subprotocol " + o.ws_protocol);
    }
    ws.text(true);
  };

  if (t == Transport::tls) {
    tls_handshake(static_cast<StreamLink<ssl::stream<tcp::socket>>&>(*link).stream());
  } else if (t == Transport::ws) {
    ws_handshake(static_cast<WsLink<tcp::socket>&>(*link).ws());
  } else if (t == Transport::wss) {
    auto& ws = static_cast<WsLink<ssl::stream<tcp::socket>>&>(*link).ws();
    tls_handshake(ws.next_layer());
    ws_handshake(ws);
  }
}

void TestUa::Impl::close() {
  if (!link) return;
  if (!inbox.closed) {
    auto done = std::make_shared<bool>(false);
    link->async_goodbye([done](const beast::error_code&) { *done = true; });
    run_until([&] { return *done; }, Clock::now() + std::chrono::milliseconds(500));
  }
  inbox.close("closed by test UA");
  drop_link();
}

void TestUa::Impl::drop_link() {
  if (link) {
    link->shutdown();
    // Let every aborted handler run while the link they point at still exists.
    if (io.stopped()) io.restart();
    io.run_for(std::chrono::seconds(1));
  }
  link.reset();
  tls.reset();
}

// --- TestUa ----------------------------------------------------------------------------

TestUa::TestUa(std::string user, std::string domain)
    : TestUa(UaProfile{std::move(user), std::move(domain), {}, 1, {}}) {}

TestUa::TestUa(UaProfile profile) : impl_(std::make_unique<Impl>()) {
  if (profile.instance.empty()) profile.instance = "urn:uuid:" + random_uuid();
  impl_->profile = std::move(profile);
}

TestUa::~TestUa() {
  if (impl_) impl_->close();
}
TestUa::TestUa(TestUa&&) noexcept = default;
TestUa& TestUa::operator=(TestUa&&) noexcept = default;

UaProfile& TestUa::profile() { return impl_->profile; }
const UaProfile& TestUa::profile() const { return impl_->profile; }

void TestUa::connect(Transport transport, const Endpoint& server, const ConnectOptions& options) {
  impl_->connect(transport, server, options);
}
void TestUa::close() { impl_->close(); }
bool TestUa::is_open() const { return impl_->link && !impl_->inbox.closed; }
Transport TestUa::transport() const { return impl_->transport; }
Endpoint TestUa::local_endpoint() const { return impl_->local; }
Endpoint TestUa::server_endpoint() const { return impl_->server; }

void TestUa::send_raw(std::string_view bytes) { impl_->send(bytes, Clock::now() + kDefaultTimeout); }
void TestUa::send(const SipMessage& message) { send_raw(message.to_string()); }
void TestUa::send_bytes(std::span<const std::uint8_t> bytes) {
  send_raw(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::optional<SipMessage> TestUa::try_receive(Millis timeout) {
  return impl_->take([](const SipMessage&) { return Impl::Verdict::take; }, timeout);
}

SipMessage TestUa::receive(Millis timeout) {
  if (auto m = try_receive(timeout)) return *m;
  throw TimeoutError("TestUa " + impl_->profile.user + ": no message within " + std::to_string(timeout.count()) +
                     " ms\n" + transcript());
}

SipMessage TestUa::receive_request(std::string_view method, Millis timeout) {
  auto m = impl_->take(
      [&](const SipMessage& c) {
        return c.is_request() && c.method() == method ? Impl::Verdict::take : Impl::Verdict::keep;
      },
      timeout);
  if (m) return *m;
  throw TimeoutError("TestUa " + impl_->profile.user + ": no " + std::string(method) + " request within " +
                     std::to_string(timeout.count()) + " ms\n" + transcript());
}

SipMessage TestUa::receive_response(std::string_view cseq_method, Millis timeout) {
  auto m = impl_->take(
      [&](const SipMessage& c) {
        if (!c.is_response() || !iequals(c.cseq_method(), cseq_method)) return Impl::Verdict::keep;
        return c.status() >= 200 ? Impl::Verdict::take : Impl::Verdict::drop;
      },
      timeout);
  if (m) return *m;
  throw TimeoutError("TestUa " + impl_->profile.user + ": no final response to " + std::string(cseq_method) +
                     " within " + std::to_string(timeout.count()) + " ms\n" + transcript());
}

bool TestUa::wait_closed(Millis timeout) {
  if (!impl_->link) return true;
  return impl_->run_until([&] { return impl_->inbox.closed; }, Clock::now() + timeout);
}

std::string TestUa::transcript() const {
  return "----- transcript of test UA " + impl_->profile.user + " -----\n" + impl_->inbox.transcript;
}

void TestUa::send_ping() { send_raw("\r\n\r\n"); }

bool TestUa::wait_pong(Millis timeout) {
  if (!impl_->run_until([&] { return impl_->inbox.pongs > 0; }, Clock::now() + timeout)) return false;
  --impl_->inbox.pongs;
  return true;
}

StunBindingResponse TestUa::stun_binding(Millis timeout) {
  if (impl_->transport != Transport::udp) throw std::logic_error("stun_binding: STUN keep-alives are for UDP flows");
  auto id = random_stun_transaction_id();
  auto request = make_stun_binding_request(id);
  impl_->inbox.note(">>> sent STUN Binding request", "");
  send_raw(std::string_view(reinterpret_cast<const char*>(request.data()), request.size()));
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto& q = impl_->inbox.stun;
    for (auto it = q.begin(); it != q.end(); ++it) {
      auto r = parse_stun_response(*it);
      if (r && r->transaction_id == id) {
        q.erase(it);
        return *r;
      }
    }
    auto seen = impl_->inbox.generation;
    if (!impl_->run_until([&] { return impl_->inbox.generation != seen; }, deadline)) {
      throw TimeoutError("no STUN Binding response within " + std::to_string(timeout.count()) + " ms\n" + transcript());
    }
  }
}

std::optional<std::vector<std::uint8_t>> TestUa::try_receive_stun(Millis timeout) {
  if (!impl_->run_until([&] { return !impl_->inbox.stun.empty(); }, Clock::now() + timeout)) return std::nullopt;
  auto d = std::move(impl_->inbox.stun.front());
  impl_->inbox.stun.pop_front();
  return d;
}

// --- Builders ------------------------------------------------------------------------

std::string random_uuid() {
  std::string h = random_hex(32);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-4" + h.substr(13, 3) + "-8" + h.substr(17, 3) + "-" +
         h.substr(20, 12);
}

std::string TestUa::new_branch() { return "z9hG4bK" + random_hex(16); }
std::string TestUa::new_tag() { return random_hex(12); }
std::string TestUa::new_call_id() { return random_hex(24) + "@edge-test"; }

std::string TestUa::aor() const { return "sip:" + impl_->profile.user + "@" + impl_->profile.domain; }

std::string TestUa::contact_uri(bool ob) const {
  return "sip:" + impl_->profile.user + "@" + impl_->local.host_port() +
         ";transport=" + std::string(uri_transport(impl_->transport)) + (ob ? ";ob" : "");
}

std::string TestUa::via(std::string_view branch) const {
  return "SIP/2.0/" + std::string(via_token(impl_->transport)) + " " + impl_->local.host_port() +
         ";branch=" + std::string(branch) + ";rport";
}

SipMessage TestUa::make_register(const RegisterOptions& o) {
  auto& p = impl_->profile;
  if (impl_->reg_call_id.empty()) {
    impl_->reg_call_id = new_call_id();
    impl_->reg_tag = new_tag();
  }
  SipMessage m = SipMessage::request("REGISTER", o.request_uri.empty() ? "sip:" + p.domain : o.request_uri);
  m.add_header("Via", via(new_branch()));
  m.add_header("Max-Forwards", "70");
  if (!p.outbound_proxy.empty()) m.add_header("Route", p.outbound_proxy);
  m.add_header("From", "<" + aor() + ">;tag=" + impl_->reg_tag);
  m.add_header("To", "<" + aor() + ">");
  m.add_header("Call-ID", impl_->reg_call_id);
  m.add_header("CSeq", std::to_string(++impl_->reg_cseq) + " REGISTER");
  std::string contact = "<" + contact_uri(o.ob_in_contact) + ">";
  if (o.outbound) contact += ";+sip.instance=\"<" + p.instance + ">\";reg-id=" + std::to_string(p.reg_id);
  m.add_header("Contact", contact);
  m.add_header("Expires", std::to_string(o.expires));
  std::string supported;
  if (o.outbound) supported = "outbound";
  if (o.supported_path) supported += supported.empty() ? "path" : ", path";
  if (!supported.empty()) m.add_header("Supported", supported);
  m.add_header("User-Agent", "edge-test-ua");
  for (const auto& [n, v] : o.extra_headers) m.add_header(n, v);
  return m;
}

SipMessage TestUa::register_with(const RegisterOptions& options, Millis timeout) {
  send(make_register(options));
  return receive_response("REGISTER", timeout);
}

SipMessage TestUa::make_invite(std::string_view target_uri, std::string sdp) {
  auto& p = impl_->profile;
  SipMessage m = SipMessage::request("INVITE", std::string(target_uri));
  m.add_header("Via", via(new_branch()));
  m.add_header("Max-Forwards", "70");
  if (!p.outbound_proxy.empty()) m.add_header("Route", p.outbound_proxy);
  m.add_header("From", "<" + aor() + ">;tag=" + new_tag());
  m.add_header("To", "<" + std::string(target_uri) + ">");
  m.add_header("Call-ID", new_call_id());
  m.add_header("CSeq", "1 INVITE");
  m.add_header("Contact", "<" + contact_uri(true) + ">");
  m.add_header("User-Agent", "edge-test-ua");
  if (sdp.empty()) sdp = make_sdp(impl_->local.host(), 40000);
  m.set_body(std::move(sdp));
  return m;
}

SipMessage TestUa::make_response(const SipMessage& request, int status, std::string_view reason,
                                 std::string_view to_tag, std::string body) {
  SipMessage r = SipMessage::response(status, std::string(reason));
  const bool dialog_forming =
      (request.method() == "INVITE" || request.method() == "SUBSCRIBE") && status > 100 && status < 300;
  for (const auto& [name, value] : request.headers()) {
    std::string n = canonical_header_name(name);
    if (n == "Via" || n == "From" || n == "Call-ID" || n == "CSeq" || (n == "Record-Route" && dialog_forming)) {
      r.add_header(n, value);
    } else if (n == "To") {
      std::string to = value;
      if (status > 100 && !header_param(to, "tag")) to += ";tag=" + (to_tag.empty() ? new_tag() : std::string(to_tag));
      r.add_header("To", to);
    }
  }
  if (dialog_forming) r.add_header("Contact", "<" + contact_uri(true) + ">");
  r.add_header("Server", "edge-test-ua");
  if (!body.empty()) r.set_body(std::move(body));
  return r;
}

SipMessage TestUa::make_ack(const Dialog& d) const {
  SipMessage m = SipMessage::request("ACK", d.remote_target);
  m.add_header("Via", via(new_branch()));
  m.add_header("Max-Forwards", "70");
  add_route_headers(m, d.route_set);
  m.add_header("From", d.local);
  m.add_header("To", d.remote);
  m.add_header("Call-ID", d.call_id);
  m.add_header("CSeq", std::to_string(d.invite_cseq) + " ACK");
  return m;
}

SipMessage TestUa::make_ack_for_failure(const SipMessage& invite, const SipMessage& response) {
  SipMessage m = SipMessage::request("ACK", invite.request_uri());
  m.add_header("Via", invite.top_via());
  m.add_header("Max-Forwards", "70");
  add_route_headers(m, invite.header_values("Route"));
  m.add_header("From", invite.header("From").value_or(""));
  m.add_header("To", response.header("To").value_or(""));
  m.add_header("Call-ID", invite.call_id());
  m.add_header("CSeq", std::to_string(invite.cseq_number()) + " ACK");
  return m;
}

SipMessage TestUa::make_in_dialog(Dialog& d, std::string_view method) {
  if (!d.route_set.empty() && !uri_param(uri_of(d.route_set.front()), "lr")) {
    throw std::logic_error("TestUa: strict routing (a route set without ;lr) is not supported");
  }
  SipMessage m = SipMessage::request(std::string(method), d.remote_target);
  m.add_header("Via", via(new_branch()));
  m.add_header("Max-Forwards", "70");
  add_route_headers(m, d.route_set);
  m.add_header("From", d.local);
  m.add_header("To", d.remote);
  m.add_header("Call-ID", d.call_id);
  m.add_header("CSeq", std::to_string(++d.local_cseq) + " " + std::string(method));
  if (method == "INVITE" || method == "UPDATE") m.add_header("Contact", "<" + contact_uri(true) + ">");
  m.add_header("User-Agent", "edge-test-ua");
  return m;
}

}  // namespace edge::test
