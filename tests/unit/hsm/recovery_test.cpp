// Recovery from HSM faults, injected through the shim or made by removing the token's files.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/fault_shim.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using edge::hsm::Hsm;
using edge::hsm::HsmState;
using edge::hsm::MacStatus;
using edge::hsm::MacTag;
using edge::test::FaultShim;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Generous: the configured back-off tops out at 400 ms; this only catches "never".
constexpr auto kComesBackWithin = 15s;

class RecoveryTest : public ::testing::Test {
 protected:
  void open(std::chrono::milliseconds backoff_initial = 50ms, std::chrono::milliseconds backoff_max = 400ms,
            bool background = false) {
    auto config = shim_.config();
    config.backoff_initial = backoff_initial;
    config.backoff_max = backoff_max;
    config.max_sessions = 2;
    config.background_recovery = background;
    config.on_state_change = [this](HsmState s, const std::string& reason) {
      std::lock_guard lock(mu_);
      changes_.emplace_back(s, reason);
      change_threads_.push_back(std::this_thread::get_id());
    };
    hsm_ = std::make_unique<Hsm>(config);
    hsm_->keysets().create("sipflow");
    mac_ = hsm_->mac_for("sipflow");
    ASSERT_EQ(mac_->sign(1, data_, tag_), MacStatus::ok);
  }
  MacStatus sign() {
    MacTag t{};
    MacStatus s = mac_->sign(1, data_, t);
    if (s == MacStatus::ok) {
      EXPECT_EQ(t, tag_);
    }
    return s;
  }
  MacStatus verify() { return mac_->verify(1, data_, tag_); }
  edge::hsm::OpCountersSnapshot counters() const { return hsm_->counters().snapshot(); }
  bool back() { return sign() == MacStatus::ok && hsm_->state() == HsmState::available; }
  std::vector<std::pair<HsmState, std::string>> changes() {
    std::lock_guard lock(mu_);
    return changes_;
  }

  SoftHsmToken token_;
  FaultShim shim_{token_};
  std::unique_ptr<Hsm> hsm_;
  std::shared_ptr<edge::hsm::KeySetMac> mac_;
  std::vector<std::uint8_t> data_ = edge::test::sample_data();
  MacTag tag_{};
  std::vector<std::thread::id> threads_of_changes() {
    std::lock_guard lock(mu_);
    return change_threads_;
  }

  std::mutex mu_;
  std::vector<std::pair<HsmState, std::string>> changes_;
  std::vector<std::thread::id> change_threads_;
};

// ---- session faults: reopen and retry once, invisible to the caller --------------------

class SessionFault : public RecoveryTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(SessionFault, ReopensTheSessionAndRetriesOnce) {
  open();
  auto c0 = counters();
  auto opens = shim_.calls("C_OpenSession");
  shim_.set(std::string("C_Sign ") + GetParam() + " count=1\n");
  EXPECT_EQ(sign(), MacStatus::ok);
  EXPECT_EQ(shim_.injected("C_Sign"), 1u);
  EXPECT_GT(shim_.calls("C_OpenSession"), opens) << "no new session was opened";
  auto c1 = counters();
  EXPECT_EQ(c1.recoveries - c0.recoveries, 1u);
  EXPECT_EQ(hsm_->state(), HsmState::available);

  shim_.set(std::string("C_SignInit ") + GetParam() + " count=1\n");
  EXPECT_EQ(verify(), MacStatus::ok);
  EXPECT_EQ(shim_.injected("C_SignInit"), 1u);
  EXPECT_EQ(hsm_->state(), HsmState::available);
  // The session given up on was closed, not leaked.
  EXPECT_LE(shim_.open_sessions(), 3);
}

TEST_P(SessionFault, RetriesOnlyOnce) {
  open(1s, 1s);
  shim_.set(std::string("C_Sign ") + GetParam() + "\n");  // every time
  auto calls = shim_.calls("C_Sign");
  EXPECT_NE(sign(), MacStatus::ok);
  EXPECT_EQ(shim_.calls("C_Sign") - calls, 2u) << "one try and one retry";
  shim_.clear();
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
}

