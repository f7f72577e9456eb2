// Core next hop: persistent TCP/TLS/UDP connection, from_core delivery and framing, refusal while down,
// reconnect after a core restart or a broken stream, CRLF keep-alives, the queue's bound and maximum age.
#include "transport_test_support.h"

namespace edge::net::test {
namespace {

using flow::Transport;

// A stand-in for the core registrar: accepts the edge's connection on loopback.
class FakeCore {
 public:
  // receive_buffer: SO_RCVBUF of the accepted connections (0: the kernel's), small to stall the edge.
  explicit FakeCore(std::uint16_t at = 0, int receive_buffer = 0) { open(at, receive_buffer); }
  void open(std::uint16_t at, int receive_buffer = 0) {
    acc = std::make_unique<tcp::acceptor>(io);
    const tcp::endpoint e(asio::ip::make_address("127.0.0.1"), at);
    acc->open(e.protocol());
    acc->set_option(asio::socket_base::reuse_address(true));
    if (receive_buffer > 0) acc->set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    acc->bind(e);
    acc->listen();
    this->port = acc->local_endpoint().port();
  }
  void close() { acc.reset(); }
  template <class Client, class... Args>
  std::unique_ptr<Client> accept(ms t, Args&&... args) {
    auto c = std::make_unique<Client>(std::forward<Args>(args)...);
    auto r = run_op(
        io, [&](OpHandler h) { acc->async_accept(c->s.lowest_layer(), h); }, t);
    if (r.ec) return nullptr;
    if constexpr (std::is_same_v<Client, TlsClient>) {
      auto hs = run_op(c->io, [&](OpHandler h) { c->s.async_handshake(ssl::stream_base::server, h); });
      if (hs.ec) return nullptr;
    }
    return c;
  }
  asio::io_context io;
  std::unique_ptr<tcp::acceptor> acc;
  std::uint16_t port = 0;
};

class CoreTest : public ::testing::Test {
 protected:
  void start(Transport t, std::uint16_t core_port, std::size_t max_queued = 64,
             const std::function<void(CoreConfig&)>& tweak = {}) {
    auto cfg = test_config({listen(Transport::tcp)});
    cfg.core.enabled = true;
    cfg.core.transport = t;
    cfg.core.port = core_port;
    cfg.core.reconnect_initial = 20ms;
    cfg.core.reconnect_max = 200ms;
    cfg.core.max_queued = max_queued;
    cfg.core.keepalive_interval = 0ms;  // the fake core answers no CRLF pings unless a test says so
    if (tweak) tweak(cfg.core);
    if (t == Transport::tls) cfg.tls = cert.tls();  // our client certificate; no CA: not verified
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }

  TestCert cert;
  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

TEST_F(CoreTest, SendsToTheCoreAndDeliversItsMessagesFromCore) {
  FakeCore core;
  start(Transport::tcp, core.port);
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  const std::string out = sip_request("REGISTER", "to-core");
  ASSERT_TRUE(tr->send_to_core(out));
  ASSERT_TRUE(conn->read_until(out));

  const std::string in = sip_request("INVITE", "from-core");
  ASSERT_TRUE(conn->write(in + "\r\n\r\n"));
  ASSERT_TRUE(handler->wait_messages(1));
  const auto m = handler->messages()[0];
  EXPECT_TRUE(m.from_core);
  EXPECT_EQ(m.bytes, in);
  EXPECT_EQ(m.flow.transport, Transport::tcp);
  EXPECT_EQ(m.flow.remote.port, core.port);
  ASSERT_TRUE(conn->read_until(out + "\r\n"));  // the core's ping got its pong
}

// The core link frames with the same driver as client connections (StreamFramer); the bug it had
// at 18,000 tx/s: a body split across reads with the next message behind it.
TEST_F(CoreTest, ABodySplitAcrossReadsWithTheNextMessageBehindItIsFramedExactly) {
  FakeCore core;
  start(Transport::tcp, core.port);
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  const std::string m1 = sip_request("MESSAGE", "core-split", "a body of twenty-eight bytes");
  const std::string m2 = sip_request("MESSAGE", "core-behind", "next");
  const std::size_t cut = m1.size() - 10;  // inside the body
  ASSERT_TRUE(conn->write(m1.substr(0, cut)));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(conn->write(m1.substr(cut) + "\r\n" + m2));
  ASSERT_TRUE(handler->wait_messages(2));
  EXPECT_EQ(handler->messages()[0].bytes, m1);
  EXPECT_EQ(handler->messages()[1].bytes, m2);
  EXPECT_FALSE(conn->read_some(100ms));  // a lone CRLF is not answered
  EXPECT_FALSE(conn->closed);
  EXPECT_EQ(tr->stats().framing_errors, 0u);
  EXPECT_EQ(tr->stats().core_disconnects, 0u);
}

// A stream the core broke is not answered (the core is not a client): the link starts over.
TEST_F(CoreTest, AnUnframeableStreamFromTheCoreDropsTheConnectionAndReconnects) {
  FakeCore core;
  start(Transport::tcp, core.port);
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  std::string broken = sip_request("NOTIFY", "no-length");
  broken.erase(broken.find("Content-Length: 0\r\n"), 19);
  ASSERT_TRUE(conn->write(broken));
  ASSERT_TRUE(conn->wait_closed(3s));
  EXPECT_TRUE(conn->inbox.empty()) << conn->inbox;
  EXPECT_TRUE(eventually([&] { return tr->stats().framing_errors == 1u; }));
  EXPECT_TRUE(handler->messages().empty());
  auto again = core.accept<TcpClient>(5s);
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->write(sip_request("NOTIFY", "fresh")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_NE(handler->messages()[0].bytes.find("Call-ID: fresh"), std::string::npos);
  EXPECT_EQ(tr->stats().core_disconnects, 1u);
}

// RFC 3261 §16.9: while the link is down a send is refused at once (the proxy
// answers 503 with Retry-After) instead of waiting for a reconnect that may take
// long; what was refused is never sent later.
TEST_F(CoreTest, WhileTheCoreIsDownSendsAreRefusedAtOnceAndNothingRefusedIsSentAfterItReturns) {
  FakeCore core;
  const auto port = core.port;
  start(Transport::tcp, port);
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));

