// The fault shim itself: forwards faithfully, fails what the rules say, picks up new rules live.
#include <edge/test/fault_shim.h>
#include <edge/test/process.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using edge::test::FaultShim;
using edge::test::RawP11;
using edge::test::SoftHsmToken;

// A counter the shim exports (edge_p11shim_max_inside("C_Sign") ...), read from the copy the
// test loaded (RTLD_NOLOAD: never a second one).
template <typename R>
R shim_counter(const char* symbol, const char* fn) {
  void* h = ::dlopen(edge::test::shim_module_path(), RTLD_NOW | RTLD_NOLOAD);
  if (!h) return R{};
  auto f = reinterpret_cast<R (*)(const char*)>(::dlsym(h, symbol));
  R v = f ? f(fn) : R{};
  ::dlclose(h);
  return v;
}
int max_inside(const char* fn) { return shim_counter<int>("edge_p11shim_max_inside", fn); }
unsigned long long waited(const char* fn) {
  return shim_counter<unsigned long long>("edge_p11shim_waited", fn);
}

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
  CK_RV sign_once() { return sign_on(session_); }
  CK_RV sign_on(CK_SESSION_HANDLE session) {
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    CK_RV rv = p11_->f().C_SignInit(session, &mech, key_);
    if (rv != CKR_OK) return rv;
    CK_BYTE data[40] = {1, 2, 3};
    CK_BYTE out[32];
    CK_ULONG len = sizeof out;
    return p11_->f().C_Sign(session, data, sizeof data, out, &len);
  }
  // `threads` threads, each on its own session, released together, sign `each` times; returns how
  // many signs did not return CKR_OK.
  int sign_in_parallel(int threads, int each) {
    std::vector<CK_SESSION_HANDLE> sessions;
    for (int t = 0; t < threads; ++t) sessions.push_back(p11_->open_session(slot_, false));
    std::atomic<int> failed{0};
    std::latch go(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        go.arrive_and_wait();
        for (int i = 0; i < each; ++i) failed += sign_on(sessions[static_cast<std::size_t>(t)]) != CKR_OK;
      });
    }
    for (auto& th : pool) th.join();
    for (auto h : sessions) p11_->f().C_CloseSession(h);
    return failed.load();
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

TEST_F(P11ShimTest, DelayUsIsAppliedAndAddsToDelayMs) {
  shim_->set("C_Sign delay_us=4000\n");
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sign_once(), CKR_OK);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::microseconds(40'000));

  shim_->set("C_Sign delay_ms=2 delay_us=500\n");
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sign_once(), CKR_OK);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::microseconds(25'000));
  EXPECT_EQ(shim_->injected(), 0u);
}

// An HSM with N engines: four threads on four sessions never have more than N signs inside the
// module at once, every sign still succeeds, and the callers beyond N waited for a slot.
TEST_F(P11ShimTest, MaxConcurrentCapsTheCallsInsideTheModule) {
  for (int cap : {1, 2}) {
    SCOPED_TRACE(cap);
    shim_->set("C_Sign delay_us=2000 max_concurrent=" + std::to_string(cap) + "\n");
    shim_->reset_stats();
    EXPECT_EQ(sign_in_parallel(4, 10), 0);
    EXPECT_EQ(shim_->calls("C_Sign"), 40u);
    EXPECT_GE(max_inside("C_Sign"), 1);
    EXPECT_LE(max_inside("C_Sign"), cap);
    EXPECT_GT(waited("C_Sign"), 0u);      // 4 threads released together on 1 or 2 slots
    EXPECT_EQ(waited("C_SignInit"), 0u);  // the cap is C_Sign's alone
  }
  // The control: without a cap the same four threads are seen inside together, so the counter
  // above does observe concurrency when there is some.
  shim_->set("C_Sign delay_us=2000\n");
  shim_->reset_stats();
  EXPECT_EQ(sign_in_parallel(4, 10), 0);
  EXPECT_GT(max_inside("C_Sign"), 1);
  EXPECT_EQ(waited("C_Sign"), 0u);
}

// `*` shares one set of slots between every function; a cap without a delay is a rule of its own.
TEST_F(P11ShimTest, MaxConcurrentForStarIsSharedByEveryFunction) {
  shim_->set("* max_concurrent=1\n");
  shim_->reset_stats();
  EXPECT_EQ(sign_in_parallel(4, 10), 0);
  EXPECT_LE(max_inside("C_Sign"), 1);
  EXPECT_LE(max_inside("C_SignInit"), 1);
  EXPECT_EQ(shim_->injected(), 0u);
  // A fault under a cap still fails, and gives its slot back.
  shim_->set("C_Sign CKR_DEVICE_ERROR count=1 max_concurrent=1\n");
  EXPECT_EQ(sign_once(), CKR_DEVICE_ERROR);
  EXPECT_EQ(sign_once(), CKR_OK);
}

// Counts in the stats file, written for another process to read (the counts are per function).
TEST_F(P11ShimTest, StatsFileCarriesTheConcurrencyCounters) {
  shim_->set("C_Sign delay_us=1000 max_concurrent=1\n");
  shim_->reset_stats();
  EXPECT_EQ(sign_in_parallel(3, 5), 0);
  shim_->set("C_Sign CKR_DEVICE_ERROR count=1\n");  // an injected fault rewrites the file
  EXPECT_EQ(sign_once(), CKR_DEVICE_ERROR);
  auto stats = shim_->read_stats_file();
  EXPECT_EQ(stats["calls C_Sign"], 16u);
  EXPECT_EQ(stats["max_inside C_Sign"], 1u);
  EXPECT_GT(stats["waited C_Sign"], 0u);
  EXPECT_EQ(stats.count("waited C_Verify"), 1u);
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
  EXPECT_NO_THROW(shim.set("C_Sign delay_us=1000 max_concurrent=4\nC_Verify max_concurrent=1\n"));
  EXPECT_THROW(shim.set("C_Sign max_concurrent=0"), std::invalid_argument);
  EXPECT_THROW(shim.set("C_Sign delay_us=1ms"), std::invalid_argument);
  EXPECT_THROW(shim.set("C_Sign max_concurent=2"), std::invalid_argument);
}

// EDGE_P11SHIM_STATS_MS: the stats file follows the counters of a running process without a fault
// or a C_Finalize (what a benchmark reads while edged runs).
TEST(P11ShimStats, PeriodicWriterKeepsTheFileCurrent) {
  SoftHsmToken token;
  FaultShim shim(token);
  edge::test::ScopedEnv every("EDGE_P11SHIM_STATS_MS", "20");
  {
    RawP11 p11(edge::test::shim_module_path());
    ASSERT_TRUE(p11.owns_initialize());
    const auto slot = p11.slot_by_label(token.label());
    const auto session = p11.open_session(slot, true);
    p11.login(session, token.user_pin());
    const auto key = p11.generate_hmac_key(session, "shim/stats");
    for (int i = 0; i < 7; ++i) edge::test::raw_hmac_sha256(p11, session, key, "x");
    unsigned long long seen = 0;
    for (int i = 0; i < 500 && seen < 7; ++i) {  // bounded: 500 polls of 10 ms
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      seen = shim.read_stats_file()["calls C_Sign"];
    }
    EXPECT_EQ(seen, 7u);
    EXPECT_EQ(shim.read_stats_file()["injected_total"], 0u);
  }
}

}  // namespace
