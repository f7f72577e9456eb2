// Flow token format v1: building the signed part and parsing a presented text, HSM-free.
#include <edge/net/token/token.h>

#include <edge/net/token/base64url.h>

#include <algorithm>
#include <cstring>

namespace edge::flow {

const char* to_string(TokenStatus s) noexcept {
  switch (s) {
    case TokenStatus::valid:
      return "valid";
    case TokenStatus::not_ours:
      return "not_ours";
    case TokenStatus::malformed:
      return "malformed";
    case TokenStatus::tampered:
      return "tampered";
    case TokenStatus::hsm_unavailable:
      return "hsm_unavailable";
  }
  return "?";
}

bool token_shaped(std::string_view user) noexcept {
  if (user.size() < kMinShapedSize || user.size() > kMaxShapedSize) return false;
  std::size_t end = user.size();
  for (int pad = 0; pad < 2 && user[end - 1] == '='; ++pad) --end;
  for (std::size_t i = 0; i < end; ++i) {
    const char c = user[i];
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

namespace {

void put_u16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

std::uint16_t get_u16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

std::size_t put_endpoint(std::uint8_t* p, const Endpoint& e) noexcept {
  const auto a = e.address_bytes();
  std::copy(a.begin(), a.end(), p);
  put_u16(p + a.size(), e.port);
  return a.size() + 2;
}

Endpoint get_endpoint(const std::uint8_t* p, Family family) noexcept {
  Endpoint e;
  e.family = family;
  const std::size_t n = family == Family::ipv4 ? 4 : 16;
  std::copy(p, p + n, e.address.begin());
  e.port = get_u16(p + n);
  return e;
}

}  // namespace

EncodeStatus encode_signed_part(const FlowKey& flow, std::uint32_t key_version,
                                std::span<std::uint8_t, kMaxRawSize> out, std::size_t& size) noexcept {
  // One family bit for both sides keeps the token a byte shorter than a
  // per-side family; a flow whose sides differ only exists when a dual-stack
  // socket reports v4-mapped addresses, and unmapped() fixes that upstream.
  if (flow.local.family != flow.remote.family) return EncodeStatus::family_mismatch;
  if (flow.local.port == 0 || flow.remote.port == 0) return EncodeStatus::zero_port;
  if (key_version == 0) return EncodeStatus::zero_version;
  std::uint8_t* p = out.data();
  p[0] = kFormatV1;
  p[1] = static_cast<std::uint8_t>(key_version >> 24);
  p[2] = static_cast<std::uint8_t>(key_version >> 16);
  p[3] = static_cast<std::uint8_t>(key_version >> 8);
  p[4] = static_cast<std::uint8_t>(key_version);
  p[5] = static_cast<std::uint8_t>((flow.local.family == Family::ipv6 ? kFlagIpv6 : 0) |
                                   (static_cast<std::uint8_t>(flow.transport) & kFlagTransport));
  std::size_t n = kHeaderSize;
  n += put_endpoint(p + n, flow.local);
  n += put_endpoint(p + n, flow.remote);
  size = n;
  return EncodeStatus::ok;
}

TokenText finish_token(std::span<std::uint8_t, kMaxRawSize> raw, std::size_t signed_size,
                       std::span<const std::uint8_t> mac) noexcept {
  std::copy_n(mac.begin(), kTagSize, raw.begin() + static_cast<std::ptrdiff_t>(signed_size));
  TokenText t;
  t.size = static_cast<std::uint8_t>(
      base64url_encode(std::span<const std::uint8_t>(raw.data(), signed_size + kTagSize), t.chars));
  return t;
}

ParseStatus parse_token(std::string_view text, ParsedToken& out) noexcept {
  // The length alone decides the family we expect; anything else is not a v1
  // token of ours, and is rejected before a single character is decoded.
  Family family;
  if (text.size() == kTextSizeV4) {
    family = Family::ipv4;
  } else if (text.size() == kTextSizeV6) {
    family = Family::ipv6;
  } else {
    return ParseStatus::not_ours;
  }
  std::array<std::uint8_t, kMaxRawSize> raw;
  const std::ptrdiff_t n = base64url_decode(text, raw);
  const std::size_t expect = family == Family::ipv4 ? kRawSizeV4 : kRawSizeV6;
  if (n < 0 || static_cast<std::size_t>(n) != expect) return ParseStatus::not_ours;
  if (raw[0] != kFormatV1) return ParseStatus::not_ours;

  const std::uint8_t flags = raw[5];
  if (flags & kFlagReserved) return ParseStatus::malformed;
  if (((flags & kFlagIpv6) != 0) != (family == Family::ipv6)) return ParseStatus::malformed;
  const auto transport = transport_from_code(flags & kFlagTransport);
  if (!transport) return ParseStatus::malformed;
  const std::uint32_t version =
      (std::uint32_t{raw[1]} << 24) | (std::uint32_t{raw[2]} << 16) | (std::uint32_t{raw[3]} << 8) | raw[4];
  if (version == 0) return ParseStatus::malformed;

  const std::size_t side = (family == Family::ipv4 ? 4 : 16) + 2;
  FlowKey flow;
  flow.transport = *transport;
  flow.local = get_endpoint(raw.data() + kHeaderSize, family);
  flow.remote = get_endpoint(raw.data() + kHeaderSize + side, family);
  if (flow.local.port == 0 || flow.remote.port == 0) return ParseStatus::malformed;

  out.raw = raw;
  out.raw_size = static_cast<std::uint8_t>(expect);
  out.key_version = version;
  out.flow = flow;
  return ParseStatus::well_formed;
}

}  // namespace edge::flow
