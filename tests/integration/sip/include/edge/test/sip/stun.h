// STUN Binding request/response (RFC 5389) as a SIP outbound client uses it for keep-alives.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "edge/test/sip/transport.h"

namespace edge::test {

using StunTransactionId = std::array<std::uint8_t, 12>;

StunTransactionId random_stun_transaction_id();

// A 20-byte Binding request: no attributes (RFC 5626 §8.2 needs none).
std::vector<std::uint8_t> make_stun_binding_request(const StunTransactionId& id);

// True when the datagram can be STUN rather than SIP: the first two bits are
// zero (RFC 7983 §7 / RFC 5626 §5.4: SIP always starts with a letter).
bool looks_like_stun(std::span<const std::uint8_t> datagram);

struct StunBindingResponse {
  std::uint16_t message_type = 0;  // 0x0101 success, 0x0111 error
  StunTransactionId transaction_id{};
  bool magic_cookie_ok = false;
  // XOR-MAPPED-ADDRESS (0x0020, or the pre-RFC 0x8020), decoded; falls back
  // to MAPPED-ADDRESS (0x0001) when only that one is present.
  std::optional<Endpoint> mapped;
  bool mapped_was_xor = false;
  std::vector<std::uint16_t> attribute_types;  // in order, for assertions
};

// Decodes a Binding response; nullopt when it is not a well-formed STUN message.
std::optional<StunBindingResponse> parse_stun_response(std::span<const std::uint8_t> datagram);

}  // namespace edge::test