INSTANTIATE_TEST_SUITE_P(Codes, SessionFault,
                         ::testing::Values("CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED"));

// ---- login lost: log in again ---------------------------------------------------------

TEST_F(RecoveryTest, UserNotLoggedInLogsInAgain) {
  open();
  auto logins = shim_.calls("C_Login");
  shim_.set("C_SignInit CKR_USER_NOT_LOGGED_IN count=1\n");
  EXPECT_EQ(sign(), MacStatus::ok);
  EXPECT_GT(shim_.calls("C_Login"), logins);
  EXPECT_EQ(hsm_->state(), HsmState::available);

  logins = shim_.calls("C_Login");
  shim_.set("C_Sign CKR_USER_NOT_LOGGED_IN count=1\n");
  EXPECT_EQ(verify(), MacStatus::ok);
  EXPECT_GT(shim_.calls("C_Login"), logins);
  EXPECT_EQ(hsm_->state(), HsmState::available);
}

// ---- background recovery (edged): never on the caller's thread ---------------------

TEST_F(RecoveryTest, BackgroundRecoveryLogsInAgainOnItsOwnThreadNotTheCallers) {
  open(50ms, 400ms, true);
  const auto logins = shim_.calls("C_Login");
  shim_.set("C_SignInit CKR_USER_NOT_LOGGED_IN count=1\n");
  // The caller neither reads the PIN nor logs in: it is told at once.
  EXPECT_EQ(sign(), MacStatus::unavailable);
  EXPECT_EQ(shim_.calls("C_Login"), logins) << "C_Login on the calling thread";
  // Nobody calls again: the HSM's own thread logs in and it comes back.
  EXPECT_TRUE(edge::test::wait_until([&] { return hsm_->state() == HsmState::available; }, kComesBackWithin));
  EXPECT_GT(shim_.calls("C_Login"), logins);
  EXPECT_EQ(sign(), MacStatus::ok);
  const auto threads = threads_of_changes();
  ASSERT_EQ(threads.size(), 2u);  // unavailable (the caller saw it), available (the rebuild)
  EXPECT_EQ(threads.front(), std::this_thread::get_id());
  EXPECT_NE(threads.back(), std::this_thread::get_id()) << "the rebuild ran on the caller's thread";
}

TEST_F(RecoveryTest, BackgroundRecoveryRebuildsAfterADeviceFaultWithoutAnyCaller) {
  open(50ms, 400ms, true);
  shim_.set("C_Sign CKR_DEVICE_ERROR count=1\n");
  EXPECT_EQ(sign(), MacStatus::unavailable);
  const auto recoveries = counters().recoveries;
  EXPECT_TRUE(edge::test::wait_until([&] { return hsm_->state() == HsmState::available; }, kComesBackWithin));
  EXPECT_GT(counters().recoveries, recoveries);
  EXPECT_EQ(verify(), MacStatus::ok);
  EXPECT_NE(threads_of_changes().back(), std::this_thread::get_id());
}

TEST_F(RecoveryTest, BackgroundRecoveryKeepsCallersOutWhileTheHsmIsAway) {
  open(50ms, 200ms, true);
  shim_.set("* CKR_DEVICE_REMOVED\n");
  EXPECT_EQ(sign(), MacStatus::unavailable);
  // The recovery thread keeps trying (and failing) on its own back-off; callers
  // are answered at once and never rebuild.
  const auto opens = shim_.calls("C_OpenSession");
  for (int i = 0; i < 50; ++i) EXPECT_EQ(verify(), MacStatus::unavailable);
  EXPECT_TRUE(edge::test::wait_until(
      [&] { return shim_.calls("C_OpenSession") > opens || shim_.injected() > 1; }, kComesBackWithin))
      << "no rebuild attempt by the recovery thread";
  shim_.clear();
  EXPECT_TRUE(edge::test::wait_until([&] { return hsm_->state() == HsmState::available; }, kComesBackWithin));
  EXPECT_EQ(sign(), MacStatus::ok);
}

