// Issue "SIP outbound edge front end", test 7: malformed input on every transport; the edge stays up and
// serves others.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <ostream>

#include "edge_fixture.h"

namespace edge::test {
namespace {

using Clock = std::chrono::steady_clock;

// What became of a stream after bad input: the edge answered (status), or closed it.
struct Outcome {
  std::optional<int> status;  // first SIP response seen
  bool closed = false;
  std::string summary;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  if (o.status) os << "answered " << *o.status << " (" << o.summary << ")";
  if (o.closed) os << (o.status ? ", then closed" : "closed");
  if (!o.status && !o.closed) os << "no answer and still open";
  return os;
}

// Waits (bounded) until the edge answers or closes the UA's flow; after an answer,
// a short extra wait notices a close that follows it.
Outcome await_outcome(TestUa& u, Millis timeout = Millis(5000)) {
  Outcome o;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (auto m = u.try_receive(Millis(100))) {
      o.status = m->is_response() ? m->status() : -1;
      o.summary = m->summary();
      break;
    }
    if (!u.is_open()) {
      o.closed = true;
      return o;
    }
  }
  if (o.status && u.transport() != Transport::udp) o.closed = u.wait_closed(Millis(300));
  return o;
}

// Stream input the edge cannot frame or parse: a 400 (505 for an unknown SIP
// version, RFC 3261 §21.5.20), then possibly a close; or a plain close.
void expect_400_or_close(const Outcome& o, bool version_error = false) {
  const bool rejected = o.status == 400 || (version_error && o.status == 505);
  EXPECT_TRUE(rejected || (!o.status && o.closed)) << o;
}

// A bare TCP connection, for bytes no TestUa would send (a WebSocket frame that
// breaks RFC 6455, plaintext on the TLS port). Blocking, with a receive timeout.
class RawStream {
 public:
  explicit RawStream(const Endpoint& to) : socket_(io_) {
    socket_.connect(boost::asio::ip::tcp::endpoint(to.address, to.port));
    timeval tv{0, 200 * 1000};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  void write(std::string_view bytes) {
    boost::asio::write(socket_, boost::asio::buffer(bytes.data(), bytes.size()));
  }
  // Reads until `needle` has arrived, EOF, or the deadline; returns what came.
  std::string read_until(std::string_view needle, Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline && !eof_ &&
           (needle.empty() || received_.find(needle) == std::string::npos)) {
      char buf[4096];
      const ssize_t n = ::recv(socket_.native_handle(), buf, sizeof buf, 0);
      if (n > 0) {
        received_.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        eof_ = true;  // EOF or reset: the edge closed the connection
      }
    }
    return received_;
  }
  // True once the edge has closed the connection (bounded wait).
  bool wait_eof(Millis timeout) {
    read_until({}, timeout);
    return eof_;
  }
  const std::string& received() const { return received_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string received_;
  bool eof_ = false;
};

// One client-to-server WebSocket frame (RFC 6455 §5.2), masked unless told otherwise.
std::string ws_frame(std::uint8_t first_byte, std::string_view payload, bool masked = true) {
  std::string f;
  f += static_cast<char>(first_byte);
  const std::uint8_t mask_bit = masked ? 0x80 : 0x00;
  if (payload.size() < 126) {
    f += static_cast<char>(mask_bit | payload.size());
  } else {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>((payload.size() >> 8) & 0xff);
    f += static_cast<char>(payload.size() & 0xff);
  }
  const std::uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    f += masked ? static_cast<char>(payload[i] ^ static_cast<char>(key[i % 4])) : payload[i];
  }
  return f;
}

std::string ws_upgrade(std::uint16_t port) {
  return "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Protocol: sip\r\n\r\n";
}

class MalformedInput : public EdgeTest {
 protected:
  // Debug level: edged logs why it dropped what it dropped (event=dropped reason=...).
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.log_level = "debug";
    return o;
  }
  void SetUp() override {
    EdgeTest::SetUp();
    // The well-behaved client, registered before any garbage arrives.
    good_ = &ua("good");
    ASSERT_EQ(register_through_edge(*good_, Transport::tcp).status(), 200);
  }

