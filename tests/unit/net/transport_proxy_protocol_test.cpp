// PROXY protocol listeners over real sockets (TCP, TLS, WS, WSS): the header's client names the flow and
// messages go back over the balancer's connection; untrusted, missing, slow headers close and count.
#include "transport_test_support.h"

namespace edge::net::test {
namespace {

using flow::Transport;

// "PROXY TCP4 <client> 127.0.0.1 <port> 5060\r\n"
std::string v1(const std::string& client, std::uint16_t port) {
  return "PROXY TCP4 " + client + " 127.0.0.1 " + std::to_string(port) + " 5060\r\n";
}

// A v2 PROXY TCP4 header for 192.0.2.<last>:<port> -> 127.0.0.1:5060.
std::string v2(std::uint8_t last, std::uint16_t port) {
  std::string h("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16);
  const unsigned char a[12] = {192,
                               0,
                               2,
                               last,
                               127,
                               0,
                               0,
                               1,
                               static_cast<unsigned char>(port >> 8),
                               static_cast<unsigned char>(port & 0xFF),
                               0x13,
                               0xC4};
  h.append(reinterpret_cast<const char*>(a), sizeof a);
  return h;
}

ListenerConfig proxied(Transport t) {
  ListenerConfig l = listen(t);
  l.proxy_protocol = true;
  return l;
}

class ProxyProtocolTest : public ::testing::Test {
 protected:
  void start(const std::string& trusted = "127.0.0.1/32", std::size_t per_source = 100) {
    auto cfg = test_config(
        {proxied(Transport::tcp), proxied(Transport::tls), proxied(Transport::ws), proxied(Transport::wss)});
    cfg.tls = cert.tls();
    cfg.proxy_trusted_sources = {trusted};
    cfg.limits.max_per_source_address = per_source;
    cfg.limits.header_read_timeout = 300ms;
    handler = std::make_shared<RecordingHandler>();
    handler->echo_prefix = "echo:";
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  tcp::endpoint at(Transport t) const { return ep("127.0.0.1", tr->port(t)); }
  FlowKey last_flow() const { return handler->messages().back().flow; }
  bool connections_back_to(std::size_t n) {
    return eventually([&] { return tr->stats().connections_now == n; });
  }

  TestCert cert;
  std::shared_ptr<ssl::context> client_ctx = client_tls_context();
  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

TEST_F(ProxyProtocolTest, TcpAndTlsFlowsAreNamedByTheHeaderAndAnsweredOverTheConnection) {
  start();
  TcpClient tcp_c;
  // The header and the first request in one segment, as a balancer may send them.
  ASSERT_TRUE(tcp_c.connect(at(Transport::tcp)));
  const std::string m = sip_request("OPTIONS", "p1");
  ASSERT_TRUE(tcp_c.write(v2(7, 40312) + m));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_EQ(handler->messages()[0].bytes, m);
  EXPECT_EQ(last_flow().remote, *flow::Endpoint::parse("192.0.2.7", 40312));
  EXPECT_EQ(last_flow().local.port, tr->port(Transport::tcp)) << "the local side stays our listener";
  ASSERT_TRUE(tcp_c.read_until("echo:" + m)) << "the answer goes back over the balancer's connection";

  TlsClient tls_c(*client_ctx);
  ASSERT_TRUE(tls_c.connect(at(Transport::tls), v1("198.51.100.9", 5061)));
  ASSERT_TRUE(tls_c.write(sip_request("OPTIONS", "p2")));
  ASSERT_TRUE(handler->wait_messages(2));
  EXPECT_EQ(last_flow().transport, Transport::tls);
  EXPECT_EQ(last_flow().remote, *flow::Endpoint::parse("198.51.100.9", 5061));
  ASSERT_TRUE(tls_c.read_until("echo:"));
  EXPECT_EQ(tr->stats().proxy_accepted, 2u);
}

TEST_F(ProxyProtocolTest, WsAndWssUpgradesFollowTheHeader) {
  start();
  WsClient<tcp::socket> ws_c;
  ASSERT_TRUE(ws_c.connect(at(Transport::ws), "sip", v1("203.0.113.5", 6000)));
  ASSERT_TRUE(ws_c.send(sip_request("OPTIONS", "w1")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_EQ(last_flow().remote, *flow::Endpoint::parse("203.0.113.5", 6000));
  std::string got;
  ASSERT_TRUE(ws_c.read(got));
  EXPECT_EQ(got.rfind("echo:", 0), 0u);

  WsClient<ssl::stream<tcp::socket>> wss_c(*client_ctx);
  ASSERT_TRUE(wss_c.connect(at(Transport::wss), "sip", v2(9, 6001)));
  ASSERT_TRUE(wss_c.send(sip_request("OPTIONS", "w2")));
  ASSERT_TRUE(handler->wait_messages(2));
  EXPECT_EQ(last_flow().transport, Transport::wss);
  EXPECT_EQ(last_flow().remote, *flow::Endpoint::parse("192.0.2.9", 6001));
}

TEST_F(ProxyProtocolTest, TrustedSourceWithoutHeaderOrSilentIsClosedAndCounted) {
  start();
  TcpClient missing;
  ASSERT_TRUE(missing.connect(at(Transport::tcp)));
  ASSERT_TRUE(missing.write(sip_request("OPTIONS", "m1")));
  EXPECT_TRUE(missing.wait_closed());
  TcpClient malformed;
  ASSERT_TRUE(malformed.connect(at(Transport::tcp)));
  ASSERT_TRUE(malformed.write("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"));
  EXPECT_TRUE(malformed.wait_closed());
  TcpClient silent;
  ASSERT_TRUE(silent.connect(at(Transport::ws)));
  EXPECT_TRUE(silent.wait_closed(3s)) << "header_read_timeout bounds the wait";
  EXPECT_EQ(handler->messages().size(), 0u);
  const auto s = tr->stats();
  EXPECT_EQ(s.proxy_refused_missing, 1u);
  EXPECT_EQ(s.proxy_refused_malformed, 1u);
  EXPECT_EQ(s.proxy_refused_timeout, 1u);
  EXPECT_TRUE(connections_back_to(0)) << "admission given back";
}

TEST_F(ProxyProtocolTest, UntrustedSourceIsADirectClientAndMustNotSendAHeader) {
  start("127.0.0.9/32");  // the test's own 127.0.0.1 is not a balancer
  TcpClient direct;
  ASSERT_TRUE(direct.connect(at(Transport::tcp)));
  ASSERT_TRUE(direct.write("\r\n\r\n"));  // a keep-alive first is not mistaken for a v2 signature
  ASSERT_TRUE(direct.read_until("\r\n"));
  ASSERT_TRUE(direct.write(sip_request("OPTIONS", "d1")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_EQ(last_flow().remote.port, direct.local().port()) << "its own address";
  for (const std::string& forged : {v1("192.0.2.66", 1), v2(66, 1)}) {
    TcpClient c;
    ASSERT_TRUE(c.connect(at(Transport::tcp)));
    ASSERT_TRUE(c.write(forged + sip_request("OPTIONS", "f")));
    EXPECT_TRUE(c.wait_closed());
  }
  EXPECT_EQ(tr->stats().proxy_refused_untrusted, 2u);
  EXPECT_EQ(handler->messages().size(), 1u);
  EXPECT_TRUE(connections_back_to(1));
}

TEST_F(ProxyProtocolTest, PerSourceLimitCountsTheClientNamedByTheHeader) {
  start("127.0.0.1/32", 1);
  TcpClient a, b, other;
  ASSERT_TRUE(a.connect(at(Transport::tcp), v2(1, 1000)));
  ASSERT_TRUE(a.write(sip_request("OPTIONS", "a")));
  ASSERT_TRUE(handler->wait_messages(1));
  ASSERT_TRUE(b.connect(at(Transport::tcp), v2(1, 1001)));  // the same client address again
  EXPECT_TRUE(b.wait_closed());
  ASSERT_TRUE(other.connect(at(Transport::tcp), v2(2, 1000)));  // another client, same balancer
  ASSERT_TRUE(other.write(sip_request("OPTIONS", "o")));
  ASSERT_TRUE(handler->wait_messages(2));
  EXPECT_EQ(tr->stats().refused_per_address, 1u);
  EXPECT_EQ(tr->stats().flows_now[static_cast<std::size_t>(Transport::tcp)], 2u);
}

TEST_F(ProxyProtocolTest, StopWithAHeaderPendingClosesIt) {
  start();
  TcpClient pending;
  ASSERT_TRUE(pending.connect(at(Transport::tcp)));
  ASSERT_TRUE(pending.write("PROXY TCP4 "));
  ASSERT_TRUE(eventually([&] { return tr->stats().connections_now == 1; }));
  tr->pause();
  tr->stop();
  EXPECT_TRUE(pending.wait_closed());
}

TEST(ProxyProtocolConfig, ProxyListenersNeedTrustedSourcesAndStreams) {
  auto no_trust = test_config({proxied(Transport::tcp)});
  EXPECT_THROW(Transports(no_trust, std::make_shared<RecordingHandler>()).start(), TransportError);
  auto udp = test_config({proxied(Transport::udp)});
  udp.proxy_trusted_sources = {"10.0.0.0/8"};
  EXPECT_THROW(Transports(udp, std::make_shared<RecordingHandler>()).start(), TransportError);
  auto bad = test_config({proxied(Transport::tcp)});
  bad.proxy_trusted_sources = {"10.0.0.0/40"};
  EXPECT_THROW(Transports(bad, std::make_shared<RecordingHandler>()).start(), TransportError);
}

}  // namespace
}  // namespace edge::net::test