// ---- stale handles: find the key again ------------------------------------------------

class HandleFault : public RecoveryTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(HandleFault, FindsTheKeyAgain) {
  open();
  auto c0 = counters();
  auto finds = shim_.calls("C_FindObjectsInit");
  shim_.set(std::string("C_SignInit ") + GetParam() + " count=1\n");
  EXPECT_EQ(sign(), MacStatus::ok);
  EXPECT_EQ(shim_.injected("C_SignInit"), 1u);
  EXPECT_GT(shim_.calls("C_FindObjectsInit"), finds) << "the key was not looked up again";
  EXPECT_GT(counters().find, c0.find);
  EXPECT_EQ(hsm_->state(), HsmState::available);
  // The new handle stays in use: no search per operation afterwards.
  finds = shim_.calls("C_FindObjectsInit");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(sign(), MacStatus::ok);
  EXPECT_EQ(shim_.calls("C_FindObjectsInit"), finds);
}

INSTANTIATE_TEST_SUITE_P(Codes, HandleFault,
                         ::testing::Values("CKR_OBJECT_HANDLE_INVALID", "CKR_KEY_HANDLE_INVALID"));

// ---- device faults: unavailable at once, back by itself after the back-off -------------

class DeviceFault : public RecoveryTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(DeviceFault, UnavailableThenBackByItself) {
  // A long first back-off, so "answered at once during the back-off" does not depend on
  // how fast this machine runs the next line.
  open(1500ms, 1500ms);
  shim_.set(std::string("C_Sign ") + GetParam() + " count=1\n");
  EXPECT_EQ(sign(), MacStatus::unavailable);
  EXPECT_EQ(hsm_->state(), HsmState::unavailable);
  auto status = hsm_->status();
  EXPECT_THAT(status.last_error, HasSubstr("C_Sign"));
  EXPECT_THAT(status.last_error, HasSubstr(GetParam()));
  EXPECT_GT(status.retry_in, 0ms);

  // During the back-off nothing reaches the HSM.
  auto calls = shim_.calls("C_Sign") + shim_.calls("C_SignInit") + shim_.calls("C_OpenSession");
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(sign(), MacStatus::unavailable);
    EXPECT_EQ(verify(), MacStatus::unavailable);
  }
  EXPECT_EQ(shim_.calls("C_Sign") + shim_.calls("C_SignInit") + shim_.calls("C_OpenSession"), calls);

  // The fault was a one-off: after the back-off the next call rebuilds and works.
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
  EXPECT_EQ(verify(), MacStatus::ok);
  EXPECT_GE(counters().recoveries, 1u);

  auto seen = changes();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().first, HsmState::unavailable);
  EXPECT_THAT(seen.front().second, HasSubstr(GetParam()));
  EXPECT_EQ(seen.back().first, HsmState::available);
}

TEST_P(DeviceFault, PersistentFaultBacksOffAndRecoversWhenItEnds) {
  open(50ms, 400ms);
  shim_.set(std::string("* ") + GetParam() + "\n");
  EXPECT_EQ(sign(), MacStatus::unavailable);
  // Callers keep coming for a while; rebuild attempts are spaced by the doubling
  // back-off (50, 100, 200, 400, 400, ... ms), not made on every call.
  auto injected0 = shim_.injected();
  int calls = 0;
  auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) {
    EXPECT_EQ(sign(), MacStatus::unavailable);
    ++calls;
    std::this_thread::sleep_for(1ms);
  }
  auto attempts = shim_.injected() - injected0;
  EXPECT_GE(attempts, 1u) << "never tried to rebuild";
  EXPECT_LE(attempts, 40u) << calls << " calls made " << attempts << " attempts: no back-off";
  EXPECT_EQ(hsm_->state(), HsmState::unavailable);

  shim_.clear();
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
  EXPECT_EQ(verify(), MacStatus::ok);
  EXPECT_LE(shim_.open_sessions(), 3) << "sessions leaked in the HSM";
}

