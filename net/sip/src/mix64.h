// Internal: the splitmix64 finaliser (branch and tag generation, editor.cpp) and its inverse
// (recognising our own tags without a table, response.cpp).
#pragma once

#include <cstdint>

namespace edge::sip::detail {

// A bijection on 64-bit values with good avalanche.
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

constexpr std::uint64_t inverse_odd(std::uint64_t a) noexcept {
  std::uint64_t x = a;  // Newton: each step doubles the correct low bits (3 -> 6 -> ... -> 96)
  for (int i = 0; i < 5; ++i) x *= 2 - a * x;
  return x;
}
constexpr std::uint64_t unshift(std::uint64_t y, int s) noexcept {
  std::uint64_t x = y;
  for (int k = s; k < 64; k += s) x = y ^ (x >> s);
  return x;
}
constexpr std::uint64_t unmix64(std::uint64_t x) noexcept {
  x = unshift(x, 31);
  x *= inverse_odd(0x94d049bb133111ebULL);
  x = unshift(x, 27);
  x *= inverse_odd(0xbf58476d1ce4e5b9ULL);
  return unshift(x, 30);
}
static_assert(unmix64(mix64(0x0123456789abcdefULL)) == 0x0123456789abcdefULL);
static_assert(unmix64(mix64(42)) == 42);

}  // namespace edge::sip::detail