  // The core goes away.
  conn.reset();
  core.close();
  ASSERT_TRUE(eventually([&] { return !tr->stats().core_connected; }));
  EXPECT_FALSE(tr->send_to_core(sip_request("INVITE", "while-down")));
  EXPECT_FALSE(tr->send_to_core(sip_request("OPTIONS", "while-down-2")));
  EXPECT_EQ(tr->stats().core_refused_down, 2u);
  EXPECT_EQ(tr->stats().core_queued_now, 0u);

  // The core comes back on the same port.
  core.open(port);
  auto again = core.accept<TcpClient>(5s);
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  const std::string after = sip_request("OPTIONS", "after-return");
  ASSERT_TRUE(tr->send_to_core(after));
  ASSERT_TRUE(again->read_until(after));
  EXPECT_EQ(again->inbox, after) << "something refused while down reached the core";
  EXPECT_GE(tr->stats().core_connects, 2u);
  EXPECT_GE(tr->stats().core_disconnects, 1u);
  ASSERT_TRUE(again->write(sip_request("BYE", "after")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_TRUE(handler->messages()[0].from_core);
}

// Only the first connection attempt after start is waited for; once it failed
// (nobody listens) sends are refused, and what waited for it is never sent stale.
TEST_F(CoreTest, OnceTheFirstAttemptFailedNothingIsQueued) {
  FakeCore core;
  const auto port = core.port;
  core.close();  // nobody listens
  start(Transport::tcp, port, 1000, [](CoreConfig& c) { c.max_queue_age = 100ms; });
  const std::string early = sip_request("OPTIONS", "early");
  ASSERT_TRUE(eventually([&] { return !tr->send_to_core(early); }));
  EXPECT_EQ(tr->stats().core_refused_down, 1u);
  EXPECT_EQ(tr->stats().core_queue_full, 0u);
  std::this_thread::sleep_for(200ms);  // whatever the first attempt held is stale now
  core.open(port);
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  const std::string fresh = sip_request("OPTIONS", "fresh");
  ASSERT_TRUE(tr->send_to_core(fresh));
  ASSERT_TRUE(conn->read_until(fresh));
  EXPECT_EQ(conn->inbox, fresh);
  EXPECT_TRUE(eventually([&] { return tr->stats().core_queued_now == 0u; }));
}

// A core that accepted and then went silent (stopped, black-holed): the CRLFCRLF
// ping (RFC 5626 §4.4.1) goes unanswered, so the link is dropped after
// keepalive_interval + keepalive_timeout, not after TCP's minutes, and made again.
TEST_F(CoreTest, ACoreThatStopsAnsweringPingsIsDroppedAndReconnected) {
  FakeCore core;
  start(Transport::tcp, core.port, 64, [](CoreConfig& c) {
    c.keepalive_interval = 100ms;
    c.keepalive_timeout = 200ms;
  });
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  // The first ping goes at connect; the link is up once it is answered.
  ASSERT_TRUE(conn->read_until("\r\n\r\n", 3s)) << "no CRLFCRLF ping from the edge";
  EXPECT_FALSE(tr->stats().core_connected) << "up before the core answered";
  ASSERT_TRUE(conn->write("\r\n"));
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  // The core goes silent: the next ping is never answered and the edge gives up.
  ASSERT_TRUE(conn->read_until("\r\n\r\n\r\n\r\n", 3s)) << "no second ping";
  ASSERT_TRUE(conn->wait_closed(3s)) << "a silent core was not dropped";
  EXPECT_TRUE(eventually([&] { return tr->stats().core_keepalive_timeouts == 1u; }));
  EXPECT_EQ(tr->stats().core_disconnects, 1u);
  EXPECT_FALSE(tr->send_to_core(sip_request("OPTIONS", "while-silent")));
  // The edge redials; a connection the core's kernel accepts is not up until the core answers.
  auto again = core.accept<TcpClient>(5s);
  ASSERT_NE(again, nullptr) << "the edge did not reconnect";
  ASSERT_TRUE(again->read_until("\r\n\r\n", 3s));
  ASSERT_TRUE(again->write("\r\n"));
  EXPECT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  EXPECT_EQ(again->inbox, "\r\n\r\n") << "something refused meanwhile reached the core";
}

// A core that answers every ping keeps its link; the pings keep coming.
TEST_F(CoreTest, ACoreThatAnswersPingsKeepsItsLink) {
  FakeCore core;
  start(Transport::tcp, core.port, 64, [](CoreConfig& c) {
    c.keepalive_interval = 50ms;
    c.keepalive_timeout = 500ms;
  });
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  for (int i = 1; i <= 5; ++i) {
    std::string want;
    for (int k = 0; k < i; ++k) want += "\r\n\r\n";
    ASSERT_TRUE(conn->read_until(want, 3s)) << "ping " << i;
    ASSERT_TRUE(conn->write("\r\n"));  // the pong
  }
  const std::string out = sip_request("OPTIONS", "still-up");
  ASSERT_TRUE(tr->send_to_core(out));
  ASSERT_TRUE(conn->read_until(out));
  EXPECT_FALSE(conn->closed);
  EXPECT_EQ(tr->stats().core_keepalive_timeouts, 0u);
  EXPECT_EQ(tr->stats().core_disconnects, 0u);
}

// Keep-alives off (0): no ping is ever sent.
TEST_F(CoreTest, KeepAlivesOffSendsNoPing) {
  FakeCore core;
  start(Transport::tcp, core.port, 64, [](CoreConfig& c) {
    c.keepalive_interval = 0ms;
    c.keepalive_timeout = 10ms;
  });
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  EXPECT_FALSE(conn->read_some(300ms)) << conn->inbox;
  EXPECT_FALSE(conn->closed);
  EXPECT_EQ(tr->stats().core_keepalive_timeouts, 0u);
}

namespace {
// Sends large messages to a core that reads nothing until the link stops
// writing (the kernel buffers are full): then everything else sent waits in the
// link's queue. False when it never stalls (bounded).
bool stall(Transports& tr, const std::function<bool(const std::string&)>& send) {
  const std::string filler = sip_request("MESSAGE", "filler", std::string(60'000, 'x'));
  for (int batch = 0; batch < 400; ++batch) {
    for (int i = 0; i < 8; ++i) {
      if (!send(filler)) return tr.stats().core_queued_now > 0;
    }
    const auto before = tr.stats().core_messages_out;
    std::this_thread::sleep_for(20ms);
    const auto s = tr.stats();
    if (s.core_queued_now > 0 && s.core_messages_out == before) return true;
  }
  return false;
}
}  // namespace

// Writes can fall behind (a core that stopped reading): the queue is bounded
// even while the link is up.
TEST_F(CoreTest, TheQueueIsBoundedWhileTheLinkIsBehind) {
  FakeCore core(0, 4096);
  start(Transport::tcp, core.port, 4, [](CoreConfig& c) { c.keepalive_interval = 0ms; });
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  bool refused = false;
  ASSERT_TRUE(stall(*tr, [&](const std::string& m) {
    refused = !tr->send_to_core(m);
    return !refused;
  }));
  for (int i = 0; i < 8 && !refused; ++i) refused = !tr->send_to_core(sip_request("OPTIONS", "more"));
  EXPECT_TRUE(refused);
  EXPECT_GE(tr->stats().core_queue_full, 1u);
  EXPECT_LE(tr->stats().core_queued_now, 4u);
}

// No stale message reaches the core: one that waited longer than max_queue_age
// behind a stalled link is dropped, not written, once the link moves again.
TEST_F(CoreTest, AMessageOlderThanMaxQueueAgeIsDroppedNotWritten) {
  FakeCore core(0, 4096);
  start(Transport::tcp, core.port, 100'000, [](CoreConfig& c) {
    c.keepalive_interval = 0ms;
    c.max_queue_age = 300ms;
  });
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  ASSERT_TRUE(stall(*tr, [&](const std::string& m) { return tr->send_to_core(m); }));
  const std::string stale = sip_request("INVITE", "stale-invite");
  ASSERT_TRUE(tr->send_to_core(stale));
  std::this_thread::sleep_for(600ms);  // twice max_queue_age: certainly stale

  // The core reads again: whatever was in the kernel's buffers arrives, the rest is dropped.
  ASSERT_TRUE(eventually(
      [&] {
        conn->read_some(20ms);
        return tr->stats().core_queued_now == 0;
      },
      20s));
  const std::string fresh = sip_request("OPTIONS", "fresh");
  ASSERT_TRUE(tr->send_to_core(fresh));
  ASSERT_TRUE(conn->read_until(fresh, 10s));
  EXPECT_EQ(conn->inbox.find("stale-invite"), std::string::npos) << "a stale message reached the core";
  EXPECT_GE(tr->stats().core_stale_dropped, 1u);
}

TEST_F(CoreTest, UdpCore) {
  asio::io_context io;
  udp::socket core(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  start(Transport::udp, core.local_endpoint().port());
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  const std::string out = sip_request("OPTIONS", "udp-core");
  ASSERT_TRUE(tr->send_to_core(out));
  std::array<char, 4096> buf{};
  udp::endpoint edge;
  auto r = run_op(io, [&](OpHandler h) { core.async_receive_from(asio::buffer(buf), edge, h); });
  ASSERT_FALSE(r.ec);
  EXPECT_EQ(std::string(buf.data(), r.n), out);
  const std::string in = sip_request("NOTIFY", "udp-in");
  core.send_to(asio::buffer(in), edge);
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_TRUE(handler->messages()[0].from_core);
  EXPECT_EQ(handler->messages()[0].flow.transport, Transport::udp);
}

TEST_F(CoreTest, TlsCore) {
  FakeCore core;
  ssl::context server(ssl::context::tls_server);
  server.use_certificate_chain_file(cert.cert);
  server.use_private_key_file(cert.key, ssl::context::pem);
  start(Transport::tls, core.port);
  auto conn = core.accept<TlsClient>(5s, server);
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  const std::string out = sip_request("REGISTER", "tls-core");
  ASSERT_TRUE(tr->send_to_core(out));
  ASSERT_TRUE(conn->read_until(out));
  ASSERT_TRUE(conn->write(sip_request("OPTIONS", "tls-in")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_TRUE(handler->messages()[0].from_core);
  EXPECT_EQ(handler->messages()[0].flow.transport, Transport::tls);
}

// Issue 17: one message from the core over limits.max_message_size (by its
// Content-Length) is refused alone: a request gets 513 back on the link, the
// link stays up and the message behind it is delivered, also when the oversized
// body arrives over several reads.
TEST_F(CoreTest, AnOversizedMessageFromTheCoreIsRefusedAloneAndTheLinkStaysUp) {
  FakeCore core;
  start(Transport::tcp, core.port);
  auto conn = core.accept<TcpClient>(5s);
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  const std::string huge = sip_request("MESSAGE", "too-big", std::string(70'000, 'x'));  // limit: 65,535
  const std::string next = sip_request("MESSAGE", "behind");
  ASSERT_TRUE(conn->write(huge + next));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_EQ(handler->messages()[0].bytes, next);
  ASSERT_TRUE(conn->read_until("Call-ID: too-big")) << conn->inbox;
  EXPECT_EQ(conn->inbox.rfind("SIP/2.0 513 ", 0), 0u) << conn->inbox;

  const std::string huge2 = sip_request("MESSAGE", "too-big-2", std::string(200'000, 'y'));
  const std::string next2 = sip_request("MESSAGE", "behind-2");
  for (std::size_t at = 0; at < huge2.size(); at += 30'000) {
    ASSERT_TRUE(conn->write(std::string_view(huge2).substr(at, 30'000)));
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(conn->write(next2));
  ASSERT_TRUE(handler->wait_messages(2));
  EXPECT_EQ(handler->messages()[1].bytes, next2);
  ASSERT_TRUE(conn->read_until("Call-ID: too-big-2")) << conn->inbox;
  const auto s = tr->stats();
  EXPECT_EQ(s.core_disconnects, 0u);
  EXPECT_EQ(s.framing_errors, 0u);
  EXPECT_EQ(s.oversized, 2u);
  EXPECT_FALSE(conn->closed);
}

}  // namespace
}  // namespace edge::net::test
