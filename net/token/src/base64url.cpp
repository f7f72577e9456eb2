// Strict unpadded base64url encoder/decoder with table lookups and no allocation.
#include <edge/net/token/base64url.h>

#include <array>

namespace edge::flow {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::uint8_t kInvalid = 0xff;

// Reverse table over all 256 byte values, so any input byte (including NUL and
// bytes >= 0x80) is a single lookup with no branch on its range.
constexpr std::array<std::uint8_t, 256> make_reverse() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = kInvalid;
  for (std::uint8_t i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = i;
  return t;
}
constexpr std::array<std::uint8_t, 256> kReverse = make_reverse();

}  // namespace

bool is_base64url_char(char c) noexcept { return kReverse[static_cast<unsigned char>(c)] != kInvalid; }

std::size_t base64url_encode(std::span<const std::uint8_t> in, std::span<char> out) noexcept {
  const std::size_t need = base64url_encoded_size(in.size());
  if (out.size() < need) return 0;
  std::size_t o = 0;
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
    out[o++] = kAlphabet[v & 63];
  }
  const std::size_t rest = in.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{in[i]} << 16;
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
  }
  return o;
}

std::ptrdiff_t base64url_decode(std::string_view in, std::span<std::uint8_t> out) noexcept {
  if (!base64url_valid_length(in.size())) return -1;
  const std::size_t need = base64url_decoded_size(in.size());
  if (out.size() < need) return -1;
  auto sextet = [&in](std::size_t k) { return kReverse[static_cast<unsigned char>(in[k])]; };
  std::size_t o = 0;
  std::size_t i = 0;
  for (; i + 4 <= in.size(); i += 4) {
    const std::uint8_t a = sextet(i), b = sextet(i + 1), c = sextet(i + 2), d = sextet(i + 3);
    // kInvalid has bit 7 set and no sextet does: one test covers all four.
    if ((a | b | c | d) & 0x80) return -1;
    const std::uint32_t v = (std::uint32_t{a} << 18) | (std::uint32_t{b} << 12) | (std::uint32_t{c} << 6) | d;
    out[o++] = static_cast<std::uint8_t>(v >> 16);
    out[o++] = static_cast<std::uint8_t>(v >> 8);
    out[o++] = static_cast<std::uint8_t>(v);
  }
  const std::size_t rest = in.size() - i;
  if (rest == 2) {
    const std::uint8_t a = sextet(i), b = sextet(i + 1);
    if ((a | b) & 0x80) return -1;
    if (b & 0x0f) return -1;  // 4 unused bits must be zero
    out[o++] = static_cast<std::uint8_t>((a << 2) | (b >> 4));
  } else if (rest == 3) {
    const std::uint8_t a = sextet(i), b = sextet(i + 1), c = sextet(i + 2);
    if ((a | b | c) & 0x80) return -1;
    if (c & 0x03) return -1;  // 2 unused bits must be zero
    const std::uint32_t v = (std::uint32_t{a} << 18) | (std::uint32_t{b} << 12) | (std::uint32_t{c} << 6);
    out[o++] = static_cast<std::uint8_t>(v >> 16);
    out[o++] = static_cast<std::uint8_t>(v >> 8);
  }
  return static_cast<std::ptrdiff_t>(o);
}

}  // namespace edge::flow
