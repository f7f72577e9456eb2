// Encodes the client flow into our Via branch with a SipHash tag, and decodes it from a response.
#include "edge/net/proxy/via_branch.h"

#include "edge/hsm/mac.h"
#include "edge/net/token/base64url.h"

#include <cstring>

namespace edge::net {
namespace {

constexpr std::string_view kCookie = "z9hG4bK";
constexpr std::size_t kUnique = 24;
constexpr std::size_t kTag = 8;
constexpr std::size_t kMaxFlow = 1 + 2 * (16 + 2);

std::size_t encode_flow(const flow::FlowKey& f, std::uint8_t* out) noexcept {
  const bool v6 = f.local.family == flow::Family::ipv6;
  std::size_t n = 0;
  out[n++] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(f.transport) | (v6 ? 0x80 : 0));
  for (const flow::Endpoint* e : {&f.local, &f.remote}) {
    const auto a = e->address_bytes();
    // A flow's two ends share a family; a mixed one (never seen from a socket) is
    // written with the local family's size, and decode() then rejects it.
    const std::size_t size = v6 ? 16 : 4;
    for (std::size_t i = 0; i < size; ++i) out[n++] = i < a.size() ? a[i] : 0;
    out[n++] = static_cast<std::uint8_t>(e->port >> 8);
    out[n++] = static_cast<std::uint8_t>(e->port & 0xff);
  }
  return n;
}

bool decode_flow(const std::uint8_t* in, std::size_t size, flow::FlowKey& f) noexcept {
  if (size == 0) return false;
  const bool v6 = (in[0] & 0x80) != 0;
  const auto t = flow::transport_from_code(in[0] & 0x7f);
  const std::size_t asz = v6 ? 16 : 4;
  if (!t || size != 1 + 2 * (asz + 2)) return false;
  f.transport = *t;
  std::size_t n = 1;
  for (flow::Endpoint* e : {&f.local, &f.remote}) {
    e->family = v6 ? flow::Family::ipv6 : flow::Family::ipv4;
    e->address = {};
    std::memcpy(e->address.data(), in + n, asz);
    n += asz;
    e->port = static_cast<std::uint16_t>((in[n] << 8) | in[n + 1]);
    n += 2;
  }
  return true;
}

}  // namespace

ViaBranch BranchCodec::make(std::string_view unique24, char kind, const std::uint8_t* payload,
                            std::size_t payload_size) const noexcept {
  ViaBranch b;
  // MAC input: unique part, kind, payload.
  std::uint8_t buf[kUnique + 1 + kMaxFlow + kTag];
  std::memcpy(buf, unique24.data(), kUnique);
  buf[kUnique] = static_cast<std::uint8_t>(kind);
  if (payload_size) std::memcpy(buf + kUnique + 1, payload, payload_size);
  const std::uint64_t tag = flow::siphash24(key_, {buf, kUnique + 1 + payload_size});
  // Encoded part: payload then tag.
  std::uint8_t* blob = buf + kUnique + 1;
  for (std::size_t i = 0; i < kTag; ++i) blob[payload_size + i] = static_cast<std::uint8_t>(tag >> (8 * i));
  char* p = b.text_.data();
  std::memcpy(p, kCookie.data(), kCookie.size());
  std::memcpy(p + kCookie.size(), unique24.data(), kUnique);
  std::size_t n = kCookie.size() + kUnique;
  p[n++] = '.';
  p[n++] = kind;
  n += flow::base64url_encode({blob, payload_size + kTag}, {p + n, b.text_.size() - n});
  b.size_ = n;
  return b;
}

ViaBranch BranchCodec::for_client(std::string_view unique24, const flow::FlowKey& f) const noexcept {
  std::uint8_t payload[kMaxFlow];
  const std::size_t n = encode_flow(f, payload);
  return make(unique24.substr(0, kUnique), 'f', payload, n);
}

ViaBranch BranchCodec::for_core(std::string_view unique24) const noexcept {
  return make(unique24.substr(0, kUnique), 'c', nullptr, 0);
}

std::optional<DecodedBranch> BranchCodec::decode(std::string_view branch) const noexcept {
  const std::size_t head = kCookie.size() + kUnique + 2;
  if (branch.size() <= head || branch.size() > ViaBranch::kMaxSize) return std::nullopt;
  if (branch.substr(0, kCookie.size()) != kCookie || branch[head - 2] != '.') return std::nullopt;
  const char kind = branch[head - 1];
  if (kind != 'f' && kind != 'c') return std::nullopt;
  std::uint8_t buf[kUnique + 1 + kMaxFlow + kTag];
  std::memcpy(buf, branch.data() + kCookie.size(), kUnique);
  buf[kUnique] = static_cast<std::uint8_t>(kind);
  const std::string_view text = branch.substr(head);
  if (!flow::base64url_valid_length(text.size())) return std::nullopt;
  const std::ptrdiff_t got = flow::base64url_decode(text, {buf + kUnique + 1, kMaxFlow + kTag});
  if (got < static_cast<std::ptrdiff_t>(kTag)) return std::nullopt;
  const std::size_t payload_size = static_cast<std::size_t>(got) - kTag;
  const std::uint64_t want = flow::siphash24(key_, {buf, kUnique + 1 + payload_size});
  std::uint8_t want_bytes[kTag];
  for (std::size_t i = 0; i < kTag; ++i) want_bytes[i] = static_cast<std::uint8_t>(want >> (8 * i));
  if (!hsm::constant_time_equal({want_bytes, kTag}, {buf + kUnique + 1 + payload_size, kTag}))
    return std::nullopt;
  DecodedBranch d;
  d.from_client = kind == 'f';
  if (d.from_client) {
    if (!decode_flow(buf + kUnique + 1, payload_size, d.flow)) return std::nullopt;
  } else if (payload_size != 0) {
    return std::nullopt;
  }
  return d;
}

}  // namespace edge::net
