// The narrow "MAC oracle" interface through which net/ mints and checks flow tokens.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace edge::hsm {

inline constexpr std::size_t kMacSize = 32;  // HMAC-SHA256
using MacTag = std::array<std::uint8_t, kMacSize>;

// Outcome of a MAC operation on the per-message path (no exceptions there).
enum class MacStatus : std::uint8_t {
  ok,               // sign succeeded / tag matches
  mismatch,         // verify: tag does not match
  unknown_version,  // no such key version in the set
  retired_version,  // version exists but is retired: it signs and verifies nothing
  unavailable,      // HSM away (fault, back-off in progress, PIN problem)
  bad_argument,     // tag too short / too long
};

const char* to_string(MacStatus s) noexcept;

// Constant-time comparison of two equally long byte ranges.
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;

// Signs and verifies bytes with version V of one configured key set.
// Implementations are thread-safe.
//
// May block: sign() and verify() are one HSM operation each. KeySetMac waits
// for a free session (at most HsmConfig::checkout_timeout, 2 s by default)
// and for the HSM's answer; it never recovers the HSM on the caller's thread
// when HsmConfig::background_recovery is set (it answers unavailable
// instead). minting_version() and epoch() never block.
class MacOracle {
 public:
  virtual ~MacOracle() = default;

  // Newest active version of the set: the one new tokens are minted with.
  // 0 when the set has no active version.
  virtual std::uint32_t minting_version() const = 0;

  // Changes whenever a version stops verifying (retire / destroy / refresh
  // that saw fewer versions), so caches of verified tokens can be dropped.
  virtual std::uint64_t epoch() const = 0;

  // Full 32-byte HMAC-SHA256 of data under key version `version`.
  virtual MacStatus sign(std::uint32_t version, std::span<const std::uint8_t> data, MacTag& out) = 0;

  // Checks a full or truncated (16..32 bytes) tag in constant time.
  virtual MacStatus verify(std::uint32_t version, std::span<const std::uint8_t> data,
                           std::span<const std::uint8_t> tag) = 0;
};

}  // namespace edge::hsm
