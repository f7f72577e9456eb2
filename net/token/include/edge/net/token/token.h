// Flow token wire format v1: constants, value types and the HSM-free encode/parse steps.
#pragma once

#include <edge/net/token/flow_key.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace edge::flow {

// Byte layout (docs/token-format.md has the reasons and a worked example):
//   [0]      format version, 0x01
//   [1..4]   key version id, u32 big endian, 1..2^32-1
//   [5]      flags: bit 7 = IPv6, bits 6..4 reserved (0), bits 3..0 transport code
//   [6..]    local address (4|16), local port (u16 BE), remote address (4|16), remote port (u16 BE)
//   [-16..]  first 16 bytes of HMAC-SHA256 (HSM key `version`) over every preceding byte
inline constexpr std::uint8_t kFormatV1 = 0x01;
inline constexpr std::size_t kHeaderSize = 6;
inline constexpr std::size_t kTagSize = 16;  // 128-bit truncation (RFC 2104 §5 allows >= half)
inline constexpr std::uint8_t kFlagIpv6 = 0x80;
inline constexpr std::uint8_t kFlagReserved = 0x70;
inline constexpr std::uint8_t kFlagTransport = 0x0f;

inline constexpr std::size_t kSignedSizeV4 = kHeaderSize + 2 * std::size_t{4 + 2};   // 18
inline constexpr std::size_t kSignedSizeV6 = kHeaderSize + 2 * std::size_t{16 + 2};  // 42
inline constexpr std::size_t kRawSizeV4 = kSignedSizeV4 + kTagSize;                  // 34
inline constexpr std::size_t kRawSizeV6 = kSignedSizeV6 + kTagSize;                  // 58
inline constexpr std::size_t kTextSizeV4 = (kRawSizeV4 * 8 + 5) / 6;                 // 46
inline constexpr std::size_t kTextSizeV6 = (kRawSizeV6 * 8 + 5) / 6;                 // 78
inline constexpr std::size_t kMaxRawSize = kRawSizeV6;
inline constexpr std::size_t kMaxTextSize = kTextSizeV6;

// A URI user part the proxy takes for a flow token (docs/token-format.md,
// "Token-shaped user parts"): kMinShapedSize..kMaxShapedSize characters, each
// from the base64url alphabet (A-Z a-z 0-9 - _), except that the last one or
// two may be '='. Anything else (`alice`, a phone number, a Kamailio token
// with + or /, an escaped character) is no token: a Route of ours carrying it
// is ordinary loose routing (RFC 3261 §16.4). A token-shaped user part is
// verified, and anything but valid is 403. 22 characters is the text of the
// 16-byte tag alone (nothing shorter can hold one); 80 is the longest v1
// token (78) with the two '=' a stack may pad it with.
inline constexpr std::size_t kMinShapedSize = (kTagSize * 8 + 5) / 6;  // 22
inline constexpr std::size_t kMaxShapedSize = kMaxTextSize + 2;        // 80
bool token_shaped(std::string_view user) noexcept;

// What a presented token turned out to be. The proxy maps these to answers
// for a token-shaped user part (token_shaped): valid -> route over the flow;
// not_ours (a token of no v1 layout: wrong length, another version),
// malformed, tampered -> 403 (RFC 5626 §5.3.1); hsm_unavailable -> 503
// (cannot decide now).
enum class TokenStatus : std::uint8_t {
  valid,
  // Not one of our v1 tokens by its shape: empty, a text length other than 46
  // or 78, a character outside base64url, non-zero unused bits in the last
  // character (not canonical), or a first byte other than kFormatV1.
  not_ours,
  // Shaped like ours but the structure is invalid: reserved flag bits set,
  // transport code unknown, IPv6 bit disagreeing with the length, key
  // version 0, or a port 0. Decided without asking the HSM.
  malformed,
  // Well formed, but the HSM says no: the MAC does not match, or the key
  // version is unknown or retired.
  tampered,
  // Well formed, but no answer could be had from the HSM now.
  hsm_unavailable,
};
const char* to_string(TokenStatus s) noexcept;

// Outcome of the HSM-free first step of decoding.
enum class ParseStatus : std::uint8_t { well_formed, not_ours, malformed };

// A token's text, held inline (no allocation): what goes into the user part.
struct TokenText {
  std::array<char, kMaxTextSize> chars{};
  std::uint8_t size = 0;

  std::string_view view() const noexcept { return {chars.data(), size}; }
  bool empty() const noexcept { return size == 0; }
  friend bool operator==(const TokenText& a, const TokenText& b) noexcept { return a.view() == b.view(); }
};

// A decoded but not yet authenticated token. Everything is inline; it borrows
// nothing from the input text.
struct ParsedToken {
  std::array<std::uint8_t, kMaxRawSize> raw{};
  std::uint8_t raw_size = 0;
  std::uint32_t key_version = 0;
  FlowKey flow;

  std::span<const std::uint8_t> bytes() const noexcept { return {raw.data(), raw_size}; }
  std::span<const std::uint8_t> signed_part() const noexcept {
    return {raw.data(), static_cast<std::size_t>(raw_size - kTagSize)};
  }
  std::span<const std::uint8_t> tag() const noexcept { return {raw.data() + raw_size - kTagSize, kTagSize}; }
};

// First decoding step: text -> structure, no MAC check, no allocation, reads
// exactly text.size() characters. `out` is filled only on well_formed.
ParseStatus parse_token(std::string_view text, ParsedToken& out) noexcept;

// Why a flow cannot be put in a token.
enum class EncodeStatus : std::uint8_t {
  ok,
  family_mismatch,  // local and remote differ in family (unmap v4-mapped addresses first)
  zero_port,        // a connected flow never has port 0 on either side
  zero_version,     // key versions start at 1
};

// Writes the signed part (everything before the tag) for `flow` under
// `key_version` into out; sets `size` to kSignedSizeV4 or kSignedSizeV6.
EncodeStatus encode_signed_part(const FlowKey& flow, std::uint32_t key_version,
                                std::span<std::uint8_t, kMaxRawSize> out, std::size_t& size) noexcept;

// Appends the first kTagSize bytes of `mac` to the signed part held in
// raw[0..signed_size) and writes the base64url text.
TokenText finish_token(std::span<std::uint8_t, kMaxRawSize> raw, std::size_t signed_size,
                       std::span<const std::uint8_t> mac) noexcept;

}  // namespace edge::flow