  // The edge is up, the well-behaved client is still served (REGISTER refresh
  // on its flow, and a call from the core reaches it), and a new client can register.
  void expect_edge_still_serves() {
    ASSERT_TRUE(edge_->running()) << "edged died";
    ASSERT_TRUE(good_->is_open()) << "the well-behaved client's flow was closed";
    EXPECT_EQ(good_->register_with().status(), 200);
    TestUa& caller = ua("caller" + std::to_string(++callers_));
    caller.connect(Transport::udp, core_->endpoint(Transport::udp));
    Call c = call(caller, *good_);
    caller.send(caller.make_in_dialog(c.caller, "BYE"));
    const SipMessage bye = good_->receive_request("BYE");
    good_->send(good_->make_response(bye, 200, "OK"));
    EXPECT_EQ(caller.receive_response("BYE").status(), 200);
    TestUa& fresh = ua("fresh" + std::to_string(callers_));
    EXPECT_EQ(register_through_edge(fresh, Transport::udp).status(), 200);
  }

  TestUa* good_ = nullptr;
  int callers_ = 0;
};

const std::string kVia = "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKbad1;rport\r\n";
const std::string kHeaders = kVia +
                             "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:y@127.0.0.1>\r\n"
                             "Call-ID: bad@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n";

// Start lines RFC 3261 §25.1 does not allow, each followed by well-formed headers
// and Content-Length: 0, so the stream framing itself is intact. The first is
// a request with an unknown version (400 or 505).
const char* const kBadStartLines[] = {
    "INVITE sip:bob@127.0.0.1 SIP/3.0",  // unknown SIP version
    "INVITE sip:bob@127.0.0.1",          // no SIP-Version
    "INVITE  SIP/2.0",                   // no Request-URI
    "INVITE bob@@ SIP/2.0",              // Request-URI that is not a URI
    "HELLO WORLD",                       // not a SIP start line at all
};

// UDP: garbage is dropped (there is nobody to answer); a request with a bad
// Content-Length, but everything a response needs (Via, From, To, Call-ID,
// CSeq), gets 400 (RFC 3261 §18.3: a datagram shorter than its Content-Length:
// "the element SHOULD generate a 400").
TEST_F(MalformedInput, UdpGarbageIsDroppedAndBadContentLengthGets400) {
  TestUa& evil = ua("evil-udp");
  evil.connect(Transport::udp, edge_->endpoint(Transport::udp));
  // Not SIP, not STUN (first two bits set), then a truncated STUN header.
  evil.send_raw("\xff\xfe\x80 garbage \x01\x02 not sip at all");
  evil.send_bytes(std::vector<std::uint8_t>{0x00, 0x01, 0x00, 0x08, 0x21, 0x12});
  evil.send_raw("HELLO WORLD\r\n\r\n");
  EXPECT_FALSE(evil.try_receive(Millis(300))) << "garbage got a SIP answer";
  EXPECT_FALSE(evil.try_receive_stun(Millis(50))) << "a truncated STUN header got an answer";
  const std::string start = "OPTIONS sip:127.0.0.1 SIP/2.0\r\n";
  for (const std::string& tail :
       {std::string("Content-Length: abc\r\n\r\n"), std::string("Content-Length: 500\r\n\r\nshort")}) {
    SCOPED_TRACE(tail);
    evil.send_raw(start + kHeaders + tail);
    const auto r = evil.try_receive(Millis(2000));
    ASSERT_TRUE(r.has_value()) << "no answer";
    EXPECT_EQ(r->status(), 400) << r->summary();
  }
  expect_edge_still_serves();
}

// A request whose start line is bad (RFC 3261 §25.1) but whose headers hold
// everything a response needs, and whose framing (Content-Length: 0, one
// datagram, one WebSocket message) is intact: the edge answers 400 (505 for the
// unknown version, RFC 3261 §21.5.20), or, on a stream, closes it. On UDP a
// line that is no request at all ("HELLO WORLD") may simply be dropped.
class BadStartLine : public MalformedInput, public ::testing::WithParamInterface<Transport> {};

TEST_P(BadStartLine, Gets400OrClose) {
  const Transport t = GetParam();
  for (const char* line : kBadStartLines) {
    const bool udp = t == Transport::udp;
    if (udp && std::string_view(line) == "HELLO WORLD") continue;
    SCOPED_TRACE(std::string("start line: ") + line);
    TestUa& evil = ua("evil-" + std::to_string(callers_++));
    evil.connect(t, edge_->endpoint(t), connect_options());
    evil.send_raw(std::string(line) + "\r\n" + kHeaders + "Content-Length: 0\r\n\r\n");
    const Outcome o = await_outcome(evil, Millis(700));
    expect_400_or_close(o, line == kBadStartLines[0]);
    ASSERT_TRUE(edge_->running());
  }
  expect_edge_still_serves();
}

