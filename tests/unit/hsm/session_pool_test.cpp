// The session pool: many threads share a few sessions, one thread per session at a time.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/fault_shim.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/softhsm_fixture.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace {

using edge::hsm::Hsm;
using edge::hsm::HsmState;
using edge::hsm::MacStatus;
using edge::hsm::MacTag;
using edge::test::FaultShim;
using edge::test::SoftHsmToken;
using namespace std::chrono_literals;

class SessionPoolTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(SessionPoolTest, EightThreadsShareAFewSessions) {
  const std::size_t max_sessions = GetParam();
  SoftHsmToken token;
  FaultShim shim(token);  // counts C_OpenSession / C_CloseSession that reach SoftHSM
  auto config = shim.config();
  config.max_sessions = max_sessions;
  config.checkout_timeout = 10s;  // a generous bound: nobody may time out here
  Hsm hsm(config);
  hsm.keysets().create("sipflow");
  auto mac = hsm.mac_for("sipflow");
  hsm.keysets().rotate("sipflow");
  mac->refresh();

  auto c0 = hsm.counters().snapshot();
  constexpr int kThreads = 8, kSigns = 500;
  std::atomic<int> bad{0};
  std::atomic<unsigned long> max_open{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto data = edge::test::sample_data(40, static_cast<std::uint8_t>(t));
      for (int i = 0; i < kSigns; ++i) {
        data[0] = static_cast<std::uint8_t>(i);
        std::uint32_t v = 1 + static_cast<std::uint32_t>(i % 2);
        MacTag tag{};
        if (mac->sign(v, data, tag) != MacStatus::ok) ++bad;
        if (i % 5 == 0 &&
            mac->verify(v, data, std::span<const std::uint8_t>(tag.data(), 16)) != MacStatus::ok)
          ++bad;
        auto open = static_cast<unsigned long>(shim.open_sessions());
        for (auto m = max_open.load(); open > m && !max_open.compare_exchange_weak(m, open);) {
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_EQ(bad.load(), 0);
  auto c = hsm.counters().snapshot();
  EXPECT_EQ(c.sign - c0.sign, static_cast<std::uint64_t>(kThreads * kSigns));
  EXPECT_EQ(c.verify - c0.verify, static_cast<std::uint64_t>(kThreads * (kSigns / 5)));
  EXPECT_EQ(c.failures, 0u);
  EXPECT_EQ(c.recoveries, 0u);
  EXPECT_EQ(hsm.state(), HsmState::available);
  // The pool never holds more than max_sessions sessions (one more for management).
  EXPECT_LE(max_open.load(), max_sessions + 1);
  EXPECT_LE(c.session_open - c0.session_open, max_sessions)
      << "sessions are reused, not opened per operation";
}

INSTANTIATE_TEST_SUITE_P(MaxSessions, SessionPoolTest, ::testing::Values(2u, 3u, 4u));

// One session, held by a slow operation: a second caller gives up after the checkout
// timeout instead of waiting for the slow one, and that is not an HSM fault.
TEST(SessionPoolTimeout, CheckoutTimesOutWhileTheOnlySessionIsBusy) {
  SoftHsmToken token;
  FaultShim shim(token);
  auto config = shim.config();
  config.max_sessions = 1;
  config.checkout_timeout = 100ms;
  Hsm hsm(config);
  hsm.keysets().create("sipflow");
  auto mac = hsm.mac_for("sipflow");
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac->sign(1, data, tag), MacStatus::ok);

  shim.set("C_Sign delay_ms=2500\n");
  auto slow_calls = shim.calls("C_Sign");
  MacStatus slow = MacStatus::bad_argument;
  std::thread holder([&] {
    MacTag t{};
    slow = mac->sign(1, data, t);
  });
  // The holder is inside C_Sign (the shim counts before it sleeps).
  ASSERT_TRUE(edge::test::wait_until([&] { return shim.calls("C_Sign") > slow_calls; }, 10s));

  auto t0 = std::chrono::steady_clock::now();
  MacTag t{};
  MacStatus waited = mac->sign(1, data, t);
  auto took = std::chrono::steady_clock::now() - t0;
  holder.join();
  shim.clear();

  EXPECT_EQ(waited, MacStatus::unavailable);
  EXPECT_LT(took, 2000ms) << "waited for the slow operation instead of timing out";
  EXPECT_EQ(slow, MacStatus::ok);
  // A busy pool is not a broken HSM: no back-off, the next call just works.
  EXPECT_EQ(hsm.state(), HsmState::available);
  EXPECT_EQ(mac->sign(1, data, t), MacStatus::ok);
  EXPECT_EQ(mac->verify(1, data, t), MacStatus::ok);
}

TEST(SessionPoolTimeout, SlowHsmWithEnoughSessionsStillServesEveryone) {
  SoftHsmToken token;
  FaultShim shim(token);
  auto config = shim.config();
  config.max_sessions = 4;
  config.checkout_timeout = 5s;
  Hsm hsm(config);
  hsm.keysets().create("sipflow");
  auto mac = hsm.mac_for("sipflow");
  shim.set("C_Sign delay_ms=50\n");

  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto data = edge::test::sample_data();
      for (int i = 0; i < 5; ++i) {
        MacTag tag{};
        if (mac->sign(1, data, tag) == MacStatus::ok) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  shim.clear();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(hsm.state(), HsmState::available);
}

}  // namespace
