// Verified-token cache: hard capacity, LRU per set, epoch and version invalidation, thread safety.
#include <edge/net/token/verified_token_cache.h>

#include <gtest/gtest.h>

#include <array>
#include <thread>
#include <vector>

namespace edge::flow {
namespace {

// A distinct 34-byte "token" per n; the flow is derived from n so a hit can be
// checked against the bytes it was looked up with.
std::array<std::uint8_t, kRawSizeV4> token(std::uint32_t n) {
  std::array<std::uint8_t, kRawSizeV4> t{};
  for (std::size_t i = 0; i < t.size(); ++i) {
    t[i] = static_cast<std::uint8_t>((n >> (8 * (i % 4))) ^ (i * 31));
  }
  return t;
}
FlowKey flow_of(std::uint32_t n) {
  return {Transport::tcp, Endpoint::v4({10, 0, 0, 1}, 5060),
          Endpoint::v4({10, static_cast<std::uint8_t>(n >> 16), static_cast<std::uint8_t>(n >> 8),
                        static_cast<std::uint8_t>(n)},
                       static_cast<std::uint16_t>(1 + n % 60000))};
}

TEST(VerifiedTokenCache, HitReturnsTheStoredFlowAndVersion) {
  VerifiedTokenCache cache(64);
  cache.insert(token(1), 7, flow_of(1), 3);
  FlowKey f;
  std::uint32_t v = 0;
  ASSERT_TRUE(cache.lookup(token(1), 7, f, v));
  EXPECT_EQ(f, flow_of(1));
  EXPECT_EQ(v, 3u);
  EXPECT_FALSE(cache.lookup(token(2), 7, f, v));
  auto almost = token(1);
  almost.back() ^= 1;  // same flow bytes, one tag bit off
  EXPECT_FALSE(cache.lookup(almost, 7, f, v));
  const auto one = token(1);
  EXPECT_FALSE(cache.lookup(std::span<const std::uint8_t>(one).first(33), 7, f, v));
  const auto st = cache.stats();
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.misses, 3u);
  EXPECT_EQ(st.inserts, 1u);
}

TEST(VerifiedTokenCache, NeverGrowsBeyondItsCapacity) {
  for (std::size_t capacity : {1u, 3u, 8u, 100u, 1000u}) {
    VerifiedTokenCache cache(capacity);
    EXPECT_LE(cache.capacity(), capacity);
    EXPECT_GE(cache.capacity(), capacity - capacity % VerifiedTokenCache::kWays);
    for (std::uint32_t n = 0; n < 20 * capacity + 100; ++n) {
      cache.insert(token(n), 1, flow_of(n), 1);
      ASSERT_LE(cache.size(), cache.capacity());
    }
    EXPECT_EQ(cache.size(), cache.capacity());
    EXPECT_GT(cache.stats().evictions, 0u);
  }
}

TEST(VerifiedTokenCache, ZeroCapacityDisablesIt) {
  VerifiedTokenCache cache(0);
  cache.insert(token(1), 1, flow_of(1), 1);
  FlowKey f;
  std::uint32_t v = 0;
  EXPECT_FALSE(cache.lookup(token(1), 1, f, v));
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.capacity(), 0u);
}

TEST(VerifiedTokenCache, EvictsTheLeastRecentlyUsedOfASet) {
  VerifiedTokenCache cache(VerifiedTokenCache::kWays);  // a single set
  for (std::uint32_t n = 0; n < VerifiedTokenCache::kWays; ++n) {
    cache.insert(token(n), 1, flow_of(n), 1);
  }
  FlowKey f;
  std::uint32_t v = 0;
  ASSERT_TRUE(cache.lookup(token(0), 1, f, v));  // 0 is now the most recent
  cache.insert(token(100), 1, flow_of(100), 1);  // evicts 1, the least recent
  EXPECT_TRUE(cache.lookup(token(0), 1, f, v));
  EXPECT_FALSE(cache.lookup(token(1), 1, f, v));
  EXPECT_TRUE(cache.lookup(token(2), 1, f, v));
  EXPECT_TRUE(cache.lookup(token(100), 1, f, v));
  // Re-inserting a cached token refreshes it instead of taking a second way.
  cache.insert(token(100), 1, flow_of(100), 1);
  EXPECT_EQ(cache.size(), VerifiedTokenCache::kWays);
}

TEST(VerifiedTokenCache, AnotherEpochNeverHitsAndDropsTheEntry) {
  VerifiedTokenCache cache(64);
  cache.insert(token(1), 5, flow_of(1), 1);
  FlowKey f;
  std::uint32_t v = 0;
  EXPECT_FALSE(cache.lookup(token(1), 6, f, v));
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.stats().stale_drops, 1u);
  EXPECT_FALSE(cache.lookup(token(1), 5, f, v));  // gone for good
}

TEST(VerifiedTokenCache, ClearAndForgetVersion) {
  VerifiedTokenCache cache(256);
  for (std::uint32_t n = 0; n < 40; ++n) cache.insert(token(n), 1, flow_of(n), 1 + n % 2);
  EXPECT_EQ(cache.size(), 40u);
  EXPECT_EQ(cache.forget_version(2), 20u);
  EXPECT_EQ(cache.size(), 20u);
  FlowKey f;
  std::uint32_t v = 0;
  EXPECT_TRUE(cache.lookup(token(0), 1, f, v));
  EXPECT_FALSE(cache.lookup(token(1), 1, f, v));
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.lookup(token(0), 1, f, v));
  EXPECT_EQ(cache.stats().clears, 1u);
}

TEST(VerifiedTokenCache, ConcurrentUseKeepsEntriesIntact) {
  VerifiedTokenCache cache(512);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < 20000; ++i) {
        const std::uint32_t n = (i * 7 + static_cast<std::uint32_t>(t)) % 2000;
        if (i % 3 == 0) cache.insert(token(n), 1, flow_of(n), n % 5 + 1);
        FlowKey f;
        std::uint32_t v = 0;
        if (cache.lookup(token(n), 1, f, v) && (!(f == flow_of(n)) || v != n % 5 + 1)) ++wrong;
        if (i % 5000 == 4999) cache.forget_version(static_cast<std::uint32_t>(t + 1));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(cache.size(), cache.capacity());
  const auto st = cache.stats();
  EXPECT_GT(st.hits, 0u);
}

}  // namespace
}  // namespace edge::flow