INSTANTIATE_TEST_SUITE_P(Codes, DeviceFault,
                         ::testing::Values("CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT", "CKR_DEVICE_ERROR",
                                           "CKR_GENERAL_ERROR"));

// ---- wrong PIN at a re-login: reported, never retried ---------------------------------

TEST_F(RecoveryTest, PinIncorrectAtReloginIsReportedOnceAndNotRetried) {
  open(50ms, 100ms);
  shim_.set("C_Login CKR_PIN_INCORRECT\nC_SignInit CKR_USER_NOT_LOGGED_IN count=1\n");
  auto logins = shim_.calls("C_Login");
  EXPECT_EQ(sign(), MacStatus::unavailable);
  EXPECT_EQ(hsm_->state(), HsmState::pin_incorrect);
  EXPECT_THAT(hsm_->status().last_error, HasSubstr("CKR_PIN_INCORRECT"));
  EXPECT_EQ(shim_.calls("C_Login") - logins, 1u);

  // Well past any back-off: still no new login attempt, whatever the traffic.
  auto until = std::chrono::steady_clock::now() + 500ms;
  while (std::chrono::steady_clock::now() < until) {
    EXPECT_EQ(sign(), MacStatus::unavailable);
    EXPECT_EQ(verify(), MacStatus::unavailable);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(shim_.calls("C_Login") - logins, 1u) << "a wrong PIN was retried (token lockout risk)";
  EXPECT_EQ(hsm_->state(), HsmState::pin_incorrect);
  auto seen = changes();
  ASSERT_EQ(seen.size(), 1u) << "reported once";
  EXPECT_EQ(seen[0].first, HsmState::pin_incorrect);

  // The operator fixes the PIN and asks for a rebuild.
  shim_.clear();
  hsm_->request_rebuild();
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
}

// ---- the state hook may use the HSM (report status, try a MAC) without deadlocking ------

TEST(RecoveryHook, StateChangeHookMayCallBackIntoTheHsm) {
  SoftHsmToken token;
  FaultShim shim(token);
  auto config = shim.config();
  config.backoff_initial = 20ms;
  config.backoff_max = 50ms;
  std::shared_ptr<edge::hsm::KeySetMac> mac;
  Hsm* self = nullptr;
  std::atomic<int> calls{0};
  config.on_state_change = [&](HsmState, const std::string&) {
    ++calls;
    if (!self || !mac) return;
    auto st = self->status();  // must not deadlock on the status lock
    (void)st;
    MacTag t{};
    (void)mac->sign(1, edge::test::sample_data(), t);  // nor on the rebuild
  };
  Hsm hsm(config);
  hsm.keysets().create("sipflow");
  mac = hsm.mac_for("sipflow");
  self = &hsm;
  shim.set("C_Sign CKR_DEVICE_ERROR count=1\n");
  MacTag t{};
  auto data = edge::test::sample_data();
  std::atomic<bool> done{false};
  std::thread worker([&] {
    EXPECT_EQ(mac->sign(1, data, t), MacStatus::unavailable);
    EXPECT_TRUE(
        edge::test::wait_until([&] { return mac->sign(1, data, t) == MacStatus::ok; }, kComesBackWithin));
    done = true;
  });
  // A deadlock shows up as a worker that never finishes; the test then fails here
  // instead of hanging until the CTest timeout.
  bool finished = edge::test::wait_until([&] { return done.load(); }, kComesBackWithin + 5s);
  EXPECT_TRUE(finished) << "the HSM deadlocked inside its state hook";
  if (!finished) std::_Exit(1);
  worker.join();
  EXPECT_GE(calls.load(), 2);
}

// ---- a module restart waits until no other thread is inside the module -----------------

// PKCS#11 forbids C_Finalize while another thread is in a Cryptoki call: the module frees
// what that call is using (TSan sees SoftHSM destroy a mutex another thread holds). A
// broken session is handed back and closed by the thread that used it; a rebuild that
// restarts the module meanwhile must wait for that close.
TEST(RecoveryRestart, ModuleIsNotFinalizedWhileAnotherThreadIsInsideIt) {
  SoftHsmToken token;
  FaultShim shim(token);
  auto config = shim.config();
  config.backoff_initial = 20ms;
  config.backoff_max = 50ms;
  Hsm hsm(config);
  hsm.keysets().create("sipflow");
  auto mac = hsm.mac_for("sipflow");
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac->sign(1, data, tag), MacStatus::ok);

  // One sign meets a device error; closing the session it discards is slow; the first
  // rebuild cannot find the token, so the next one restarts the module.
  shim.set(
      "C_Sign CKR_DEVICE_ERROR count=1\nC_CloseSession delay_ms=400 count=1\nC_GetSlotList CKR_DEVICE_ERROR "
      "count=1\n");
  auto closes = shim.calls("C_CloseSession");
  std::thread failing([&] {
    MacTag t{};
    EXPECT_EQ(mac->sign(1, data, t), MacStatus::unavailable);
  });
  ASSERT_TRUE(edge::test::wait_until([&] { return shim.calls("C_CloseSession") > closes; }, 10s));
  std::this_thread::sleep_for(60ms);  // past the back-off: the next call rebuilds
  EXPECT_TRUE(
      edge::test::wait_until([&] { return mac->sign(1, data, tag) == MacStatus::ok; }, kComesBackWithin));
  failing.join();
  shim.clear();
  EXPECT_GE(shim.calls("C_Finalize"), 1u) << "the module was not restarted: the test proved nothing";
  EXPECT_EQ(shim.finalize_while_busy(), 0u) << "C_Finalize ran while another thread was inside the module";
}

