// Strict base64url without padding (RFC 4648 §5): the text form of flow tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace edge::flow {

// Characters needed for n bytes without padding: ceil(8n / 6).
constexpr std::size_t base64url_encoded_size(std::size_t n) noexcept { return (n * 8 + 5) / 6; }

// Bytes a text of n characters decodes to; only meaningful when
// base64url_valid_length(n).
constexpr std::size_t base64url_decoded_size(std::size_t n) noexcept { return n * 6 / 8; }

// Unpadded base64 never has a length of 1 mod 4 (a lone 6-bit group cannot
// hold a byte).
constexpr bool base64url_valid_length(std::size_t n) noexcept { return n % 4 != 1; }

// A-Z a-z 0-9 '-' '_': all of them RFC 3261 `unreserved`, so a token needs no
// escaping in a SIP URI user part.
bool is_base64url_char(char c) noexcept;

// Writes base64url_encoded_size(in.size()) characters to out and returns that
// count; returns 0 (writing nothing) when out is too small.
std::size_t base64url_encode(std::span<const std::uint8_t> in, std::span<char> out) noexcept;

// Strict decode: only the alphabet above, no padding, no whitespace, and the
// unused low bits of the last character must be zero (RFC 4648 §3.5), so every
// byte string has exactly one accepted text. Returns the number of bytes
// written, or -1 when the text is not canonical base64url or out is too small.
// Reads exactly in.size() characters; never writes past out.
std::ptrdiff_t base64url_decode(std::string_view in, std::span<std::uint8_t> out) noexcept;

}  // namespace edge::flow
