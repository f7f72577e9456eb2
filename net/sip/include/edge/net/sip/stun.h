// STUN Binding (RFC 5389) for outbound keep-alives on SIP UDP ports (RFC 5626 §4.4.2, §8),
// and the first-byte demultiplexing of STUN, SIP and CRLF keep-alives on one port.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace edge::sip::stun {

inline constexpr std::uint32_t kMagicCookie = 0x2112A442;
inline constexpr std::uint16_t kBindingRequest = 0x0001;
inline constexpr std::uint16_t kBindingSuccess = 0x0101;
inline constexpr std::uint16_t kBindingError = 0x0111;
inline constexpr std::size_t kHeaderSize = 20;
// Largest response encode_* produce: header, XOR-MAPPED-ADDRESS (IPv6), SOFTWARE (<= 128 bytes)
// or ERROR-CODE + UNKNOWN-ATTRIBUTES, FINGERPRINT.
inline constexpr std::size_t kMaxResponseSize = 20 + 24 + 4 + 128 + 4 + 128 + 4 + 16 + 8;

enum class Error : std::uint8_t {
  ok = 0,
  too_short,             // fewer than 20 bytes
  not_stun,              // top two bits of the type not zero, or no magic cookie
  bad_length,            // length field not a multiple of 4 or not the datagram's size
  truncated_attribute,   // an attribute runs past the end
  bad_fingerprint,       // FINGERPRINT present and wrong (or absent when required)
  fingerprint_not_last,  // RFC 5389 §15.5: FINGERPRINT is the last attribute
  bad_attribute,         // a known attribute with a malformed value
};
std::string_view reason(Error e) noexcept;

using TransactionId = std::array<std::uint8_t, 12>;

struct Endpoint {
  bool ipv6 = false;
  std::array<std::uint8_t, 16> address{};  // network order; IPv4 in the first 4 bytes
  std::uint16_t port = 0;
};

struct Message {
  std::uint16_t type = 0;
  TransactionId transaction_id{};
  bool has_fingerprint = false;  // and it was correct (decode fails otherwise)
  bool has_message_integrity = false;
  bool has_username = false;
  bool has_xor_mapped_address = false;
  Endpoint xor_mapped_address;  // decoded, when has_xor_mapped_address
  std::string_view software;    // view into the datagram
  // Comprehension-required attributes (type < 0x8000) we do not understand: a server answers
  // 420 listing them (RFC 5389 §7.3.1).
  std::array<std::uint16_t, 8> unknown_required{};
  std::size_t unknown_count = 0;

  std::uint16_t method() const noexcept {
    return static_cast<std::uint16_t>((type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2));
  }
  bool is_binding_request() const noexcept { return type == kBindingRequest; }
};

// Decodes a STUN message with full bounds checks. require_fingerprint makes a missing
// FINGERPRINT an error (RFC 5626 §4.4.2 lets the server check it to tell STUN from noise).
Error decode(std::span<const std::uint8_t> datagram, Message& out, bool require_fingerprint = false) noexcept;

// Binding success response with XOR-MAPPED-ADDRESS (+ SOFTWARE when given, <= 128 bytes)
// (+ FINGERPRINT). Returns the size written, 0 when out is too small or software too long.
std::size_t encode_binding_success(const TransactionId& id, const Endpoint& mapped,
                                   std::span<std::uint8_t> out, bool fingerprint = true,
                                   std::string_view software = {}) noexcept;

// Binding error response (e.g. 400, or 420 with UNKNOWN-ATTRIBUTES); FINGERPRINT added.
std::size_t encode_binding_error(const TransactionId& id, int code, std::string_view reason_phrase,
                                 std::span<const std::uint16_t> unknown_attributes,
                                 std::span<std::uint8_t> out) noexcept;

// CRC-32 (ISO-HDLC, as zlib) used by FINGERPRINT.
std::uint32_t crc32(std::span<const std::uint8_t> data) noexcept;

// What arrived on a SIP UDP port.
enum class DatagramKind : std::uint8_t {
  stun,        // top two bits 00, at least a header, magic cookie present (RFC 7983 / 5389)
  sip,         // starts like a SIP start line (a token character), maybe after CRLFs (RFC 3261 §7.5)
  keep_alive,  // only CR/LF bytes: a CRLF keep-alive some UAs send over UDP
  unknown,     // drop
};
DatagramKind classify_datagram(std::span<const std::uint8_t> datagram) noexcept;

}  // namespace edge::sip::stun
