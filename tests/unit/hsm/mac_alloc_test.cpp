// Counting work: a steady-state sign/verify allocates no more than the bare PKCS#11 calls it makes.
//
// keyset_mac.h promises that sign/verify "allocate nothing in the steady state". SoftHSM
// itself allocates inside C_SignInit/C_Sign, so the test compares heap allocations per
// operation with those of a raw C_SignInit + C_Sign on the same key in the same module.
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

namespace {
std::atomic<unsigned long long> g_allocations{0};
int* volatile g_sink = nullptr;
}  // namespace

// GCC's -Wmismatched-new-delete (with ASan, -O1) cannot see that this replaced pair is consistent.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// Counts every allocation of the process (SoftHSM's too: it uses this operator new).
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

using edge::hsm::MacStatus;
using edge::hsm::MacTag;

template <typename F>
double allocations_per_call(int n, F&& f) {
  auto before = g_allocations.load();
  for (int i = 0; i < n; ++i) f();
  return static_cast<double>(g_allocations.load() - before) / n;
}

TEST(MacAllocations, SteadyStateSignAndVerifyAllocateNoMoreThanRawPkcs11) {
  edge::test::SoftHsmToken token;
  edge::hsm::Hsm hsm(token.config());
  hsm.keysets().create("sipflow");
  auto mac = hsm.mac_for("sipflow");
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac->sign(1, data, tag), MacStatus::ok);  // warm: session open, key found

  // The same key, used directly through the module edge_hsm already initialised.
  edge::test::RawP11 raw(edge::test::softhsm_module_path());
  auto s = raw.open_session(raw.slot_by_label(token.label()), false);
  auto keys = raw.find_by_label(s, "sipflow/v1");
  ASSERT_EQ(keys.size(), 1u);
  unsigned char out[32];
  auto raw_sign = [&] {
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    CK_ULONG len = sizeof out;
    raw.f().C_SignInit(s, &mech, keys[0]);
    raw.f().C_Sign(s, data.data(), data.size(), out, &len);
  };
  raw_sign();

  constexpr int kN = 200;
  // The counter sees allocations at all (else every comparison below is vacuous).
  ASSERT_GE(allocations_per_call(kN,
                                 [] {
                                   g_sink = new int(1);  // through a volatile: not elided
                                   delete g_sink;
                                 }),
            1.0);
  double baseline = allocations_per_call(kN, raw_sign);
  double ours_sign = allocations_per_call(kN, [&] { (void)mac->sign(1, data, tag); });
  double ours_verify = allocations_per_call(kN, [&] { (void)mac->verify(1, data, tag); });
  ASSERT_EQ(mac->verify(1, data, tag), MacStatus::ok);

  RecordProperty("allocations_per_raw_sign", std::to_string(baseline));
  RecordProperty("allocations_per_sign", std::to_string(ours_sign));
  EXPECT_LE(ours_sign, baseline) << "KeySetMac::sign allocates on top of SoftHSM";
  EXPECT_LE(ours_verify, baseline) << "KeySetMac::verify allocates on top of SoftHSM";
  // Refused requests never reach the HSM and allocate nothing.
  EXPECT_EQ(allocations_per_call(kN, [&] { (void)mac->verify(1, data, std::span(tag.data(), 8)); }), 0.0);
  EXPECT_EQ(allocations_per_call(kN, [&] { (void)mac->sign(99, data, tag); }), 0.0);
  raw.f().C_CloseSession(s);
}

}  // namespace