// ---- the PIN file is gone when a re-login is needed ------------------------------------

TEST_F(RecoveryTest, PinFileMissingAtReloginIsUnavailableUntilItReturns) {
  open(50ms, 200ms);
  auto moved = token_.dir() / "user.pin.away";
  std::filesystem::rename(token_.pin_file(), moved);
  shim_.set("C_SignInit CKR_USER_NOT_LOGGED_IN count=1\n");
  EXPECT_EQ(sign(), MacStatus::unavailable);
  // Not a wrong PIN: nothing was refused by the token, so it keeps trying by itself.
  EXPECT_EQ(hsm_->state(), HsmState::unavailable);
  EXPECT_THAT(hsm_->status().last_error, HasSubstr("user.pin"));
  EXPECT_THAT(hsm_->status().last_error, ::testing::Not(HasSubstr(token_.user_pin())));
  std::filesystem::rename(moved, token_.pin_file());
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
}

// ---- management calls meet faults too -------------------------------------------------

TEST_F(RecoveryTest, ManagementRetriesASessionFault) {
  open();
  shim_.set("C_GenerateKey CKR_SESSION_HANDLE_INVALID count=1\n");
  EXPECT_EQ(hsm_->keysets().rotate("sipflow").version, 2u);
  shim_.clear();
  auto info = hsm_->keysets().get("sipflow");
  ASSERT_EQ(info.versions.size(), 2u) << "the retry made a second key";
  EXPECT_EQ(info.minting_version(), 2u);
}

