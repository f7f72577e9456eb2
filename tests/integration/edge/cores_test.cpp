// Issue 17, "Several cores": two real Kamailio cores behind the edge (priority 1 on 5080, priority 2 on
// 5082). Register and call through core 1; core 1 killed (SIGKILL) or black-holed (SIGSTOP): new requests
// go to core 2 within the documented bound, which serves calls; core 1 back: traffic fails back to it.
#include <signal.h>

#include <chrono>
#include <thread>

#include "edge_fixture.h"

namespace edge::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr const char* kCore2Server = "core-kamailio-2";
constexpr std::uint16_t kCore2Port = 5082;
// The watch of these tests (docs/operations.md, "Several cores"): a black-holed core
// is down within min(keepalive interval + timeout, (health_failures + 1) * health interval).
constexpr milliseconds kPing{300};
constexpr milliseconds kPongTimeout{300};
constexpr milliseconds kHealthInterval{300};
constexpr int kHealthFailures = 2;
constexpr milliseconds kBlackHoleBound =
    std::min(kPing + kPongTimeout, (kHealthFailures + 1) * kHealthInterval);

class SeveralCores : public EdgeTest {
 protected:
  void SetUp() override {
    core2_dir_ = std::make_unique<TempDir>("edge-core2-template");
    KamailioOptions o;
    o.port = kCore2Port;
    o.server_header = kCore2Server;
    o.config_template = write_aliasing_core_template(core2_dir_->path());
    core2_ = std::make_unique<KamailioProcess>(o);
    dump_.add("kamailio 2 log", [this] { return core2_ ? core2_->log() : std::string("(not running)"); });
    EdgeTest::SetUp();
  }
  void TearDown() override {
    EdgeTest::TearDown();
    core2_.reset();
    core2_dir_.reset();
  }
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.core = "sip:127.0.0.1:5080;transport=tcp;priority=1, sip:127.0.0.1:" + std::to_string(kCore2Port) +
             ";transport=tcp;priority=2";
    o.extra = {{"core.keepalive_interval_ms", std::to_string(kPing.count())},
               {"core.keepalive_timeout_ms", std::to_string(kPongTimeout.count())},
               {"core.health_interval_ms", std::to_string(kHealthInterval.count())},
               {"core.health_failures", std::to_string(kHealthFailures)}};
    return o;
  }
  bool core_state(int n, const std::string& state, milliseconds within) {
    const std::string key = "core_" + std::to_string(n) + "_state";
    return wait_status([&](const EdgedStatus& s) { return s.text(key) == state; }, within);
  }
  void restart_core1() {
    const KamailioOptions o = core_->options();
    core_.reset();
    core_ = std::make_unique<KamailioProcess>(o);
  }
  // The core a call went through: the one whose Via the INVITE at the callee carries.
  static int core_of(const Call& c) {
    for (const auto& v : c.invite_received.header_values("Via")) {
      if (v.find("127.0.0.1:5080") != std::string::npos) return 1;
      if (v.find("127.0.0.1:" + std::to_string(kCore2Port)) != std::string::npos) return 2;
    }
    return 0;
  }
  static int core_of(const SipMessage& register_ok) {
    const auto server = register_ok.header("Server").value_or("");
    return server == kCoreServer ? 1 : server == kCore2Server ? 2 : 0;
  }
  // Both cores up, alice registered through core 1, a call from bob to her through core 1.
  void through_core1(TestUa& alice, TestUa& bob) {
    ASSERT_TRUE(core_state(1, "up", milliseconds(5000)));
    ASSERT_TRUE(core_state(2, "up", milliseconds(5000)));
    const SipMessage ok = register_through_edge(alice, Transport::tcp);
    ASSERT_EQ(ok.status(), 200) << ok.summary();
    EXPECT_EQ(core_of(ok), 1) << ok.summary();
    bob.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
    EXPECT_EQ(core_of(call(bob, alice)), 1);
  }
  // Core 1 is out: alice's refresh and bob's call go to core 2.
  void through_core2(TestUa& alice, TestUa& bob) {
    const SipMessage ok = alice.register_with();
    ASSERT_EQ(ok.status(), 200) << ok.summary();
    EXPECT_EQ(core_of(ok), 2) << ok.summary();
    EXPECT_EQ(core_of(call(bob, alice)), 2);
  }
  // Core 1 is back and healthy: traffic returns to it.
  void back_to_core1(TestUa& alice, TestUa& bob) {
    ASSERT_TRUE(core_state(1, "up", milliseconds(15000)));
    const SipMessage ok = alice.register_with();
    ASSERT_EQ(ok.status(), 200) << ok.summary();
    EXPECT_EQ(core_of(ok), 1) << ok.summary();
    EXPECT_EQ(core_of(call(bob, alice)), 1);
    const EdgedStatus s = edge_->status();
    EXPECT_GE(s.number("core_2_requests"), 2u) << "core 2 served nothing";
    EXPECT_GE(s.number("core_1_requests"), 4u);
  }

  std::unique_ptr<TempDir> core2_dir_;
  std::unique_ptr<KamailioProcess> core2_;
};

