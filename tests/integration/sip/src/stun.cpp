// STUN Binding request encoding and response decoding (RFC 5389), enough for SIP outbound keep-alives.
#include "edge/test/sip/stun.h"

#include <algorithm>
#include <random>

namespace edge::test {
namespace {

constexpr std::uint32_t kMagicCookie = 0x2112A442;
constexpr std::uint16_t kBindingRequest = 0x0001;
constexpr std::uint16_t kMappedAddress = 0x0001;
constexpr std::uint16_t kXorMappedAddress = 0x0020;
constexpr std::uint16_t kXorMappedAddressOld = 0x8020;  // pre-RFC 5389 drafts; some servers still send it

std::uint16_t get16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

std::optional<Endpoint> decode_address(std::span<const std::uint8_t> value, bool xored, const StunTransactionId& id) {
  if (value.size() < 4) return std::nullopt;
  std::uint8_t family = value[1];
  std::uint16_t port = get16(value, 2);
  if (xored) port ^= static_cast<std::uint16_t>(kMagicCookie >> 16);
  // The XOR key: the magic cookie, then (IPv6 only) the transaction id.
  std::array<std::uint8_t, 16> key{0x21, 0x12, 0xA4, 0x42};
  std::copy(id.begin(), id.end(), key.begin() + 4);
  if (family == 0x01 && value.size() >= 8) {
    boost::asio::ip::address_v4::bytes_type a{};
    for (std::size_t i = 0; i < 4; ++i) a[i] = static_cast<std::uint8_t>(value[4 + i] ^ (xored ? key[i] : 0));
    return Endpoint{boost::asio::ip::address_v4(a), port};
  }
  if (family == 0x02 && value.size() >= 20) {
    boost::asio::ip::address_v6::bytes_type a{};
    for (std::size_t i = 0; i < 16; ++i) a[i] = static_cast<std::uint8_t>(value[4 + i] ^ (xored ? key[i] : 0));
    return Endpoint{boost::asio::ip::address_v6(a), port};
  }
  return std::nullopt;
}

}  // namespace

StunTransactionId random_stun_transaction_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  StunTransactionId id{};
  for (auto& b : id) b = static_cast<std::uint8_t>(rng());
  return id;
}

std::vector<std::uint8_t> make_stun_binding_request(const StunTransactionId& id) {
  // Type, length 0, magic cookie, transaction id. Sized up front: inserting
  // into a short vector trips GCC 12's -Warray-bounds false positive.
  std::vector<std::uint8_t> m(20, 0);
  m[0] = static_cast<std::uint8_t>(kBindingRequest >> 8);
  m[1] = static_cast<std::uint8_t>(kBindingRequest & 0xFF);
  for (std::size_t i = 0; i < 4; ++i) m[4 + i] = static_cast<std::uint8_t>(kMagicCookie >> (24 - 8 * i));
  std::copy(id.begin(), id.end(), m.begin() + 8);
  return m;
}

bool looks_like_stun(std::span<const std::uint8_t> datagram) { return !datagram.empty() && (datagram[0] & 0xC0) == 0; }

std::optional<StunBindingResponse> parse_stun_response(std::span<const std::uint8_t> d) {
  if (d.size() < 20 || !looks_like_stun(d)) return std::nullopt;
  std::size_t length = get16(d, 2);
  if (length % 4 != 0 || d.size() < 20 + length) return std::nullopt;
  StunBindingResponse r;
  r.message_type = get16(d, 0);
  std::uint32_t cookie = (std::uint32_t{d[4]} << 24) | (std::uint32_t{d[5]} << 16) | (std::uint32_t{d[6]} << 8) | d[7];
  r.magic_cookie_ok = cookie == kMagicCookie;
  std::copy(d.begin() + 8, d.begin() + 20, r.transaction_id.begin());

  std::optional<Endpoint> plain;
  std::size_t at = 20;
  while (at + 4 <= 20 + length) {
    std::uint16_t type = get16(d, at);
    std::size_t len = get16(d, at + 2);
    if (at + 4 + len > 20 + length) return std::nullopt;
    auto value = d.subspan(at + 4, len);
    r.attribute_types.push_back(type);
    if ((type == kXorMappedAddress || type == kXorMappedAddressOld) && !r.mapped_was_xor) {
      r.mapped = decode_address(value, true, r.transaction_id);
      r.mapped_was_xor = r.mapped.has_value();
    } else if (type == kMappedAddress) {
      plain = decode_address(value, false, r.transaction_id);
    }
    at += 4 + ((len + 3) & ~std::size_t{3});  // attributes are padded to 4 bytes
  }
  if (!r.mapped) r.mapped = plain;
  return r;
}

}  // namespace edge::test