TEST_F(RecoveryTest, ManagementDeviceFaultNamesTheCallAndLeavesNoHalfVersion) {
  open();
  shim_.set("C_GenerateKey CKR_DEVICE_ERROR count=1\n");
  try {
    hsm_->keysets().rotate("sipflow");
    FAIL() << "rotate succeeded through a device error";
  } catch (const edge::hsm::Pkcs11Error& e) {
    EXPECT_EQ(e.function(), "C_GenerateKey");
    EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_DEVICE_ERROR));
  }
  EXPECT_EQ(hsm_->state(), HsmState::unavailable);
  shim_.clear();
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
  auto info = hsm_->keysets().get("sipflow");
  ASSERT_EQ(info.versions.size(), 1u);
  EXPECT_EQ(hsm_->keysets().rotate("sipflow").version, 2u);
}

TEST_F(RecoveryTest, RetireThatFailsLeavesTheVersionActive) {
  open();
  shim_.set("C_SetAttributeValue CKR_DEVICE_ERROR count=1\n");
  EXPECT_THROW(hsm_->keysets().retire("sipflow", 1), edge::hsm::Pkcs11Error);
  shim_.clear();
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
  EXPECT_EQ(hsm_->keysets().get("sipflow").versions[0].state, edge::hsm::KeyState::active);
  EXPECT_EQ(verify(), MacStatus::ok);
}

// ---- many threads while faults come and go ---------------------------------------------

TEST_F(RecoveryTest, ManyThreadsSigningThroughFaultsNeverCrashOrLie) {
  open(20ms, 100ms);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, unavailable{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      auto data = edge::test::sample_data();
      while (!stop.load()) {
        MacTag tag{};
        MacStatus s = (t % 2 == 0) ? mac_->sign(1, data, tag) : mac_->verify(1, data, tag_);
        if (s == MacStatus::ok && t % 2 == 0 && tag != tag_) s = MacStatus::mismatch;  // a wrong tag
        (s == MacStatus::ok ? ok : s == MacStatus::unavailable ? unavailable : other)++;
      }
    });
  }
  const char* phases[] = {
      "C_Sign CKR_SESSION_HANDLE_INVALID every=7\n",
      "C_SignInit CKR_KEY_HANDLE_INVALID every=5\nC_Sign CKR_SESSION_CLOSED every=11\n",
      "C_Sign CKR_DEVICE_ERROR count=3\n",
      "C_SignInit CKR_USER_NOT_LOGGED_IN every=13\n",
      "* CKR_DEVICE_REMOVED\n",
      "C_Sign CKR_GENERAL_ERROR every=3\nC_OpenSession CKR_DEVICE_ERROR every=2\n",
      "C_Sign delay_ms=20 every=4\nC_SignInit CKR_OBJECT_HANDLE_INVALID every=9\n",
      "* CKR_TOKEN_NOT_PRESENT count=5\n",
  };
  for (int round = 0; round < 2; ++round) {
    for (const char* rules : phases) {
      shim_.set(rules);
      std::this_thread::sleep_for(120ms);
    }
  }
  shim_.clear();
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
  stop = true;
  for (auto& th : threads) th.join();

  EXPECT_EQ(other.load(), 0) << "a call answered something else than ok or unavailable";
  // Every recovery closed what it replaced: the pool (2) and the anchor session, no more.
  EXPECT_LE(shim_.open_sessions(), 3) << "sessions leaked in the HSM";
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(shim_.injected(), 0u);
  EXPECT_EQ(verify(), MacStatus::ok);
  EXPECT_EQ(sign(), MacStatus::ok);
  EXPECT_EQ(hsm_->state(), HsmState::available);
}

// ---- the token's files disappear and come back (real SoftHSM, no shim rule) -----------

