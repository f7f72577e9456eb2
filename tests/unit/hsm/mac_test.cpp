// The MAC oracle: HMAC-SHA256 in the HSM, truncated tags, constant-time checks, one HSM call per operation.
#include <edge/hsm/counters.h>
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <span>
#include <vector>

namespace {

using edge::hsm::Hsm;
using edge::hsm::MacStatus;
using edge::hsm::MacTag;
using edge::test::SoftHsmToken;

class MacTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = std::make_unique<Hsm>(token_.config());
    hsm_->keysets().create("sipflow", 3);
    mac_ = hsm_->mac_for("sipflow");
    ASSERT_NE(mac_, nullptr);
  }
  std::span<const std::uint8_t> prefix(const MacTag& t, std::size_t n) { return {t.data(), n}; }

  SoftHsmToken token_;
  std::unique_ptr<Hsm> hsm_;
  std::shared_ptr<edge::hsm::KeySetMac> mac_;
};

TEST_F(MacTest, SignThenVerifyRoundTrip) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  EXPECT_NE(tag, MacTag{});
  EXPECT_EQ(mac_->verify(1, data, tag), MacStatus::ok);

  MacTag again{};
  ASSERT_EQ(mac_->sign(1, data, again), MacStatus::ok);
  EXPECT_EQ(again, tag) << "HMAC is deterministic";
  MacTag other{};
  ASSERT_EQ(mac_->sign(1, edge::test::sample_data(40, 1), other), MacStatus::ok);
  EXPECT_NE(other, tag);
}

TEST_F(MacTest, TagIsPlainHmacSha256OfTheDataWithTheTokenKey) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  hsm_.reset();
  mac_.reset();

  edge::test::RawP11 p11(edge::test::softhsm_module_path());
  auto s = p11.open_session(p11.slot_by_label(token_.label()), false);
  p11.login(s, token_.user_pin());
  auto keys = p11.find_by_label(s, "sipflow/v1");
  ASSERT_EQ(keys.size(), 1u);
  auto raw = edge::test::raw_hmac_sha256(
      p11, s, keys[0], std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  EXPECT_EQ(std::vector<std::uint8_t>(tag.begin(), tag.end()), raw);
}

TEST_F(MacTest, TruncatedTagsFrom16To32BytesVerify) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  for (std::size_t n = 16; n <= 32; ++n) {
    EXPECT_EQ(mac_->verify(1, data, prefix(tag, n)), MacStatus::ok) << n << " bytes";
  }
}

TEST_F(MacTest, TagsOutside16To32BytesAreBadArguments) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  for (std::size_t n : {0u, 1u, 8u, 15u}) {
    EXPECT_EQ(mac_->verify(1, data, prefix(tag, n)), MacStatus::bad_argument) << n << " bytes";
  }
  std::vector<std::uint8_t> longer(tag.begin(), tag.end());
  longer.push_back(0);
  EXPECT_EQ(mac_->verify(1, data, longer), MacStatus::bad_argument);
}

TEST_F(MacTest, EveryOneBitFlipFails) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  for (std::size_t n : {16u, 32u}) {
    for (std::size_t bit = 0; bit < n * 8; ++bit) {
      std::vector<std::uint8_t> t(tag.begin(), tag.begin() + static_cast<std::ptrdiff_t>(n));
      t[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      ASSERT_EQ(mac_->verify(1, data, t), MacStatus::mismatch) << n << " bytes, bit " << bit;
    }
  }
  for (std::size_t bit = 0; bit < data.size() * 8; bit += 7) {
    auto d = data;
    d[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    ASSERT_EQ(mac_->verify(1, d, tag), MacStatus::mismatch) << "data bit " << bit;
  }
}

TEST_F(MacTest, UnknownVersions) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  for (std::uint32_t v : {0u, 2u, 99u, 0xffffffffu}) {
    MacTag out{};
    EXPECT_EQ(mac_->sign(v, data, out), MacStatus::unknown_version) << v;
    EXPECT_EQ(mac_->verify(v, data, tag), MacStatus::unknown_version) << v;
  }
}

