// limits.unregistered_connection_lifetime: a stream connection that never registers is closed when its
// lifetime is over, however busy its keep-alives keep it; a registered one, and the core's own, are not.
#include "transport_test_support.h"

namespace edge::net::test {
namespace {

using flow::Transport;

constexpr auto kLifetime = 400ms;

class UnregisteredLifetimeTest : public ::testing::Test {
 protected:
  void start(bool core_at_loopback = false) {
    auto cfg = test_config({listen(Transport::tcp)});
    cfg.limits.unregistered_connection_lifetime = kLifetime;
    cfg.limits.idle_timeout = 30s;  // silence never ends these connections here
    if (core_at_loopback) {
      cfg.core.enabled = true;  // nothing listens there: the link keeps retrying, harmless
      cfg.core.address = "127.0.0.1";
      cfg.core.port = 9;
      cfg.core.reconnect_initial = 100ms;
      cfg.core.reconnect_max = 1s;
    }
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  tcp::endpoint edge() const { return ep("127.0.0.1", tr->port(Transport::tcp)); }
  FlowKey key_of(TcpClient& c) const {
    const auto l = c.local();
    const auto server = c.s.remote_endpoint();
    return {Transport::tcp, *flow::Endpoint::parse(server.address().to_string(), server.port()),
            *flow::Endpoint::parse(l.address().to_string(), l.port())};
  }
  // CRLFCRLF pings, each answered, until the edge closes the connection or `rounds` are done; the
  // number of pongs received.
  int ping_until_closed(TcpClient& c, int rounds) {
    int pongs = 0;
    for (int i = 0; i < rounds; ++i) {
      if (!c.write("\r\n\r\n")) break;
      c.inbox.clear();
      if (!c.read_until("\r\n", 1s)) break;
      ++pongs;
      std::this_thread::sleep_for(50ms);
    }
    return pongs;
  }

  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

TEST_F(UnregisteredLifetimeTest, KeepAlivesDoNotExtendTheLifetimeOfAConnectionThatNeverRegisters) {
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(edge()));
  ASSERT_TRUE(c.write(sip_request("OPTIONS", "never-registers")));
  ASSERT_TRUE(handler->wait_messages(1));
  const FlowKey key = key_of(c);
  // Pinging every 50 ms keeps it far from the 30 s idle timeout; the lifetime still ends it.
  const int pongs = ping_until_closed(c, 200);  // bounded: 200 x 50 ms is 25 lifetimes
  EXPECT_GE(pongs, 2) << "the keep-alives were answered while the connection lived";
  EXPECT_LT(pongs, 200) << "the connection outlived its lifetime";
  ASSERT_TRUE(c.wait_closed());
  ASSERT_TRUE(handler->wait_closed(key));
  EXPECT_FALSE(tr->flow_alive(key));
  const auto s = tr->stats();
  EXPECT_EQ(s.unregistered_lifetime_closes, 1u);
  EXPECT_EQ(s.idle_timeouts, 0u);
}

TEST_F(UnregisteredLifetimeTest, ARegisteredConnectionOutlivesTheLifetime) {
  start();
  TcpClient reg, unreg;
  ASSERT_TRUE(reg.connect(edge()));
  ASSERT_TRUE(unreg.connect(edge()));
  ASSERT_TRUE(reg.write(sip_request("REGISTER", "registers")));
  ASSERT_TRUE(unreg.write(sip_request("OPTIONS", "does-not")));
  ASSERT_TRUE(handler->wait_messages(2));
  tr->mark_registered(key_of(reg), 30s);
  // The unregistered one is closed by its lifetime; the registered one, pinged all along, is not.
  ASSERT_TRUE(unreg.wait_closed(5s));
  EXPECT_EQ(ping_until_closed(reg, 5), 5);
  EXPECT_TRUE(tr->flow_alive(key_of(reg)));
  EXPECT_EQ(tr->stats().unregistered_lifetime_closes, 1u);
}

TEST_F(UnregisteredLifetimeTest, TheCoresOwnConnectionFromItsAddressIsExempt) {
  start(/*core_at_loopback=*/true);
  // From the core's address (127.0.0.1) and from another loopback address.
  TcpClient from_core;
  ASSERT_TRUE(from_core.connect(edge()));
  TcpClient stranger;
  stranger.s.open(tcp::v4());
  stranger.s.bind(tcp::endpoint(asio::ip::make_address("127.0.0.2"), 0));
  ASSERT_TRUE(stranger.connect(edge()));
  ASSERT_TRUE(from_core.write(sip_request("OPTIONS", "core-side")));
  ASSERT_TRUE(stranger.write(sip_request("OPTIONS", "stranger")));
  ASSERT_TRUE(handler->wait_messages(2));
  ASSERT_TRUE(stranger.wait_closed(5s));
  EXPECT_EQ(ping_until_closed(from_core, 5), 5);
  EXPECT_TRUE(tr->flow_alive(key_of(from_core)));
  EXPECT_EQ(tr->stats().unregistered_lifetime_closes, 1u);
}

}  // namespace
}  // namespace edge::net::test
