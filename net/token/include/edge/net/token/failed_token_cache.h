// Bounded, thread-safe memory of tokens the HSM refused: a forged token sent again costs no HSM call.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

namespace edge::flow {

struct FailedTokenCacheStats {
  std::uint64_t hits = 0, inserts = 0;
  std::size_t capacity = 0;
};

// Direct-mapped by a keyed 64-bit hash of the full raw token (format, version,
// flow and tag), so a different tag on the same flow is a different entry. Only
// tokens the HSM called tampered go in (never an hsm_unavailable answer, never
// a malformed one: those cost no HSM call anyway). Every entry lives `ttl` and
// remembers the oracle epoch it failed under; another epoch misses. A forged
// token that collides with a valid one would need the process's hash key.
// Memory is allocated once; capacity 0 disables the cache.
class FailedTokenCache {
 public:
  using Clock = std::chrono::steady_clock;

  FailedTokenCache(std::size_t capacity, std::chrono::milliseconds ttl);
  FailedTokenCache(const FailedTokenCache&) = delete;
  FailedTokenCache& operator=(const FailedTokenCache&) = delete;

  bool contains(std::span<const std::uint8_t> token, std::uint64_t epoch, Clock::time_point now) noexcept;
  void insert(std::span<const std::uint8_t> token, std::uint64_t epoch, Clock::time_point now) noexcept;
  void clear() noexcept;

  std::size_t capacity() const noexcept { return capacity_; }
  std::chrono::milliseconds ttl() const noexcept { return ttl_; }
  FailedTokenCacheStats stats() const noexcept;

 private:
  struct Entry {
    std::uint64_t hash = 0;
    std::uint64_t epoch = 0;
    Clock::rep expires = 0;  // 0 = empty
  };
  static constexpr std::size_t kStripes = 16;

  const std::size_t capacity_;
  const std::chrono::milliseconds ttl_;
  std::array<std::uint64_t, 2> hash_key_{};
  std::unique_ptr<Entry[]> entries_;
  std::array<std::mutex, kStripes> mu_;
  std::atomic<std::uint64_t> hits_{0}, inserts_{0};
};

}  // namespace edge::flow
