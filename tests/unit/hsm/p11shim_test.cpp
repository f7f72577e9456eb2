// The fault shim itself: forwards faithfully, fails what the rules say, picks up new rules live.
#include <edge/test/fault_shim.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

namespace {

using edge::test::FaultShim;
using edge::test::RawP11;
using edge::test::SoftHsmToken;

class P11ShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_ = std::make_unique<SoftHsmToken>();
    shim_ = std::make_unique<FaultShim>(*token_);
    p11_ = std::make_unique<RawP11>(edge::test::shim_module_path());
    slot_ = p11_->slot_by_label(token_->label());
    session_ = p11_->open_session(slot_, true);
    p11_->login(session_, token_->user_pin());
    key_ = p11_->generate_hmac_key(session_, "shim/v1");
  }
  void TearDown() override {
    shim_->clear();
    p11_.reset();
    shim_.reset();
    token_.reset();
  }
  CK_RV sign_once() {
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    CK_RV rv = p11_->f().C_SignInit(session_, &mech, key_);
    if (rv != CKR_OK) return rv;
    CK_BYTE data[40] = {1, 2, 3};
    CK_BYTE out[32];
    CK_ULONG len = sizeof out;
    return p11_->f().C_Sign(session_, data, sizeof data, out, &len);
  }

  std::unique_ptr<SoftHsmToken> token_;
  std::unique_ptr<FaultShim> shim_;
  std::unique_ptr<RawP11> p11_;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE key_ = CK_INVALID_HANDLE;
};

TEST_F(P11ShimTest, ForwardsToSoftHsmWhenNoRuleApplies) {
  auto a = edge::test::raw_hmac_sha256(*p11_, session_, key_, "hello");
  auto b = edge::test::raw_hmac_sha256(*p11_, session_, key_, "hello");
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, b);
  EXPECT_EQ(shim_->injected(), 0u);
  EXPECT_GE(shim_->calls("C_Sign"), 2u);
  EXPECT_EQ(shim_->calls("C_Login"), 1u);
}

TEST_F(P11ShimTest, CountLimitsTheFaultsAndTheSessionStaysUsable) {
  shim_->set("C_Sign CKR_DEVICE_ERROR count=2\n");
  EXPECT_EQ(sign_once(), CKR_DEVICE_ERROR);
  EXPECT_EQ(sign_once(), CKR_DEVICE_ERROR);
  // The faulted C_Sign ended the real operation, so a new C_SignInit is accepted.
  EXPECT_EQ(sign_once(), CKR_OK);
  EXPECT_EQ(sign_once(), CKR_OK);
  EXPECT_EQ(shim_->injected("C_Sign"), 2u);
  EXPECT_EQ(shim_->injected(), 2u);
}

TEST_F(P11ShimTest, EveryNthAndAfter) {
  shim_->set("C_Sign CKR_SESSION_HANDLE_INVALID every=3\n");
  std::string pattern;
  for (int i = 0; i < 9; ++i) pattern += sign_once() == CKR_OK ? '.' : 'x';
  EXPECT_EQ(pattern, "..x..x..x");

  shim_->set("C_SignInit CKR_KEY_HANDLE_INVALID after=2 count=1\n");
  pattern.clear();
  for (int i = 0; i < 5; ++i) pattern += sign_once() == CKR_OK ? '.' : 'x';
  EXPECT_EQ(pattern, "..x..");
}

TEST_F(P11ShimTest, StarFaultsEveryCallButFinalize) {
  shim_->set("* CKR_DEVICE_REMOVED\n");
  EXPECT_EQ(sign_once(), CKR_DEVICE_REMOVED);
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  EXPECT_EQ(p11_->f().C_OpenSession(slot_, CKF_SERIAL_SESSION, nullptr, nullptr, &s), CKR_DEVICE_REMOVED);
  CK_ULONG n = 0;
  EXPECT_EQ(p11_->f().C_GetSlotList(CK_TRUE, nullptr, &n), CKR_DEVICE_REMOVED);
  CK_TOKEN_INFO info{};
  EXPECT_EQ(p11_->f().C_GetTokenInfo(slot_, &info), CKR_DEVICE_REMOVED);
  shim_->clear();
  EXPECT_EQ(sign_once(), CKR_OK);
}

