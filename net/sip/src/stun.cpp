// STUN Binding decode/encode with bounds checks, FINGERPRINT, and datagram demultiplexing.
#include "edge/net/sip/stun.h"

#include "lex.h"

#include <cstring>

namespace edge::sip::stun {
namespace {

constexpr std::uint16_t kAttrMappedAddress = 0x0001;
constexpr std::uint16_t kAttrUsername = 0x0006;
constexpr std::uint16_t kAttrMessageIntegrity = 0x0008;
constexpr std::uint16_t kAttrErrorCode = 0x0009;
constexpr std::uint16_t kAttrUnknownAttributes = 0x000a;
constexpr std::uint16_t kAttrRealm = 0x0014;
constexpr std::uint16_t kAttrNonce = 0x0015;
constexpr std::uint16_t kAttrXorMappedAddress = 0x0020;
constexpr std::uint16_t kAttrSoftware = 0x8022;
constexpr std::uint16_t kAttrFingerprint = 0x8028;
constexpr std::uint32_t kFingerprintXor = 0x5354554e;

constexpr std::array<std::uint32_t, 256> kCrcTable = [] {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}();

std::uint16_t get16(const std::uint8_t* p) noexcept { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t get32(const std::uint8_t* p) noexcept {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
void put16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
void put32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

bool known_required(std::uint16_t t) noexcept {
  switch (t) {
    case kAttrMappedAddress:
    case kAttrUsername:
    case kAttrMessageIntegrity:
    case kAttrErrorCode:
    case kAttrUnknownAttributes:
    case kAttrRealm:
    case kAttrNonce:
    case kAttrXorMappedAddress:
      return true;
    default:
      return false;
  }
}

bool decode_xor_address(const std::uint8_t* v, std::size_t len, const std::uint8_t* header,
                        Endpoint& ep) noexcept {
  if (len < 4) return false;
  const std::uint8_t family = v[1];
  ep.port = static_cast<std::uint16_t>(get16(v + 2) ^ (kMagicCookie >> 16));
  if (family == 0x01 && len == 8) {
    ep.ipv6 = false;
    for (int i = 0; i < 4; ++i) ep.address[static_cast<std::size_t>(i)] = v[4 + i] ^ header[4 + i];
    return true;
  }
  if (family == 0x02 && len == 20) {
    ep.ipv6 = true;
    // XOR with the magic cookie followed by the transaction id: header bytes 4..19.
    for (int i = 0; i < 16; ++i) ep.address[static_cast<std::size_t>(i)] = v[4 + i] ^ header[4 + i];
    return true;
  }
  return false;
}

// Writes a 20-byte header with a zero length; the caller patches the length.
void put_header(std::uint8_t* p, std::uint16_t type, const TransactionId& id) noexcept {
  put16(p, type);
  put16(p + 2, 0);
  put32(p + 4, kMagicCookie);
  std::memcpy(p + 8, id.data(), id.size());
}

std::size_t put_attr(std::uint8_t* p, std::uint16_t type, const void* value, std::size_t len) noexcept {
  put16(p, type);
  put16(p + 2, static_cast<std::uint16_t>(len));
  if (len) std::memcpy(p + 4, value, len);
  std::size_t padded = (len + 3) & ~std::size_t{3};
  std::memset(p + 4 + len, 0, padded - len);
  return 4 + padded;
}

// Sets the header length to cover `end` bytes plus FINGERPRINT, then appends FINGERPRINT.
std::size_t finish_with_fingerprint(std::uint8_t* base, std::size_t end) noexcept {
  put16(base + 2, static_cast<std::uint16_t>(end + 8 - kHeaderSize));
  std::uint32_t crc = crc32({base, end}) ^ kFingerprintXor;
  put16(base + end, kAttrFingerprint);
  put16(base + end + 2, 4);
  put32(base + end + 4, crc);
  return end + 8;
}

}  // namespace

std::string_view reason(Error e) noexcept {
  switch (e) {
    case Error::ok:
      return "ok";
    case Error::too_short:
      return "shorter than a STUN header";
    case Error::not_stun:
      return "not a STUN message";
    case Error::bad_length:
      return "bad STUN length";
    case Error::truncated_attribute:
      return "STUN attribute past the end";
    case Error::bad_fingerprint:
      return "bad or missing FINGERPRINT";
    case Error::fingerprint_not_last:
      return "FINGERPRINT not the last attribute";
    case Error::bad_attribute:
      return "malformed STUN attribute";
  }
  return "unknown error";
}

std::uint32_t crc32(std::span<const std::uint8_t> data) noexcept {
  std::uint32_t c = 0xffffffffu;
  for (std::uint8_t b : data) c = kCrcTable[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

Error decode(std::span<const std::uint8_t> d, Message& m, bool require_fingerprint) noexcept {
  m = Message{};
  if (d.size() < kHeaderSize) return Error::too_short;
  const std::uint8_t* p = d.data();
  if ((p[0] & 0xc0) != 0 || get32(p + 4) != kMagicCookie) return Error::not_stun;
  const std::size_t length = get16(p + 2);
  if (length % 4 != 0 || length != d.size() - kHeaderSize) return Error::bad_length;
  m.type = get16(p);
  std::memcpy(m.transaction_id.data(), p + 8, 12);

  std::size_t pos = kHeaderSize;
  bool after_integrity = false;
  while (pos < d.size()) {
    if (m.has_fingerprint) return Error::fingerprint_not_last;
    if (d.size() - pos < 4) return Error::truncated_attribute;
    const std::uint16_t type = get16(p + pos);
    const std::size_t len = get16(p + pos + 2);
    const std::size_t padded = (len + 3) & ~std::size_t{3};
    if (d.size() - pos - 4 < padded) return Error::truncated_attribute;
    const std::uint8_t* v = p + pos + 4;
    if (type == kAttrFingerprint) {
      if (len != 4) return Error::bad_attribute;
      if ((crc32({p, pos}) ^ kFingerprintXor) != get32(v)) return Error::bad_fingerprint;
      m.has_fingerprint = true;
    } else if (after_integrity) {
      // RFC 5389 §15.4: attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are ignored.
    } else {
      switch (type) {
        case kAttrMessageIntegrity:
          if (len != 20) return Error::bad_attribute;
          m.has_message_integrity = true;
          after_integrity = true;
          break;
        case kAttrUsername:
          if (len > 512) return Error::bad_attribute;
          m.has_username = true;
          break;
        case kAttrSoftware:
          if (len > 763) return Error::bad_attribute;
          m.software = {reinterpret_cast<const char*>(v), len};
          break;
        case kAttrXorMappedAddress:
          if (!decode_xor_address(v, len, p, m.xor_mapped_address)) return Error::bad_attribute;
          m.has_xor_mapped_address = true;
          break;
        default:
          if (type < 0x8000 && !known_required(type) && m.unknown_count < m.unknown_required.size())
            m.unknown_required[m.unknown_count++] = type;
          break;
      }
    }
    pos += 4 + padded;
  }
  if (require_fingerprint && !m.has_fingerprint) return Error::bad_fingerprint;
  return Error::ok;
}

std::size_t encode_binding_success(const TransactionId& id, const Endpoint& mapped,
                                   std::span<std::uint8_t> out, bool fingerprint,
                                   std::string_view software) noexcept {
  if (software.size() > 128) return 0;
  const std::size_t addr_len = mapped.ipv6 ? 20 : 8;
  const std::size_t need = kHeaderSize + 4 + addr_len +
                           (software.empty() ? 0 : 4 + ((software.size() + 3) & ~std::size_t{3})) +
                           (fingerprint ? 8 : 0);
  if (out.size() < need) return 0;
  std::uint8_t* base = out.data();
  put_header(base, kBindingSuccess, id);
  std::size_t pos = kHeaderSize;
  if (!software.empty()) pos += put_attr(base + pos, kAttrSoftware, software.data(), software.size());

  std::uint8_t value[20] = {};
  value[1] = mapped.ipv6 ? 0x02 : 0x01;
  put16(value + 2, static_cast<std::uint16_t>(mapped.port ^ (kMagicCookie >> 16)));
  // X-Address: XOR with the cookie (IPv4) or the cookie and the transaction id (IPv6).
  for (std::size_t i = 0; i < addr_len - 4; ++i) value[4 + i] = mapped.address[i] ^ base[4 + i];
  pos += put_attr(base + pos, kAttrXorMappedAddress, value, addr_len);

  if (fingerprint) return finish_with_fingerprint(base, pos);
  put16(base + 2, static_cast<std::uint16_t>(pos - kHeaderSize));
  return pos;
}

std::size_t encode_binding_error(const TransactionId& id, int code, std::string_view reason_phrase,
                                 std::span<const std::uint16_t> unknown,
                                 std::span<std::uint8_t> out) noexcept {
  if (code < 300 || code > 699 || reason_phrase.size() > 128 || unknown.size() > 64) return 0;
  const std::size_t need = kHeaderSize + 4 + ((4 + reason_phrase.size() + 3) & ~std::size_t{3}) +
                           (unknown.empty() ? 0 : 4 + ((unknown.size() * 2 + 3) & ~std::size_t{3})) + 8;
  if (out.size() < need) return 0;
  std::uint8_t* base = out.data();
  put_header(base, kBindingError, id);
  std::size_t pos = kHeaderSize;
  std::uint8_t ec[4 + 128] = {};
  ec[2] = static_cast<std::uint8_t>(code / 100);
  ec[3] = static_cast<std::uint8_t>(code % 100);
  if (!reason_phrase.empty()) std::memcpy(ec + 4, reason_phrase.data(), reason_phrase.size());
  pos += put_attr(base + pos, kAttrErrorCode, ec, 4 + reason_phrase.size());
  if (!unknown.empty()) {
    std::uint8_t ua[128] = {};
    for (std::size_t i = 0; i < unknown.size(); ++i) put16(ua + 2 * i, unknown[i]);
    pos += put_attr(base + pos, kAttrUnknownAttributes, ua, unknown.size() * 2);
  }
  return finish_with_fingerprint(base, pos);
}

DatagramKind classify_datagram(std::span<const std::uint8_t> d) noexcept {
  if (d.empty()) return DatagramKind::unknown;
  const std::uint8_t b = d[0];
  if (b == '\r' || b == '\n') {
    // Only CR/LF: a keep-alive. CRLFs before a start line are ignored (RFC 3261 §7.5): SIP
    // when a token character follows them.
    for (std::uint8_t c : d) {
      if (c == '\r' || c == '\n') continue;
      return lex::is_token(static_cast<char>(c)) ? DatagramKind::sip : DatagramKind::unknown;
    }
    return DatagramKind::keep_alive;
  }
  // RFC 7983: 0..3 is STUN; the cookie confirms it (RFC 5389 §6).
  if (b <= 3) {
    if (d.size() >= kHeaderSize && get32(d.data() + 4) == kMagicCookie) return DatagramKind::stun;
    return DatagramKind::unknown;
  }
  // A SIP start line begins with a method (any token character: RFC 4475 intmeth starts with
  // "!") or "SIP/".
  if (lex::is_token(static_cast<char>(b))) return DatagramKind::sip;
  return DatagramKind::unknown;
}

}  // namespace edge::sip::stun