TEST_F(MacTest, EmptyAndLargeInputs) {
  MacTag a{}, b{};
  std::vector<std::uint8_t> empty;
  EXPECT_EQ(mac_->sign(1, empty, a), MacStatus::ok);
  EXPECT_EQ(mac_->verify(1, empty, a), MacStatus::ok);
  auto big = edge::test::sample_data(64 * 1024, 3);
  EXPECT_EQ(mac_->sign(1, big, b), MacStatus::ok);
  EXPECT_EQ(mac_->verify(1, big, b), MacStatus::ok);
  EXPECT_NE(a, b);
}

TEST_F(MacTest, OneHsmOperationPerSignAndPerVerify) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);  // warm: key handle found
  auto c0 = hsm_->counters().snapshot();
  for (int i = 0; i < 10; ++i) ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  for (int i = 0; i < 7; ++i) ASSERT_EQ(mac_->verify(1, data, tag), MacStatus::ok);
  ASSERT_EQ(mac_->verify(1, data, std::span<const std::uint8_t>(tag.data(), 16)), MacStatus::ok);
  auto c1 = hsm_->counters().snapshot();
  EXPECT_EQ(c1.sign - c0.sign, 10u);
  EXPECT_EQ(c1.verify - c0.verify, 8u);
  // Steady state: no searches, logins or new sessions per operation.
  EXPECT_EQ(c1.find, c0.find);
  EXPECT_EQ(c1.login, c0.login);
  EXPECT_EQ(c1.session_open, c0.session_open);
  EXPECT_EQ(c1.failures, c0.failures);
}

TEST_F(MacTest, RefusedArgumentsCostNoHsmCall) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  auto c0 = hsm_->counters().snapshot();
  EXPECT_EQ(mac_->verify(1, data, prefix(tag, 15)), MacStatus::bad_argument);
  EXPECT_EQ(mac_->verify(42, data, tag), MacStatus::unknown_version);
  auto c1 = hsm_->counters().snapshot();
  EXPECT_EQ(c1.sign + c1.verify, c0.sign + c0.verify);
}

TEST_F(MacTest, MintingVersionFollowsRotationAndCanBePinned) {
  EXPECT_EQ(mac_->minting_version(), 1u);
  hsm_->keysets().rotate("sipflow");
  mac_->refresh();
  EXPECT_EQ(mac_->minting_version(), 2u);

  // Pinning the minting version (e.g. while a rotation is rolled out) to an older one.
  mac_->set_minting_version(1);
  EXPECT_EQ(mac_->minting_version(), 1u);
  MacTag tag{};
  EXPECT_EQ(mac_->sign(2, edge::test::sample_data(), tag), MacStatus::ok) << "v2 still signs on request";
}

TEST_F(MacTest, RetiredVersionSignsAndVerifiesNothing) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  hsm_->keysets().rotate("sipflow");
  hsm_->keysets().retire("sipflow", 1);
  mac_->refresh();
  EXPECT_EQ(mac_->minting_version(), 2u);
  EXPECT_EQ(mac_->verify(1, data, tag), MacStatus::retired_version);
  EXPECT_EQ(mac_->verify(1, data, prefix(tag, 16)), MacStatus::retired_version);
  MacTag out{};
  EXPECT_EQ(mac_->sign(1, data, out), MacStatus::retired_version);
}

TEST_F(MacTest, AViewOfAnotherSetIsIndependent) {
  hsm_->keysets().create("other", 3);
  auto other = hsm_->mac_for("other");
  auto data = edge::test::sample_data();
  MacTag a{}, b{};
  ASSERT_EQ(mac_->sign(1, data, a), MacStatus::ok);
  ASSERT_EQ(other->sign(1, data, b), MacStatus::ok);
  EXPECT_NE(a, b);
  EXPECT_EQ(other->verify(1, data, a), MacStatus::mismatch);
}

