// Fuzz target: STUN decoder and demultiplexer; a decoded Binding request must round-trip
// through the response encoder.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "edge/net/sip/stun.h"

namespace stun = edge::sip::stun;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  (void)stun::classify_datagram(in);
  stun::Message m;
  const stun::Error strict = stun::decode(in, m, true);
  const stun::Error e = stun::decode(in, m, false);
  if (strict == stun::Error::ok && e != stun::Error::ok) std::abort();
  if (e != stun::Error::ok) return 0;
  if (stun::classify_datagram(in) != stun::DatagramKind::stun && !(data[0] > 3)) std::abort();

  stun::Endpoint ep;
  ep.ipv6 = size % 2;
  std::memcpy(ep.address.data(), data + 4, 16);  // decode succeeded: at least 20 bytes
  ep.port = static_cast<std::uint16_t>(size);
  std::array<std::uint8_t, stun::kMaxResponseSize> out{};
  const std::size_t n =
      stun::encode_binding_success(m.transaction_id, ep, out, true, m.software.substr(0, 128));
  if (n == 0) std::abort();
  stun::Message r;
  if (stun::decode({out.data(), n}, r, true) != stun::Error::ok) std::abort();
  if (r.transaction_id != m.transaction_id || !r.has_xor_mapped_address) std::abort();
  if (r.xor_mapped_address.port != ep.port || r.xor_mapped_address.ipv6 != ep.ipv6) std::abort();
  if (std::memcmp(r.xor_mapped_address.address.data(), ep.address.data(), ep.ipv6 ? 16 : 4) != 0)
    std::abort();
  if (m.unknown_count > 0) {
    const std::size_t en =
        stun::encode_binding_error(m.transaction_id, 420, "Unknown Attribute",
                                   {m.unknown_required.data(), m.unknown_count}, out);
    if (en == 0 || stun::decode({out.data(), en}, r, true) != stun::Error::ok) std::abort();
  }
  return 0;
}
