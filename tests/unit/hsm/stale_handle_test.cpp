// Stale handles: no management path destroys an object through a handle found in an earlier
// session (PKCS#11 object handles are not stable: after a module restart the same number may name
// another object). Every destroy re-finds its object by CKA_ID and label in the session it destroys
// it in. The fault shim remembers which handles each session got from the module (C_FindObjects,
// C_GenerateKey, C_GenerateKeyPair, C_CreateObject) and counts each C_DestroyObject on any other
// handle (FaultShim::destroy_unfound).
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset.h>
#include <edge/hsm/signing_key.h>
#include <edge/test/fault_shim.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/softhsm_fixture.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using edge::hsm::Hsm;
using edge::hsm::HsmError;
using edge::hsm::HsmState;
using edge::hsm::KeyState;
using edge::test::FaultShim;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::vector<std::uint32_t> versions(Hsm& hsm, const std::string& set) {
  std::vector<std::uint32_t> out;
  for (const auto& v : hsm.keysets().get(set).versions) out.push_back(v.version);
  return out;
}

edge::hsm::HsmConfig config_of(const FaultShim& shim) {
  auto config = shim.config();
  config.background_recovery = false;
  config.backoff_initial = 20ms;
  config.backoff_max = 50ms;
  return config;
}

// Rotation pruning beyond retain, retire, key-set destroy and signing-key destroy, before and after
// a module restart (C_Finalize + C_Initialize: SoftHSM numbers its handles anew).
TEST(StaleHandles, ManagementDestroysOnlyWhatItFoundInTheSameSessionAcrossAModuleRestart) {
  SoftHsmToken token;
  FaultShim shim(token);
  Hsm hsm(config_of(shim));
  hsm.keysets().create("a", 2);
  hsm.keysets().create("b", 2);
  hsm.keysets().rotate("a");
  hsm.keysets().rotate("a");  // prunes a/v1
  EXPECT_EQ(versions(hsm, "a"), (std::vector<std::uint32_t>{2, 3}));
  edge::hsm::SigningKeys(hsm).create("fw");

  // The module restarts: the token's PKCS#11 calls fail until the rebuild's first stage has failed
  // once, so the rebuild finalizes and initializes the module again.
  const auto finalizes = shim.calls("C_Finalize");
  shim.set("* CKR_DEVICE_REMOVED\n");
  EXPECT_THROW(hsm.keysets().list(), std::exception);
  EXPECT_NE(hsm.state(), HsmState::available);
  shim.set("C_GetSlotList CKR_DEVICE_REMOVED count=1\n");
  ASSERT_TRUE(edge::test::wait_until(
      [&] {
        try {
          hsm.keysets().list();
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      15s));
  ASSERT_GT(shim.calls("C_Finalize"), finalizes) << "the module was not restarted";
  shim.clear();

  const auto destroys = shim.calls("C_DestroyObject");
  hsm.keysets().rotate("a");  // prunes a/v2
  EXPECT_EQ(versions(hsm, "a"), (std::vector<std::uint32_t>{3, 4}));
  hsm.keysets().retire("a", 3);
  EXPECT_EQ(hsm.keysets().get("a").versions.front().state, KeyState::retired);
  hsm.keysets().destroy("b");
  EXPECT_FALSE(hsm.keysets().exists("b"));
  edge::hsm::SigningKeys(hsm).destroy("fw");
  EXPECT_FALSE(edge::hsm::SigningKeys(hsm).exists("fw"));
  EXPECT_EQ(shim.calls("C_DestroyObject") - destroys, 4u);  // a/v2, b/v1, fw public and private

  EXPECT_EQ(shim.destroy_unfound(), 0u) << "a handle from an earlier session was destroyed";
  EXPECT_EQ(versions(hsm, "a"), (std::vector<std::uint32_t>{3, 4}));
}

// Two rotations of one set race (each generates the same next version, slowed in C_GenerateKey so
// both scan before either key exists): both see the duplicate and remove their own key, found again
// by CKA_ID and label in the cleanup session, not by the handle C_GenerateKey gave an earlier one.
// The first C_DestroyObject loses its session (CKR_SESSION_HANDLE_INVALID), so the clean-up is
// retried in a new session: it must find the key again there (before the fix it destroyed the
// generation's handle in a session that had never seen it). The set ends as it was: no duplicate,
// the older versions untouched.
TEST(StaleHandles, RacingRotationsRemoveTheirKeyFoundAgainInTheCleanupSession) {
  SoftHsmToken token;
  FaultShim shim(token);
  auto config = config_of(shim);
  config.max_sessions = 4;
  Hsm hsm(config);
  hsm.keysets().create("s", 3);
  shim.set("C_GenerateKey delay_ms=300\nC_DestroyObject CKR_SESSION_HANDLE_INVALID count=1\n");

  int refused = 0;
  for (int attempt = 0; attempt < 3 && refused == 0; ++attempt) {
    const auto before = versions(hsm, "s");
    std::mutex mu;
    std::condition_variable cv;
    int ready = 0;
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    threads.reserve(2);
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        {
          std::unique_lock lock(mu);
          if (++ready == 2) cv.notify_all();
          cv.wait(lock, [&] { return ready == 2; });
        }
        try {
          hsm.keysets().rotate("s");
        } catch (const HsmError& e) {
          errors[static_cast<std::size_t>(i)] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (const auto& e : errors) {
      if (e.empty()) continue;
      ++refused;
      EXPECT_THAT(e, HasSubstr("rotated concurrently"));
    }
    if (refused == 2) {
      EXPECT_EQ(versions(hsm, "s"), before) << "a racing rotation left a key behind or removed another";
    }
  }
  shim.clear();
  ASSERT_GT(refused, 0) << "the two rotations never raced";
  EXPECT_EQ(shim.injected("C_DestroyObject"), 1u) << "the clean-up never lost its session";
  EXPECT_EQ(shim.destroy_unfound(), 0u) << "the cleanup destroyed a handle from an earlier session";
  // No version twice, and the set still signs with its newest one.
  const auto now = versions(hsm, "s");
  EXPECT_TRUE(std::adjacent_find(now.begin(), now.end()) == now.end());
  EXPECT_EQ(hsm.keysets().get("s").minting_version(), now.back());
}

}  // namespace
