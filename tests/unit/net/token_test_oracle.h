// A deterministic in-memory MacOracle for pure-codec flow-token tests (no HSM, no secrets).
#pragma once

#include <edge/hsm/mac.h>
#include <edge/net/token/flow_key.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>

namespace edge::flow::testing {

// Tags are four SipHash-2-4 outputs under keys derived from the version: not
// HMAC, but every input bit changes them, which is all a codec test needs.
// Tests that claim HSM behaviour use SoftHSM instead (flow_token_hsm_test.cpp).
class TestOracle : public hsm::MacOracle {
 public:
  enum class State { active, retired };

  TestOracle() { add(1); }

  void add(std::uint32_t v) {
    std::lock_guard lock(mu_);
    versions_[v] = State::active;
  }
  void retire(std::uint32_t v) {
    std::lock_guard lock(mu_);
    versions_[v] = State::retired;
    ++epoch_;
  }
  void remove(std::uint32_t v) {
    std::lock_guard lock(mu_);
    versions_.erase(v);
    ++epoch_;
  }
  void set_unavailable(bool u) { unavailable_ = u; }

  std::uint32_t minting_version() const override {
    std::lock_guard lock(mu_);
    for (auto it = versions_.rbegin(); it != versions_.rend(); ++it) {
      if (it->second == State::active) return it->first;
    }
    return 0;
  }
  std::uint64_t epoch() const override {
    std::lock_guard lock(mu_);
    return epoch_;
  }

  hsm::MacStatus sign(std::uint32_t version, std::span<const std::uint8_t> data, hsm::MacTag& out) override {
    ++signs;
    if (auto st = check(version); st != hsm::MacStatus::ok) return st;
    out = tag(version, data);
    return hsm::MacStatus::ok;
  }

  hsm::MacStatus verify(std::uint32_t version, std::span<const std::uint8_t> data,
                        std::span<const std::uint8_t> t) override {
    ++verifies;
    if (t.size() < 16 || t.size() > hsm::kMacSize) return hsm::MacStatus::bad_argument;
    if (auto st = check(version); st != hsm::MacStatus::ok) return st;
    const hsm::MacTag full = tag(version, data);
    return hsm::constant_time_equal({full.data(), t.size()}, t) ? hsm::MacStatus::ok
                                                                : hsm::MacStatus::mismatch;
  }

  static hsm::MacTag tag(std::uint32_t version, std::span<const std::uint8_t> data) {
    hsm::MacTag out{};
    for (std::uint64_t i = 0; i < 4; ++i) {
      const std::uint64_t h = siphash24({0x5eed0000ULL + version, i}, data);
      for (int b = 0; b < 8; ++b) out[i * 8 + b] = static_cast<std::uint8_t>(h >> (8 * b));
    }
    return out;
  }

  std::atomic<std::uint64_t> signs{0}, verifies{0};

 private:
  hsm::MacStatus check(std::uint32_t version) const {
    if (unavailable_) return hsm::MacStatus::unavailable;
    std::lock_guard lock(mu_);
    auto it = versions_.find(version);
    if (it == versions_.end()) return hsm::MacStatus::unknown_version;
    if (it->second == State::retired) return hsm::MacStatus::retired_version;
    return hsm::MacStatus::ok;
  }

  mutable std::mutex mu_;
  std::map<std::uint32_t, State> versions_;
  std::uint64_t epoch_ = 1;
  std::atomic<bool> unavailable_{false};
};

}  // namespace edge::flow::testing