TEST_F(P11ShimTest, InjectedPinIncorrectNeverReachesTheToken) {
  CK_SESSION_HANDLE s = p11_->open_session(slot_, false);
  shim_->set("C_Login CKR_PIN_INCORRECT\n");
  std::string pin = token_->user_pin();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(p11_->f().C_Login(s, CKU_SO, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size()),
              CKR_PIN_INCORRECT);
  }
  shim_->clear();
  // Twenty refused logins did not lock anything: the token never saw them.
  CK_TOKEN_INFO info{};
  ASSERT_EQ(p11_->f().C_GetTokenInfo(slot_, &info), CKR_OK);
  EXPECT_EQ(info.flags & (CKF_SO_PIN_LOCKED | CKF_SO_PIN_COUNT_LOW), 0u);
  EXPECT_EQ(shim_->injected("C_Login"), 20u);
}

TEST_F(P11ShimTest, DelayIsApplied) {
  shim_->set("C_Sign delay_ms=120\n");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(sign_once(), CKR_OK);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(120));
  EXPECT_EQ(shim_->injected(), 0u);  // a pure delay is not a fault
}

TEST_F(P11ShimTest, RulesChangeWhileRunning) {
  for (int round = 0; round < 5; ++round) {
    shim_->set("C_Sign CKR_GENERAL_ERROR\n");
    EXPECT_EQ(sign_once(), CKR_GENERAL_ERROR) << "round " << round;
    shim_->set("C_Sign CKR_DEVICE_ERROR\n");  // same size, written within the same tick
    EXPECT_EQ(sign_once(), CKR_DEVICE_ERROR) << "round " << round;
    shim_->clear();
    EXPECT_EQ(sign_once(), CKR_OK) << "round " << round;
  }
}

TEST_F(P11ShimTest, StatsFileCountsForOtherProcesses) {
  shim_->set("C_Sign CKR_DEVICE_ERROR count=1\n");
  EXPECT_EQ(sign_once(), CKR_DEVICE_ERROR);
  auto stats = shim_->read_stats_file();
  EXPECT_EQ(stats["injected_total"], 1u);
  EXPECT_EQ(stats["injected C_Sign"], 1u);
  EXPECT_EQ(stats["calls C_Login"], 1u);
}

TEST_F(P11ShimTest, CountsSessionsOpenInTheRealModule) {
  EXPECT_EQ(shim_->open_sessions(), 1);
  auto a = p11_->open_session(slot_, false);
  auto b = p11_->open_session(slot_, false);
  EXPECT_EQ(shim_->open_sessions(), 3);
  p11_->f().C_CloseSession(a);
  EXPECT_EQ(shim_->open_sessions(), 2);
  // A faulted close still closes the real session.
  shim_->set("C_CloseSession CKR_DEVICE_ERROR count=1\n");
  EXPECT_EQ(p11_->f().C_CloseSession(b), CKR_DEVICE_ERROR);
  EXPECT_EQ(shim_->open_sessions(), 1);
  EXPECT_EQ(p11_->f().C_CloseSession(b), CKR_SESSION_HANDLE_INVALID);
}

TEST(P11ShimRules, TyposAreRejectedBeforeTheyReachTheShim) {
  SoftHsmToken token;
  FaultShim shim(token);
  EXPECT_THROW(shim.set("C_Sing CKR_DEVICE_ERROR"), std::invalid_argument);
  EXPECT_THROW(shim.set("C_Sign CKR_DEVICE_EROR"), std::invalid_argument);
  EXPECT_THROW(shim.set("C_Sign CKR_DEVICE_ERROR cont=3"), std::invalid_argument);
  EXPECT_THROW(shim.set("C_Sign"), std::invalid_argument);
  EXPECT_THROW(shim.set("C_Finalize CKR_GENERAL_ERROR"), std::invalid_argument);
  EXPECT_NO_THROW(shim.set("# comment\n\nC_Sign 0x30 count=1 # trailing\n* delay_ms=1\n"));
}

}  // namespace
