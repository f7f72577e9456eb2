// Issue 8 "Resource exhaustion" against the real edged: connections beyond limits.max_connections and
// limits.max_per_source_address are refused cleanly and counted in the status line; half-open
// connections (silent TCP, TLS without a handshake, WS without an upgrade) are closed by the timeouts.
#include <thread>

#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

Endpoint from(const char* address) { return Endpoint{boost::asio::ip::make_address(address), 0}; }

class Limits : public HostileTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o = HostileTest::edged_options();
    o.extra.push_back({"limits.max_connections", "30"});
    o.extra.push_back({"limits.max_per_source_address", "10"});
    return o;
  }
  // A connection that the edge refused is closed by it at once, before any byte.
  static bool refused(RawStream& s) { return s.wait_eof(Millis(2000)); }
};

TEST_F(Limits, PerSourceAddressLimitRefusesOnlyThatAddress) {
  std::vector<std::unique_ptr<RawStream>> held;
  // The bystander is one connection from 127.0.0.1: nine more fill the quota.
  for (int i = 0; i < 9; ++i) held.push_back(std::make_unique<RawStream>(edge_->endpoint(Transport::tcp)));
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("connections") == 10; }));
  for (int i = 0; i < 3; ++i) {
    RawStream extra(edge_->endpoint(Transport::tcp));
    EXPECT_TRUE(refused(extra)) << "connection " << 11 + i << " from one address was accepted";
  }
  // Other addresses are not affected.
  TestUa& other = ua("other-address");
  ConnectOptions co;
  co.local = from("127.0.0.2");
  other.connect(Transport::tcp, edge_->endpoint(Transport::tcp), co);
  EXPECT_EQ(other.register_with().status(), 200);
  EXPECT_EQ(edge_->status().number("refused_per_address"), 3u);
  for (auto& s : held) EXPECT_FALSE(s->wait_eof(Millis(1))) << "a held connection was closed";
  other.close();
  held.clear();
  expect_unharmed();
}

TEST_F(Limits, MaxConnectionsRefusesBeyondTheTotal) {
  std::vector<std::unique_ptr<RawStream>> held;
  // 29 more from 127.0.0.2 .. 127.0.0.5 (under the per-address limit) reach the total of 30.
  for (int i = 0; i < 29; ++i) {
    const std::string a = "127.0.0." + std::to_string(2 + i / 8);
    held.push_back(std::make_unique<RawStream>(edge_->endpoint(Transport::tcp), from(a.c_str())));
  }
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("connections") == 30; }));
  for (const char* a : {"127.0.0.9", "127.0.0.10"}) {
    RawStream extra(edge_->endpoint(Transport::ws), from(a));
    EXPECT_TRUE(refused(extra)) << "connection 31 was accepted";
  }
  EXPECT_EQ(edge_->status().number("refused_max_connections"), 2u);
  // Room again after some leave.
  held.resize(20);
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("connections") == 21; }));
  TestUa& late = ua("late");
  ConnectOptions co;
  co.local = from("127.0.0.9");
  late.connect(Transport::tcp, edge_->endpoint(Transport::tcp), co);
  EXPECT_EQ(late.register_with().status(), 200);
  late.close();
  held.clear();
  expect_unharmed();
}

// Half-open: 8 silent TCP connections, 8 TLS connections that never say hello and 8 WS connections that
// never upgrade, from several addresses. All are closed by the idle / header timeouts (3 s / 1.5 s here).
TEST_F(Limits, HalfOpenConnectionsAreClosedByTheTimeouts) {
  std::vector<std::unique_ptr<RawStream>> held;
  for (const Transport t : {Transport::tcp, Transport::tls, Transport::ws}) {
    for (int i = 0; i < 8; ++i) {
      const std::string a = "127.0.1." + std::to_string(1 + i);
      held.push_back(std::make_unique<RawStream>(edge_->endpoint(t), from(a.c_str())));
    }
  }
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("connections") == 25; }));
  const auto start = Clock::now();
  for (auto& s : held) EXPECT_TRUE(s->wait_eof(Millis(8000))) << "a half-open connection stayed";
  std::cout << "half-open connections closed within "
            << std::chrono::duration_cast<Millis>(Clock::now() - start).count() << " ms\n";
  held.clear();
  expect_unharmed();
}

}  // namespace
}  // namespace edge::test::hostile
