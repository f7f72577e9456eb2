// FailedTokenCache: a direct-mapped, striped-lock table of refused token hashes with a lifetime.
#include <edge/net/token/failed_token_cache.h>
#include <edge/net/token/flow_key.h>

namespace edge::flow {

FailedTokenCache::FailedTokenCache(std::size_t capacity, std::chrono::milliseconds ttl)
    : capacity_(capacity), ttl_(ttl), entries_(capacity ? std::make_unique<Entry[]>(capacity) : nullptr) {
  const auto& k = process_hash_key();
  hash_key_ = {k[0] + 0x6661'696c'6564ULL, k[1] ^ 0x746f'6b65'6e73ULL};
}

bool FailedTokenCache::contains(std::span<const std::uint8_t> token, std::uint64_t epoch,
                                Clock::time_point now) noexcept {
  if (capacity_ == 0) return false;
  const std::uint64_t h = siphash13(hash_key_, token);
  const std::size_t i = h % capacity_;
  std::lock_guard lock(mu_[i % kStripes]);
  const Entry& e = entries_[i];
  if (e.expires == 0 || e.hash != h || e.epoch != epoch || e.expires <= now.time_since_epoch().count())
    return false;
  hits_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void FailedTokenCache::insert(std::span<const std::uint8_t> token, std::uint64_t epoch,
                              Clock::time_point now) noexcept {
  if (capacity_ == 0 || ttl_.count() <= 0) return;
  const std::uint64_t h = siphash13(hash_key_, token);
  const std::size_t i = h % capacity_;
  std::lock_guard lock(mu_[i % kStripes]);
  entries_[i] = {h, epoch, (now + ttl_).time_since_epoch().count()};
  inserts_.fetch_add(1, std::memory_order_relaxed);
}

void FailedTokenCache::clear() noexcept {
  for (std::size_t s = 0; s < kStripes; ++s) {
    std::lock_guard lock(mu_[s]);
    for (std::size_t i = s; i < capacity_; i += kStripes) entries_[i] = {};
  }
}

FailedTokenCacheStats FailedTokenCache::stats() const noexcept {
  FailedTokenCacheStats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.inserts = inserts_.load(std::memory_order_relaxed);
  s.capacity = capacity_;
  return s;
}

}  // namespace edge::flow
