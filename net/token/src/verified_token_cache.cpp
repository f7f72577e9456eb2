// Verified-token cache: fixed memory, per-set locks, LRU within a set, epoch-checked entries.
#include <edge/net/token/verified_token_cache.h>

#include <edge/hsm/mac.h>

#include <algorithm>
#include <random>
#include <stdexcept>

namespace edge::flow {

VerifiedTokenCache::VerifiedTokenCache(std::size_t capacity, std::chrono::milliseconds ttl) : ttl_(ttl) {
  if (ttl.count() <= 0) throw std::invalid_argument("verified-token cache lifetime must be positive");
  if (capacity == 0) return;
  ways_ = std::min(capacity, kWays);
  sets_ = capacity / ways_;
  std::random_device rd;
  auto draw = [&rd] { return (std::uint64_t{rd()} << 32) | rd(); };
  hash_key_ = {draw(), draw()};
  set_state_ = std::make_unique<Set[]>(sets_);
  entries_ = std::make_unique<Entry[]>(sets_ * ways_);
}

VerifiedTokenCache::~VerifiedTokenCache() = default;

std::size_t VerifiedTokenCache::set_index(std::span<const std::uint8_t> token) const noexcept {
  const std::uint64_t h = siphash13(hash_key_, token);
  // The modulo bias of a 64-bit hash over at most millions of sets is below 2^-40.
  return static_cast<std::size_t>(h % sets_);
}

void VerifiedTokenCache::drop(Entry& e) noexcept {
  if (e.size == 0) return;
  e.size = 0;
  size_.fetch_sub(1, std::memory_order_relaxed);
}

bool VerifiedTokenCache::lookup(std::span<const std::uint8_t> token, std::uint64_t epoch, FlowKey& flow,
                                std::uint32_t& key_version, Clock::time_point now) noexcept {
  if (sets_ == 0 || token.empty() || token.size() > kMaxRawSize) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const std::size_t s = set_index(token);
  Set& set = set_state_[s];
  Entry* const ways = &entries_[s * ways_];
  std::lock_guard lock(set.mu);
  for (std::size_t w = 0; w < ways_; ++w) {
    Entry& e = ways[w];
    if (e.size != token.size()) continue;
    if (!hsm::constant_time_equal({e.bytes.data(), e.size}, token)) continue;
    if (e.epoch != epoch) {
      // Verified under a key-set state that no longer holds: never a hit.
      drop(e);
      stale_drops_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    if (now >= e.expires) {
      // Past its lifetime: the HSM decides again.
      drop(e);
      expired_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    e.stamp = ++set.clock;
    flow = e.flow;
    key_version = e.key_version;
    hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void VerifiedTokenCache::insert(std::span<const std::uint8_t> token, std::uint64_t epoch, const FlowKey& flow,
                                std::uint32_t key_version, Clock::time_point now) noexcept {
  if (sets_ == 0 || token.empty() || token.size() > kMaxRawSize) return;
  const std::size_t s = set_index(token);
  Set& set = set_state_[s];
  Entry* const ways = &entries_[s * ways_];
  std::lock_guard lock(set.mu);
  Entry* slot = nullptr;
  for (std::size_t w = 0; w < ways_; ++w) {
    Entry& e = ways[w];
    if (e.size == token.size() && hsm::constant_time_equal({e.bytes.data(), e.size}, token)) {
      slot = &e;  // already cached: refresh in place
      break;
    }
  }
  if (slot == nullptr) {
    for (std::size_t w = 0; w < ways_ && slot == nullptr; ++w) {
      if (ways[w].size == 0) slot = &ways[w];
    }
  }
  if (slot == nullptr) {
    slot = std::min_element(ways, ways + ways_,
                            [](const Entry& a, const Entry& b) { return a.stamp < b.stamp; });
    drop(*slot);
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  if (slot->size == 0) size_.fetch_add(1, std::memory_order_relaxed);
  std::copy(token.begin(), token.end(), slot->bytes.begin());
  slot->size = static_cast<std::uint8_t>(token.size());
  slot->epoch = epoch;
  slot->key_version = key_version;
  slot->flow = flow;
  slot->stamp = ++set.clock;
  slot->expires = now + ttl_;
  inserts_.fetch_add(1, std::memory_order_relaxed);
}

void VerifiedTokenCache::clear() noexcept {
  for (std::size_t s = 0; s < sets_; ++s) {
    std::lock_guard lock(set_state_[s].mu);
    for (std::size_t w = 0; w < ways_; ++w) drop(entries_[s * ways_ + w]);
  }
  clears_.fetch_add(1, std::memory_order_relaxed);
}

std::size_t VerifiedTokenCache::forget_version(std::uint32_t key_version) noexcept {
  std::size_t dropped = 0;
  for (std::size_t s = 0; s < sets_; ++s) {
    std::lock_guard lock(set_state_[s].mu);
    for (std::size_t w = 0; w < ways_; ++w) {
      Entry& e = entries_[s * ways_ + w];
      if (e.size != 0 && e.key_version == key_version) {
        drop(e);
        ++dropped;
      }
    }
  }
  return dropped;
}

VerifiedTokenCacheStats VerifiedTokenCache::stats() const noexcept {
  VerifiedTokenCacheStats st;
  st.hits = hits_.load(std::memory_order_relaxed);
  st.misses = misses_.load(std::memory_order_relaxed);
  st.inserts = inserts_.load(std::memory_order_relaxed);
  st.evictions = evictions_.load(std::memory_order_relaxed);
  st.stale_drops = stale_drops_.load(std::memory_order_relaxed);
  st.expired = expired_.load(std::memory_order_relaxed);
  st.clears = clears_.load(std::memory_order_relaxed);
  st.capacity = capacity();
  st.size = size();
  return st;
}

}  // namespace edge::flow
