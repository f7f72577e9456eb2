// Bounded, thread-safe cache of tokens the HSM has already verified (set-associative LRU).
#pragma once

#include <edge/net/token/flow_key.h>
#include <edge/net/token/token.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

namespace edge::flow {

struct VerifiedTokenCacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t inserts = 0;
  std::uint64_t evictions = 0;    // a live entry replaced because its set was full
  std::uint64_t stale_drops = 0;  // entries found verified under an older epoch
  std::uint64_t expired = 0;      // entries found past their lifetime (dropped, a miss)
  std::uint64_t clears = 0;
  std::size_t capacity = 0;
  std::size_t size = 0;
};

// Keyed by the full raw token bytes (format, key version, flow and tag), holding
// the decoded flow. Memory is allocated once at construction and never grows:
// `capacity` entries in sets of up to kWays, least recently used evicted per
// set. Only tokens the HSM verified are ever inserted, so an attacker can fill
// it only with valid tokens it has seen, and the set index comes from a keyed
// hash, so it cannot aim them at one set. Every entry remembers the MacOracle
// epoch it was verified under; a lookup under another epoch misses, so a
// retired key version stops hitting even before clear() runs. Every entry
// also has a lifetime (`ttl`, counted from the HSM verify or mint that put it
// there; a hit does not extend it): past it the HSM decides again, so no
// cached answer outlives the key-set view it was made under by more than ttl
// even if no refresh ever noticed a change.
class VerifiedTokenCache {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kWays = 8;
  static constexpr std::chrono::milliseconds kDefaultTtl{300'000};

  // capacity 0 disables the cache (every lookup misses, inserts are dropped).
  // The effective capacity is capacity rounded down to a multiple of the ways,
  // never more than asked. ttl must be positive (std::invalid_argument).
  explicit VerifiedTokenCache(std::size_t capacity, std::chrono::milliseconds ttl = kDefaultTtl);
  ~VerifiedTokenCache();
  VerifiedTokenCache(const VerifiedTokenCache&) = delete;
  VerifiedTokenCache& operator=(const VerifiedTokenCache&) = delete;

  // On a hit fills flow and key_version and returns true. Cached bytes are
  // compared in constant time (edge::hsm::constant_time_equal).
  // An entry past its lifetime at `now` is dropped and misses.
  bool lookup(std::span<const std::uint8_t> token, std::uint64_t epoch, FlowKey& flow,
              std::uint32_t& key_version, Clock::time_point now = Clock::now()) noexcept;

  // Remembers a token the HSM verified (or minted) under `epoch` at `now`;
  // it lives until now + ttl.
  void insert(std::span<const std::uint8_t> token, std::uint64_t epoch, const FlowKey& flow,
              std::uint32_t key_version, Clock::time_point now = Clock::now()) noexcept;

  // Drops every entry (a key version stopped verifying).
  void clear() noexcept;
  // Drops the entries of one key version; returns how many.
  std::size_t forget_version(std::uint32_t key_version) noexcept;

  std::size_t capacity() const noexcept { return sets_ * ways_; }
  std::chrono::milliseconds ttl() const noexcept { return ttl_; }
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  VerifiedTokenCacheStats stats() const noexcept;

 private:
  struct Entry {
    std::array<std::uint8_t, kMaxRawSize> bytes{};
    std::uint8_t size = 0;  // 0 = empty
    std::uint32_t key_version = 0;
    std::uint64_t epoch = 0;
    std::uint64_t stamp = 0;  // per-set use clock, for LRU
    Clock::time_point expires{};
    FlowKey flow;
  };
  struct Set {
    std::mutex mu;
    std::uint64_t clock = 0;
  };

  std::size_t set_index(std::span<const std::uint8_t> token) const noexcept;
  void drop(Entry& e) noexcept;

  std::chrono::milliseconds ttl_;
  std::size_t ways_ = 0;
  std::size_t sets_ = 0;
  std::array<std::uint64_t, 2> hash_key_{};
  std::unique_ptr<Set[]> set_state_;
  std::unique_ptr<Entry[]> entries_;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, inserts_{0}, evictions_{0}, stale_drops_{0}, expired_{0},
      clears_{0};
};

}  // namespace edge::flow
