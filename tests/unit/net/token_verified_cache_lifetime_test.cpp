// Verified-token cache entries have a lifetime: past it the HSM decides again; invalidation by version.
#include <edge/net/token/verified_token_cache.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <stdexcept>

namespace edge::flow {
namespace {

constexpr std::chrono::milliseconds ms(std::int64_t n) { return std::chrono::milliseconds(n); }
using Clock = VerifiedTokenCache::Clock;

std::array<std::uint8_t, kRawSizeV4> token(std::uint8_t n) {
  std::array<std::uint8_t, kRawSizeV4> t{};
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<std::uint8_t>(n ^ (i * 31));
  return t;
}
FlowKey flow() {
  return {Transport::tcp, Endpoint::v4({10, 0, 0, 1}, 5060), Endpoint::v4({10, 0, 0, 2}, 40000)};
}

TEST(VerifiedTokenCacheLifetime, DefaultIsTheDocumentedBound) {
  const VerifiedTokenCache cache(64);
  EXPECT_EQ(cache.ttl(), VerifiedTokenCache::kDefaultTtl);
  EXPECT_EQ(VerifiedTokenCache::kDefaultTtl, ms(300'000));
}

TEST(VerifiedTokenCacheLifetime, AnEntryHitsUntilItsLifetimeEndsThenMisses) {
  VerifiedTokenCache cache(64, ms(1000));
  const Clock::time_point t0 = Clock::now();
  cache.insert(token(1), 7, flow(), 3, t0);
  FlowKey f;
  std::uint32_t v = 0;
  EXPECT_TRUE(cache.lookup(token(1), 7, f, v, t0 + ms(999)));
  EXPECT_EQ(v, 3u);
  // A hit does not extend the lifetime.
  EXPECT_FALSE(cache.lookup(token(1), 7, f, v, t0 + ms(1000)));
  EXPECT_EQ(cache.stats().expired, 1u);
  EXPECT_EQ(cache.size(), 0u);  // dropped, not kept
  EXPECT_FALSE(cache.lookup(token(1), 7, f, v, t0 + ms(1)));
}

TEST(VerifiedTokenCacheLifetime, AFreshVerifyStartsANewLifetime) {
  VerifiedTokenCache cache(64, ms(1000));
  const Clock::time_point t0 = Clock::now();
  cache.insert(token(1), 7, flow(), 3, t0);
  cache.insert(token(1), 7, flow(), 3, t0 + ms(900));  // the HSM verified it again
  FlowKey f;
  std::uint32_t v = 0;
  EXPECT_TRUE(cache.lookup(token(1), 7, f, v, t0 + ms(1500)));
  EXPECT_FALSE(cache.lookup(token(1), 7, f, v, t0 + ms(1900)));
}

TEST(VerifiedTokenCacheLifetime, ForgetVersionDropsOnlyThatVersion) {
  VerifiedTokenCache cache(64, ms(60'000));
  const Clock::time_point t0 = Clock::now();
  cache.insert(token(1), 7, flow(), 3, t0);
  cache.insert(token(2), 7, flow(), 4, t0);
  EXPECT_EQ(cache.forget_version(3), 1u);
  FlowKey f;
  std::uint32_t v = 0;
  EXPECT_FALSE(cache.lookup(token(1), 7, f, v, t0 + ms(1)));
  EXPECT_TRUE(cache.lookup(token(2), 7, f, v, t0 + ms(1)));
  EXPECT_EQ(v, 4u);
}

TEST(VerifiedTokenCacheLifetime, ANonPositiveLifetimeIsRefused) {
  EXPECT_THROW(VerifiedTokenCache(64, ms(0)), std::invalid_argument);
  EXPECT_THROW(VerifiedTokenCache(64, ms(-1)), std::invalid_argument);
}

}  // namespace
}  // namespace edge::flow
