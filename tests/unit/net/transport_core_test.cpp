// Core next hop: persistent TCP/TLS/UDP connection, from_core delivery and framing, queueing while down,
// reconnect after a core restart or a broken stream.
#include "transport_test_support.h"

namespace edge::net::test {
namespace {

using flow::Transport;

// A stand-in for the core registrar: accepts the edge's connection on loopback.
class FakeCore {
 public:
  explicit FakeCore(std::uint16_t at = 0) { open(at); }
  void open(std::uint16_t at) {
    acc = std::make_unique<tcp::acceptor>(io);
    const tcp::endpoint e(asio::ip::make_address("127.0.0.1"), at);
    acc->open(e.protocol());
    acc->set_option(asio::socket_base::reuse_address(true));
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
  void start(Transport t, std::uint16_t core_port, std::size_t max_queued = 64) {
    auto cfg = test_config({listen(Transport::tcp)});
    cfg.core.enabled = true;
    cfg.core.transport = t;
    cfg.core.port = core_port;
    cfg.core.reconnect_initial = 20ms;
    cfg.core.reconnect_max = 200ms;
    cfg.core.max_queued = max_queued;
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

TEST_F(CoreTest, ReconnectsAfterTheCoreRestartsAndSendsWhatWasQueued) {
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
  const std::string queued = sip_request("OPTIONS", "queued");
  ASSERT_TRUE(tr->send_to_core(queued));
  std::this_thread::sleep_for(300ms);  // a few failed attempts with back-off

  // The core comes back on the same port.
  core.open(port);
  auto again = core.accept<TcpClient>(5s);
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->read_until(queued));
  EXPECT_GE(tr->stats().core_connects, 2u);
  EXPECT_GE(tr->stats().core_disconnects, 1u);
  ASSERT_TRUE(again->write(sip_request("BYE", "after")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_TRUE(handler->messages()[0].from_core);
}

TEST_F(CoreTest, QueueWhileDownIsBounded) {
  FakeCore core;
  const auto port = core.port;
  core.close();  // nobody listens
  start(Transport::tcp, port, 2);
  EXPECT_TRUE(tr->send_to_core("a"));
  EXPECT_TRUE(tr->send_to_core("b"));
  EXPECT_FALSE(tr->send_to_core("c"));
  EXPECT_EQ(tr->stats().core_queue_full, 1u);
}

TEST_F(CoreTest, UdpCore) {
  asio::io_context io;
  udp::socket core(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  start(Transport::udp, core.local_endpoint().port());
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
  const std::string out = sip_request("REGISTER", "tls-core");
  ASSERT_TRUE(tr->send_to_core(out));
  ASSERT_TRUE(conn->read_until(out));
  ASSERT_TRUE(conn->write(sip_request("OPTIONS", "tls-in")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_TRUE(handler->messages()[0].from_core);
  EXPECT_EQ(handler->messages()[0].flow.transport, Transport::tls);
}

}  // namespace
}  // namespace edge::net::test
