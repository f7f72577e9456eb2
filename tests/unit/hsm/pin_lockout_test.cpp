// No PIN lockout: C_Login is never tried when the token's flags say a wrong PIN
// was tried, a refused PIN is never retried, and an environment PIN leaves the
// environment once read. The fault shim counts every C_Login that reaches the token.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/hsm/secret.h>
#include <edge/test/fault_shim.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/softhsm_fixture.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using edge::hsm::Hsm;
using edge::hsm::HsmState;
using edge::hsm::MacStatus;
using edge::hsm::MacTag;
using edge::hsm::Pkcs11Error;
using edge::test::FaultShim;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;

void expect_refused_without_login(const char* flag_rule, const char* flag_name) {
  SoftHsmToken token;
  FaultShim shim(token);
  shim.set(flag_rule);
  try {
    Hsm hsm(shim.config());
    FAIL() << "logged in although the token reports " << flag_name;
  } catch (const Pkcs11Error& e) {
    EXPECT_EQ(e.function(), "C_Login");
    EXPECT_EQ(e.rv(), CKR_PIN_LOCKED);
    EXPECT_THAT(e.what(), HasSubstr(flag_name));
    EXPECT_THAT(e.what(), HasSubstr("not attempted"));
  }
  EXPECT_EQ(shim.calls("C_Login"), 0u);
}

TEST(PinLockout, FinalTryFlagMeansZeroLogins) {
  expect_refused_without_login("C_GetTokenInfo token_flags=0x20000\n", "CKF_USER_PIN_FINAL_TRY");
}

TEST(PinLockout, CountLowFlagMeansZeroLogins) {
  expect_refused_without_login("C_GetTokenInfo token_flags=0x10000\n", "CKF_USER_PIN_COUNT_LOW");
}

TEST(PinLockout, LockedFlagMeansZeroLogins) {
  expect_refused_without_login("C_GetTokenInfo token_flags=0x40000\n", "CKF_USER_PIN_LOCKED");
}

TEST(PinLockout, EnvironmentPinIsRemovedAfterItIsRead) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): no other thread runs yet
  ASSERT_EQ(::setenv("EDGE_TEST_PIN_ENV", "123456", 1), 0);
  edge::hsm::PinSource src{edge::hsm::PinSource::Kind::env, "EDGE_TEST_PIN_ENV"};
  auto pin = edge::hsm::read_pin(src);
  EXPECT_EQ(pin.expose(), "123456");
  EXPECT_EQ(std::getenv("EDGE_TEST_PIN_ENV"), nullptr);
  // A child process started afterwards does not inherit it.
  FILE* child = ::popen("env", "r");  // NOLINT(cert-env33-c): fixed command, the point of the test
  ASSERT_NE(child, nullptr);
  std::string all;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, child)) > 0;) all.append(buf, n);
  ASSERT_EQ(::pclose(child), 0);
  EXPECT_NE(all.find("PATH="), std::string::npos);
  EXPECT_EQ(all.find("EDGE_TEST_PIN_ENV"), std::string::npos);
  // A re-login reads it again: answered from the process's own wiped copy.
  EXPECT_EQ(edge::hsm::read_pin(src).expose(), "123456");
}

// Several threads lose the login at once (C_SignInit answers CKR_USER_NOT_LOGGED_IN to each) and all
// take the re-login path together; the token refuses the PIN (CKR_PIN_INCORRECT, slowed so the others
// queue on the login lock meanwhile). Exactly one C_Login is spent: whoever waited behind it sees the
// refusal under the lock and does not try the same PIN again.
TEST(PinLockout, ConcurrentReloginsSpendOneAttempt) {
  constexpr int kThreads = 6;
  SoftHsmToken token;
  FaultShim shim(token);
  auto config = shim.config();
  config.max_sessions = kThreads;  // no thread waits for a session: all of them reach the re-login
  config.background_recovery = false;
  Hsm hsm(config);
  hsm.keysets().create("sipflow");
  auto mac = hsm.mac_for("sipflow");
  const auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac->sign(1, data, tag), MacStatus::ok);
  const auto logins = shim.calls("C_Login");
  shim.set("C_SignInit CKR_USER_NOT_LOGGED_IN delay_ms=300\nC_Login CKR_PIN_INCORRECT delay_ms=300\n");

  std::mutex mu;
  std::condition_variable cv;
  int ready = 0;
  std::atomic<int> unavailable{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      {
        std::unique_lock lock(mu);
        if (++ready == kThreads) cv.notify_all();
        cv.wait(lock, [&] { return ready == kThreads; });
      }
      MacTag t{};
      if (mac->sign(1, data, t) == MacStatus::unavailable) ++unavailable;
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(unavailable.load(), kThreads);
  EXPECT_EQ(shim.injected("C_SignInit"), static_cast<unsigned long long>(kThreads))
      << "every thread lost its login";
  EXPECT_EQ(shim.calls("C_Login") - logins, 1u) << "the refused PIN was tried again by a concurrent re-login";
  EXPECT_EQ(hsm.state(), HsmState::pin_incorrect);
  EXPECT_THAT(hsm.status().last_error, HasSubstr("CKR_PIN_INCORRECT"));
}

}  // namespace
