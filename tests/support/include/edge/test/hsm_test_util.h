// Small helpers shared by the HSM tests: sample bytes and polling with an upper bound.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

namespace edge::test {

// `n` bytes that differ with `seed` (the 40-byte default is the size of a v1 token body).
inline std::vector<std::uint8_t> sample_data(std::size_t n = 40, std::uint8_t seed = 0) {
  std::vector<std::uint8_t> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<std::uint8_t>(i * 31 + seed * 7 + 1);
  return d;
}

inline std::vector<std::uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

// Calls `pred` until it returns true or `limit` has passed; returns its last answer.
// The limit is a generous upper bound, never an expectation of speed.
template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit,
                std::chrono::milliseconds step = std::chrono::milliseconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

}  // namespace edge::test