TEST_F(RecoveryTest, TokenDirectoryRemovedAndRestored) {
  open(50ms, 200ms);
  auto dir = token_.token_object_dir();
  auto away = token_.dir() / "token-away";
  std::filesystem::rename(dir, away);

  // SoftHSM notices on the next operation (CKR_OBJECT_HANDLE_INVALID / CKR_GENERAL_ERROR);
  // a token that is gone is "unavailable", not "this tag names an unknown key".
  EXPECT_EQ(sign(), MacStatus::unavailable);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(verify(), MacStatus::unavailable);
    std::this_thread::sleep_for(100ms);  // rebuild attempts happen, and fail
  }
  EXPECT_NE(hsm_->state(), HsmState::available);

  std::filesystem::rename(away, dir);
  EXPECT_TRUE(edge::test::wait_until([&] { return back(); }, kComesBackWithin));
  EXPECT_EQ(verify(), MacStatus::ok) << "a tag minted before the removal verifies after it";
  EXPECT_LE(shim_.open_sessions(), 3) << "sessions leaked in the HSM";
  EXPECT_TRUE(hsm_->keysets().exists("sipflow"));
}

// Same, for a version this process has not used yet (no cached handle: the first thing
// it does is a search, which finds nothing while the token's files are away).
TEST_F(RecoveryTest, TokenDirectoryRemovedBeforeAVersionIsFirstUsed) {
  open(50ms, 200ms);
  hsm_->keysets().rotate("sipflow");
  mac_->refresh();
  MacTag t2{};
  ASSERT_EQ(mac_->sign(2, data_, t2), MacStatus::ok);
  auto fresh = hsm_->mac_for("sipflow");  // a view with no handle cached yet

  auto dir = token_.token_object_dir();
  auto away = token_.dir() / "token-away";
  std::filesystem::rename(dir, away);
  EXPECT_EQ(fresh->verify(2, data_, t2), MacStatus::unavailable);
  EXPECT_EQ(fresh->verify(1, data_, tag_), MacStatus::unavailable);
  std::filesystem::rename(away, dir);

  EXPECT_TRUE(
      edge::test::wait_until([&] { return fresh->verify(2, data_, t2) == MacStatus::ok; }, kComesBackWithin));
  EXPECT_EQ(fresh->verify(1, data_, tag_), MacStatus::ok);
}

// module.h promises: a module somebody else in the process initialised first is never
// finalised by us. A rebuild that restarts the module must not take down that other
// user's sessions (e.g. a TLS stack using the same HSM through its own PKCS#11 code).
TEST(RecoveryForeignModule, RebuildNeverFinalizesAModuleItDidNotInitialize) {
  SoftHsmToken token;
  FaultShim shim(token);
  // The other user: plain PKCS#11 on the same SoftHSM, initialised before us.
  edge::test::RawP11 other(edge::test::softhsm_module_path());
  ASSERT_TRUE(other.owns_initialize());
  auto other_session = other.open_session(other.slot_by_label(token.label()), true);
  other.login(other_session, token.user_pin());
  auto other_key = other.generate_hmac_key(other_session, "other-user/key");
  ASSERT_EQ(edge::test::raw_hmac_sha256(other, other_session, other_key, "x").size(), 32u);

  auto config = shim.config();
  config.backoff_initial = 20ms;
  config.backoff_max = 100ms;
  Hsm hsm(config);
  hsm.keysets().create("sipflow");
  auto mac = hsm.mac_for("sipflow");
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac->sign(1, data, tag), MacStatus::ok);

  // A device fault, and the first rebuild cannot find the token: the strongest
  // recovery edge_hsm has is tried.
  shim.set("C_Sign CKR_DEVICE_ERROR count=1\nC_GetSlotList CKR_DEVICE_ERROR count=1\n");
  EXPECT_EQ(mac->sign(1, data, tag), MacStatus::unavailable);
  EXPECT_TRUE(
      edge::test::wait_until([&] { return mac->sign(1, data, tag) == MacStatus::ok; }, kComesBackWithin));
  shim.clear();

  // The other user's session and key handle still work.
  std::vector<unsigned char> out;
  EXPECT_NO_THROW(out = edge::test::raw_hmac_sha256(other, other_session, other_key, "x"))
      << "edge_hsm finalised a module it did not initialise";
  EXPECT_EQ(out.size(), 32u);
}

}  // namespace
