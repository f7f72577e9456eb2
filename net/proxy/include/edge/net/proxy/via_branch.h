// The branch of the Via we push: unique per transaction and carrying, MAC-protected, the client flow a
// response goes back to.
#pragma once

#include "edge/net/token/flow_key.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace edge::net {

// Response routing without per-transaction state (RFC 3261 §16.11 lets a stateless
// proxy put anything in its branch). Layout:
//
//   "z9hG4bK" <24 hex: unique part> "." <kind> <base64url(payload || tag)>
//
//   kind 'f': the request came from a client flow; payload = the flow (1 byte
//             transport code | 0x80 for IPv6, local address, local port BE, remote
//             address, remote port BE: 13 or 37 bytes). A response from the core
//             is sent over exactly this flow.
//   kind 'c': the request came from the core; no payload (its responses come
//             back from a client and always go to the core).
//   tag     : 8 bytes of SipHash-2-4 under a process key over the unique part,
//             the kind and the payload, so a response naming a flow we never put
//             there (a buggy or hostile core, a forged Via) is dropped, at the cost
//             of ~50 ns and no HSM call.
//
// The unique part comes from make_stateless_branch(), i.e. from the client's own
// branch: a retransmission, and the CANCEL / non-2xx ACK of an INVITE, get the same
// branch as the original, as §16.11 requires of a stateless forwarder.
class ViaBranch {
 public:
  static constexpr std::size_t kMaxSize = 7 + 24 + 1 + 1 + 60;
  std::string_view view() const noexcept { return {text_.data(), size_}; }

 private:
  friend class BranchCodec;
  std::array<char, kMaxSize> text_{};
  std::size_t size_ = 0;
};

struct DecodedBranch {
  bool from_client = false;  // kind 'f'
  flow::FlowKey flow;        // when from_client
};

class BranchCodec {
 public:
  // key: 128-bit SipHash key; stable for the process so branches survive a
  // controlled restart of the SIP front end.
  explicit BranchCodec(const std::array<std::uint64_t, 2>& key) noexcept : key_(key) {}

  // unique24: exactly 24 characters that are RFC 3261 token characters.
  ViaBranch for_client(std::string_view unique24, const flow::FlowKey& flow) const noexcept;
  ViaBranch for_core(std::string_view unique24) const noexcept;
  // nullopt unless the branch is one of ours with a correct tag.
  std::optional<DecodedBranch> decode(std::string_view branch) const noexcept;

 private:
  ViaBranch make(std::string_view unique24, char kind, const std::uint8_t* payload,
                 std::size_t payload_size) const noexcept;
  std::array<std::uint64_t, 2> key_;
};

}  // namespace edge::net
