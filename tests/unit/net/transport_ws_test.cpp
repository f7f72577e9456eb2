// WS and WSS transports (RFC 7118): "sip" subprotocol, one message per WS message, pings, CRLF, limits.
#include "transport_test_support.h"

namespace edge::net::test {
namespace {

using flow::Transport;
namespace http = beast::http;

class WsTest : public ::testing::Test {
 protected:
  void start(TransportConfig cfg) {
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  void start() {
    auto cfg = test_config({listen(Transport::ws), listen(Transport::ws, "::1"), listen(Transport::wss)});
    cfg.tls = cert.tls();
    start(cfg);
  }
  tcp::endpoint ws4() const { return ep("127.0.0.1", tr->port(Transport::ws)); }

  TestCert cert;
  std::shared_ptr<ssl::context> client_ctx = client_tls_context();
  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

using PlainWs = WsClient<tcp::socket>;
using SecureWs = WsClient<ssl::stream<tcp::socket>>;

TEST_F(WsTest, UpgradeEchoesSipSubprotocolAndDeliversOneMessagePerWsMessage) {
  start();
  handler->echo_prefix = "echo:";
  PlainWs c;
  ASSERT_TRUE(c.connect(ws4(), "foo, sip"));
  EXPECT_EQ(c.response[http::field::sec_websocket_protocol], "sip");
  const std::string m = sip_request("OPTIONS", "w1");
  ASSERT_TRUE(c.send(m));
  std::string got;
  ASSERT_TRUE(c.read(got));
  EXPECT_EQ(got, "echo:" + m);
  EXPECT_TRUE(c.ws.got_text());
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_EQ(handler->messages()[0].bytes, m);
  EXPECT_EQ(handler->messages()[0].flow.transport, Transport::ws);
}

// RFC 7118 §4.2: a SIP message that is not UTF-8 (a binary body, a Latin-1 display name passed on
// as it came) goes in a binary frame; a text frame would make the peer fail the connection.
TEST_F(WsTest, AMessageThatIsNotUtf8GoesInABinaryFrame) {
  start();
  handler->echo_prefix = "echo:";
  PlainWs c;
  ASSERT_TRUE(c.connect(ws4(), "sip"));
  // In a binary frame (send() writes text; a text frame with these bytes is refused on the way in).
  const std::string latin1 = sip_request("MESSAGE", "w-latin1", "Zo\xeb");
  c.ws.binary(true);
  auto w =
      run_op(c.io, [&](OpHandler h) { c.ws.async_write(asio::buffer(latin1.data(), latin1.size()), h); });
  ASSERT_FALSE(w.ec) << w.ec.message();
  std::string got;
  ASSERT_TRUE(c.read(got));
  EXPECT_EQ(got, "echo:" + latin1);
  EXPECT_TRUE(c.ws.got_binary());
  // The next one is UTF-8 again: a text frame.
  const std::string utf8 = sip_request("MESSAGE", "w-utf8", "Zo\xc3\xab");
  ASSERT_TRUE(c.send(utf8));
  ASSERT_TRUE(c.read(got));
  EXPECT_EQ(got, "echo:" + utf8);
  EXPECT_TRUE(c.ws.got_text());
}

TEST_F(WsTest, WorksOverIpv6AndOverTls) {
  start();
  PlainWs six;
  ASSERT_TRUE(six.connect(ep("::1", tr->port(Transport::ws, flow::Family::ipv6))));
  SecureWs sec(*client_ctx);
  ASSERT_TRUE(sec.connect(ep("127.0.0.1", tr->port(Transport::wss))));
  EXPECT_EQ(sec.response[http::field::sec_websocket_protocol], "sip");
  ASSERT_TRUE(six.send(sip_request("OPTIONS", "six")));
  ASSERT_TRUE(sec.send(sip_request("OPTIONS", "sec")));
  ASSERT_TRUE(handler->wait_messages(2));
  FlowKey wss_key;
  for (const auto& m : handler->messages()) {
    if (m.flow.transport == Transport::wss) {
      wss_key = m.flow;
      EXPECT_NE(m.bytes.find("Call-ID: sec"), std::string::npos);
    } else {
      EXPECT_EQ(m.flow.transport, Transport::ws);
      EXPECT_EQ(m.flow.remote.family, flow::Family::ipv6);
    }
  }
  ASSERT_TRUE(tr->send_to_flow(wss_key, "to-wss"));
  std::string got;
  ASSERT_TRUE(sec.read(got));
  EXPECT_EQ(got, "to-wss");
}

TEST_F(WsTest, UpgradeWithoutSipSubprotocolIsRefused) {
  start();
  PlainWs c;
  EXPECT_FALSE(c.connect(ws4(), "chat"));
  PlainWs none;
  EXPECT_FALSE(none.connect(ws4(), ""));
  EXPECT_TRUE(eventually([&] { return tr->stats().upgrade_refused == 2u; })) << tr->stats().upgrade_refused;
  EXPECT_TRUE(eventually([&] { return tr->stats().connections_now == 0; }));
}

TEST_F(WsTest, PingIsAnsweredAndCrlfKeepAliveIsAnswered) {
  start();
  PlainWs c;
  ASSERT_TRUE(c.connect(ws4()));
  bool pong = false;
  c.ws.control_callback([&](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::pong) pong = true;
  });
  auto r = run_op(c.io, [&](OpHandler h) { c.ws.async_ping({}, h); });
  ASSERT_FALSE(r.ec);
  ASSERT_TRUE(c.send("\r\n\r\n"));
  std::string got;
  ASSERT_TRUE(c.read(got));  // the pong arrives (control callback) before the CRLF answer
  EXPECT_TRUE(pong);
  EXPECT_EQ(got, "\r\n");
  EXPECT_TRUE(handler->messages().empty());
  EXPECT_GE(tr->stats().of(Transport::ws).keepalives, 2u);
}

TEST_F(WsTest, OversizedWsMessageClosesTheConnection) {
  auto cfg = test_config({listen(Transport::ws)});
  cfg.limits.max_message_size = 1024;
  start(cfg);
  PlainWs c;
  ASSERT_TRUE(c.connect(ws4()));
  // The server may close while the frame is still being written: the send may fail.
  (void)c.send(sip_request("MESSAGE", "big", std::string(4000, 'x')));
  std::string got;
  EXPECT_FALSE(c.read(got, 3s));
  EXPECT_TRUE(c.closed);
  EXPECT_TRUE(eventually([&] { return tr->stats().oversized == 1u; })) << tr->stats().oversized;
  EXPECT_TRUE(handler->messages().empty());
}

TEST_F(WsTest, ClosingTheWebSocketEndsTheFlow) {
  start();
  FlowKey k;
  {
    PlainWs c;
    ASSERT_TRUE(c.connect(ws4()));
    ASSERT_TRUE(c.send(sip_request("OPTIONS", "gone")));
    ASSERT_TRUE(handler->wait_messages(1));
    k = handler->messages()[0].flow;
    run_op(c.io, [&](OpHandler h) { c.ws.async_close(websocket::close_code::normal, h); });
  }
  ASSERT_TRUE(handler->wait_closed(k));
  EXPECT_FALSE(tr->flow_alive(k));
}

TEST_F(WsTest, StalledUpgradeIsClosedAfterTheHeaderTimeout) {
  auto cfg = test_config({listen(Transport::ws)});
  cfg.limits.header_read_timeout = 300ms;
  start(cfg);
  TcpClient raw;
  ASSERT_TRUE(raw.connect(ws4()));
  ASSERT_TRUE(raw.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
  ASSERT_TRUE(raw.wait_closed(3s));
  EXPECT_TRUE(eventually([&] { return tr->stats().read_timeouts == 1u; })) << tr->stats().read_timeouts;
}

}  // namespace
}  // namespace edge::net::test