TEST_F(MacTest, ViewKeepsWorkingAfterTheHsmObjectIsGone) {
  auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  hsm_.reset();
  MacTag again{};
  EXPECT_EQ(mac_->sign(1, data, again), MacStatus::ok);
  EXPECT_EQ(again, tag);
  EXPECT_EQ(mac_->verify(1, data, tag), MacStatus::ok);
}

// What the metrics read: every MAC operation counted by result and timed in
// one latency bucket, the buckets adding up to the count.
TEST_F(MacTest, EveryOperationIsCountedByResultAndTimed) {
  const auto before = hsm_->counters().snapshot();
  ASSERT_EQ(before.mac_sign.count + before.mac_verify.count, 0u) << "a fresh Hsm";
  const auto data = edge::test::sample_data();
  MacTag tag{};
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  ASSERT_EQ(mac_->sign(99, data, tag), MacStatus::unknown_version);
  ASSERT_EQ(mac_->sign(1, data, tag), MacStatus::ok);
  ASSERT_EQ(mac_->verify(1, data, tag), MacStatus::ok);
  MacTag wrong = tag;
  wrong[0] ^= 1;
  ASSERT_EQ(mac_->verify(1, data, wrong), MacStatus::mismatch);
  ASSERT_EQ(mac_->verify(1, data, prefix(tag, 8)), MacStatus::bad_argument);

  const auto s = hsm_->counters().snapshot();
  auto at = [](const edge::hsm::MacOpSnapshot& m, MacStatus r) { return m.results[static_cast<std::size_t>(r)]; };
  EXPECT_EQ(s.mac_sign.count, 3u);
  EXPECT_EQ(at(s.mac_sign, MacStatus::ok), 2u);
  EXPECT_EQ(at(s.mac_sign, MacStatus::unknown_version), 1u);
  EXPECT_EQ(s.mac_verify.count, 3u);
  EXPECT_EQ(at(s.mac_verify, MacStatus::ok), 1u);
  EXPECT_EQ(at(s.mac_verify, MacStatus::mismatch), 1u);
  EXPECT_EQ(at(s.mac_verify, MacStatus::bad_argument), 1u);
  for (const auto* m : {&s.mac_sign, &s.mac_verify}) {
    std::uint64_t in_buckets = 0;
    for (const auto b : m->buckets) in_buckets += b;
    EXPECT_EQ(in_buckets, m->count);
  }
  EXPECT_GT(s.mac_sign.sum_us + s.mac_verify.sum_us, 0u) << "SoftHSM takes some microseconds";
  EXPECT_EQ(s.sign - before.sign, 2u) << "the HSM's own count: the unknown version cost no C_Sign";
}

TEST(MacLatency, EachDurationLandsInTheFirstBucketThatHoldsIt) {
  edge::hsm::MacOpCounters c;
  using us = std::chrono::microseconds;
  c.record(0, us(0));
  c.record(0, us(25));
  c.record(0, us(26));
  c.record(0, us(3'000'000));
  const auto s = c.snapshot();
  EXPECT_EQ(s.buckets[0], 2u);  // <= 25 us
  EXPECT_EQ(s.buckets[1], 1u);  // <= 50 us
  EXPECT_EQ(s.buckets.back(), 1u) << "past the last bound: +Inf";
  EXPECT_EQ(s.count, 4u);
  EXPECT_EQ(s.sum_us, 3'000'051u);
  EXPECT_EQ(s.results[0], 4u);
}

TEST(MacCompare, ConstantTimeEqual) {
  using edge::hsm::constant_time_equal;
  std::vector<std::uint8_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 4}, c = {1, 2, 3, 5}, d = {1, 2, 3};
  EXPECT_TRUE(constant_time_equal(a, b));
  EXPECT_FALSE(constant_time_equal(a, c));
  EXPECT_FALSE(constant_time_equal(a, d));
  EXPECT_TRUE(constant_time_equal({}, {}));
}

}  // namespace
