// Counters of HSM operations by kind, exposed in status and metrics and used by tests and benchmarks.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace edge::hsm {

// Upper bounds of the MAC latency buckets, in microseconds: from a local
// SoftHSM (about 20 us) to a network HSM under load (several ms) and a stuck
// one (the checkout timeout). The last bucket (+Inf) follows them.
inline constexpr std::array<std::uint64_t, 13> kMacLatencyBoundsUs{
    25, 50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 100'000, 500'000, 2'000'000};
inline constexpr std::size_t kMacLatencyBuckets = kMacLatencyBoundsUs.size() + 1;
// MacStatus values (hsm/mac.h), the result label of a MAC operation.
inline constexpr std::size_t kMacResults = 6;

// One MAC operation kind (sign or verify) as the caller saw it: from session
// checkout to the answer, by result.
struct MacOpSnapshot {
  std::array<std::uint64_t, kMacLatencyBuckets> buckets{};  // not cumulative
  std::array<std::uint64_t, kMacResults> results{};         // by MacStatus
  std::uint64_t count = 0;
  std::uint64_t sum_us = 0;
};

struct OpCountersSnapshot {
  std::uint64_t sign = 0;          // C_Sign calls made for MAC sign
  std::uint64_t verify = 0;        // C_Sign calls made to verify a tag
  std::uint64_t find = 0;          // object searches (C_FindObjectsInit)
  std::uint64_t generate = 0;      // C_GenerateKey
  std::uint64_t login = 0;         // C_Login
  std::uint64_t session_open = 0;  // C_OpenSession
  std::uint64_t recoveries = 0;    // session reopen / re-login / re-find / rebuild
  std::uint64_t failures = 0;      // operations that ended in an error
  MacOpSnapshot mac_sign, mac_verify;
  std::uint64_t total() const { return sign + verify + find + generate + login + session_open; }
};

class MacOpCounters {
 public:
  void record(std::size_t result, std::chrono::steady_clock::duration took) noexcept;
  MacOpSnapshot snapshot() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kMacLatencyBuckets> buckets_{};
  std::array<std::atomic<std::uint64_t>, kMacResults> results_{};
  std::atomic<std::uint64_t> sum_us_{0};
};

class OpCounters {
 public:
  std::atomic<std::uint64_t> sign{0}, verify{0}, find{0}, generate{0}, login{0}, session_open{0},
      recoveries{0}, failures{0};
  MacOpCounters mac_sign, mac_verify;
  OpCountersSnapshot snapshot() const noexcept;
};

}  // namespace edge::hsm
