// MacStatus names and the constant-time tag comparison.
#include <edge/hsm/mac.h>

namespace edge::hsm {

const char* to_string(MacStatus s) noexcept {
  switch (s) {
    case MacStatus::ok: return "ok";
    case MacStatus::mismatch: return "mismatch";
    case MacStatus::unknown_version: return "unknown_version";
    case MacStatus::retired_version: return "retired_version";
    case MacStatus::unavailable: return "unavailable";
    case MacStatus::bad_argument: return "bad_argument";
  }
  return "?";
}

bool constant_time_equal(std::span<const std::uint8_t> a,
                         std::span<const std::uint8_t> b) noexcept {
  // Lengths are public (the tag length is part of the token format); only the
  // contents are compared in time independent of where they differ.
  if (a.size() != b.size()) return false;
  volatile std::uint8_t diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff = static_cast<std::uint8_t>(diff | (a[i] ^ b[i]));
  return diff == 0;
}

}  // namespace edge::hsm