INSTANTIATE_TEST_SUITE_P(Transports, BadStartLine,
                         ::testing::Values(Transport::udp, Transport::tcp, Transport::tls, Transport::ws,
                                           Transport::wss),
                         [](const ::testing::TestParamInfo<Transport>& p) {
                           return std::string(via_token(p.param));
                         });

// TCP: bad header lines with a good start line and intact framing: 400 (or close).
TEST_F(MalformedInput, TcpBadHeaderGets400OrClose) {
  const std::string start = "OPTIONS sip:127.0.0.1 SIP/2.0\r\n";
  const std::pair<const char*, std::string> cases[] = {
      {"CSeq without a number", start + kVia +
                                    "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:y@127.0.0.1>\r\n"
                                    "Call-ID: bad@test\r\nCSeq: abc OPTIONS\r\nMax-Forwards: 70\r\n"
                                    "Content-Length: 0\r\n\r\n"},
      {"header line without a colon", start + kHeaders + "This is not a header\r\nContent-Length: 0\r\n\r\n"},
  };
  for (const auto& [what, bytes] : cases) {
    SCOPED_TRACE(what);
    TestUa& evil = ua("evil-tcp-" + std::to_string(callers_++));
    evil.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
    evil.send_raw(bytes);
    expect_400_or_close(await_outcome(evil, Millis(2000)));
  }
  expect_edge_still_serves();
}

// TCP: a Content-Length that cannot be used loses the framing: 400 and close, or close.
TEST_F(MalformedInput, TcpBadContentLengthGets400AndClose) {
  for (const std::string cl : {"abc", "-5", "99999999999999999999"}) {
    SCOPED_TRACE("Content-Length: " + cl);
    TestUa& evil = ua("evil-cl-" + cl);
    evil.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
    evil.send_raw("OPTIONS sip:127.0.0.1 SIP/2.0\r\n" + kHeaders + "Content-Length: " + cl + "\r\n\r\n");
    const Outcome o = await_outcome(evil);
    expect_400_or_close(o);
    EXPECT_TRUE(o.closed) << "a stream whose framing is lost must be closed: " << o;
  }
  expect_edge_still_serves();
}

// TLS: plaintext (or any non-handshake bytes) on the TLS port closes the connection.
TEST_F(MalformedInput, TlsPortGivenPlaintextIsClosed) {
  RawStream evil(edge_->endpoint(Transport::tls));
  evil.write("OPTIONS sip:127.0.0.1 SIP/2.0\r\n" + kHeaders + "Content-Length: 0\r\n\r\n");
  EXPECT_TRUE(evil.wait_eof(Millis(5000))) << "plaintext on the TLS port did not close the connection";
  expect_edge_still_serves();
}

// WebSocket frames that break RFC 6455 close the connection (a close frame first is fine).
TEST_F(MalformedInput, WebSocketBadFramesCloseTheConnection) {
  const std::uint16_t port = edge_->endpoint(Transport::ws).port;
  struct Case {
    const char* what;
    std::string frame;
  };
  const Case cases[] = {
      {"unmasked client frame (RFC 6455 §5.1)", ws_frame(0x81, "OPTIONS", false)},
      {"reserved opcode 0x3", ws_frame(0x83, "OPTIONS")},
      {"RSV1 set without an extension", ws_frame(0xC1, "OPTIONS")},
      {"continuation frame without a start", ws_frame(0x80, "OPTIONS")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    RawStream evil(edge_->endpoint(Transport::ws));
    evil.write(ws_upgrade(port));
    const std::string answer = evil.read_until("\r\n\r\n", Millis(5000));
    ASSERT_TRUE(answer.starts_with("HTTP/1.1 101")) << answer;
    const std::size_t after_upgrade = evil.received().size();
    evil.write(c.frame);
    EXPECT_TRUE(evil.wait_eof(Millis(5000))) << "the connection stayed open";
    // Nothing SIP came back (a WebSocket close frame, opcode 0x8, is fine).
    const std::string rest = evil.received().substr(after_upgrade);
    EXPECT_TRUE(rest.empty() || (static_cast<unsigned char>(rest[0]) & 0x0f) == 0x8)
        << "unexpected frame after " << c.what;
  }
  expect_edge_still_serves();
}

}  // namespace
}  // namespace edge::test