TEST_F(SeveralCores, AKilledPreferredCoreFailsOverToTheNextAndBack) {
  TestUa& alice = ua("alice");
  TestUa& bob = ua("bob");
  through_core1(alice, bob);
  if (HasFatalFailure()) return;

  core_->signal_group(SIGKILL);
  // Its connection resets: down at once, without waiting for a health check.
  ASSERT_TRUE(core_state(1, "down", milliseconds(3000)));
  EXPECT_NE(edge_->status().text("core_1_error"), "");
  // edgectl status: every core, its state and why the last one is down.
  std::string out;
  ASSERT_EQ(edge_->edgectl({"status"}, &out), 0) << out;
  EXPECT_NE(out.find("sip:127.0.0.1:5080;transport=tcp priority 1 weight 1: down"), std::string::npos) << out;
  EXPECT_NE(out.find("sip:127.0.0.1:5082;transport=tcp priority 2 weight 1: up"), std::string::npos) << out;
  EXPECT_NE(out.find("last error: "), std::string::npos) << out;
  through_core2(alice, bob);
  if (HasFatalFailure()) return;

  restart_core1();
  back_to_core1(alice, bob);
}

TEST_F(SeveralCores, ABlackHoledPreferredCoreIsLeftWithinTheBoundAndTakenBackWhenItAnswers) {
  TestUa& alice = ua("alice");
  TestUa& bob = ua("bob");
  through_core1(alice, bob);
  if (HasFatalFailure()) return;

  core_->signal_group(SIGSTOP);  // its kernel still holds the connection; nothing answers
  const auto stopped = steady_clock::now();
  const bool left = core_state(1, "down", kBlackHoleBound + milliseconds(1500));  // + status polling
  const auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - stopped);
  ::testing::Test::RecordProperty("black_holed_core_left_ms", static_cast<int>(took.count()));
  if (!left) core_->signal_group(SIGCONT);
  ASSERT_TRUE(left) << "a black-holed core was still chosen";
  const std::string why = edge_->status().text("core_1_error");
  EXPECT_TRUE(why.find("CRLF keep-alive") != std::string::npos ||
              why.find("OPTIONS unanswered") != std::string::npos)
      << why;
  through_core2(alice, bob);
  core_->signal_group(SIGCONT);
  if (HasFatalFailure()) return;

  back_to_core1(alice, bob);
}

// With no core healthy, a request gets 503 with Retry-After from the edge at once.
TEST_F(SeveralCores, WithEveryCoreDownRequestsGet503AtOnce) {
  TestUa& alice = ua("alice");
  TestUa& bob = ua("bob");
  through_core1(alice, bob);
  if (HasFatalFailure()) return;
  core_->signal_group(SIGKILL);
  core2_->signal_group(SIGKILL);
  ASSERT_TRUE(core_state(1, "down", milliseconds(3000)));
  ASSERT_TRUE(core_state(2, "down", milliseconds(3000)));
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const SipMessage r = bob.receive_response("INVITE", Millis(2000));
  EXPECT_EQ(r.status(), 503) << r.summary();
  EXPECT_TRUE(r.header("Retry-After").has_value()) << r.summary();
  bob.send(TestUa::make_ack_for_failure(invite, r));
}

}  // namespace
}  // namespace edge::test
