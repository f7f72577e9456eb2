// The PROXY protocol parser (HAProxy's proxy-protocol.txt, v1 and v2) and trusted-source ranges.
#include "proxy_header.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace edge::net::detail {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::array<std::uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

ProxyParse refuse(ProxyRefusal r, std::string_view detail) {
  ProxyParse p;
  p.status = ProxyParse::Status::refused;
  p.refusal = r;
  p.detail = detail;
  return p;
}

ProxyParse done(std::size_t consumed, const ProxyHeader& h) {
  ProxyParse p;
  p.status = ProxyParse::Status::ok;
  p.consumed = consumed;
  p.header = h;
  return p;
}

// How much of `bytes` agrees with `sig` from the start: full match, a strict prefix, or a mismatch.
enum class Prefix : std::uint8_t { full, partial, mismatch };
Prefix match(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> sig) {
  const std::size_t n = std::min(bytes.size(), sig.size());
  if (!std::equal(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n), sig.begin())) {
    return Prefix::mismatch;
  }
  return n == sig.size() ? Prefix::full : Prefix::partial;
}

std::span<const std::uint8_t> v1_prefix() {
  return {reinterpret_cast<const std::uint8_t*>(kV1Prefix.data()), kV1Prefix.size()};
}

// A port as the spec writes it: 0..65535, decimal, no sign, no leading zero.
std::optional<std::uint16_t> v1_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  unsigned v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

ProxyParse parse_v1(std::span<const std::uint8_t> bytes) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()),
                              std::min(bytes.size(), kProxyV1Max));
  const auto lf = text.find('\n');
  if (lf == std::string_view::npos) {
    if (bytes.size() >= kProxyV1Max) return refuse(ProxyRefusal::malformed, "v1: no CRLF within 107 bytes");
    return {};
  }
  if (lf == 0 || text[lf - 1] != '\r') return refuse(ProxyRefusal::malformed, "v1: line not ended by CRLF");
  const std::string_view line = text.substr(kV1Prefix.size(), lf - 1 - kV1Prefix.size());
  ProxyHeader h;
  // UNKNOWN: the balancer could not name the client (the spec: use the
  // connection's own addresses, ignore the rest of the line).
  if (line == "UNKNOWN" || line.starts_with("UNKNOWN ")) {
    h.local = true;
    return done(lf + 1, h);
  }
  // Fields separated by exactly one space (an empty field fails below).
  std::array<std::string_view, 5> f{};
  std::size_t count = 0;
  for (std::size_t start = 0;;) {
    if (count == f.size()) return refuse(ProxyRefusal::malformed, "v1: too many fields");
    const auto sp = line.find(' ', start);
    f[count++] = line.substr(start, sp == std::string_view::npos ? sp : sp - start);
    if (sp == std::string_view::npos) break;
    start = sp + 1;
  }
  if (f[0] != "TCP4" && f[0] != "TCP6")
    return refuse(ProxyRefusal::malformed, "v1: protocol not TCP4, TCP6 or UNKNOWN");
  if (count != 5) return refuse(ProxyRefusal::malformed, "v1: expected 'PROXY TCPn SRC DST SPORT DPORT'");
  const auto sport = v1_port(f[3]);
  const auto dport = v1_port(f[4]);
  if (!sport || !dport) return refuse(ProxyRefusal::malformed, "v1: bad port");
  // Endpoint::parse takes any literal; TCP4 must carry IPv4 and TCP6 IPv6.
  const auto src = flow::Endpoint::parse(f[1], *sport);
  const auto dst = flow::Endpoint::parse(f[2], *dport);
  const auto family = f[0] == "TCP4" ? flow::Family::ipv4 : flow::Family::ipv6;
  if (!src || !dst || src->family != family || dst->family != family) {
    return refuse(ProxyRefusal::malformed, "v1: bad address");
  }
  h.source = src->unmapped();
  h.destination = dst->unmapped();
  return done(lf + 1, h);
}

std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

ProxyParse parse_v2(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 16) return {};
  const std::uint8_t ver_cmd = bytes[12];
  const std::uint8_t fam = bytes[13];
  const std::size_t len = be16(&bytes[14]);
  if ((ver_cmd >> 4) != 2) return refuse(ProxyRefusal::malformed, "v2: version not 2");
  const unsigned command = ver_cmd & 0x0F;
  if (command > 1) return refuse(ProxyRefusal::malformed, "v2: unknown command");
  if (len > kProxyV2MaxPayload) return refuse(ProxyRefusal::malformed, "v2: header too long");
  if (bytes.size() < 16 + len) return {};
  ProxyHeader h;
  // LOCAL: a connection of the balancer's own (health check); the addresses
  // block, whatever it holds, is skipped.
  if (command == 0) {
    h.local = true;
    return done(16 + len, h);
  }
  const unsigned family = fam >> 4;
  const unsigned protocol = fam & 0x0F;
  if (family > 3 || protocol > 2) return refuse(ProxyRefusal::malformed, "v2: unknown family or protocol");
  // AF_UNSPEC: the spec tells the receiver to use the connection's own addresses.
  if (family == 0) {
    h.local = true;
    return done(16 + len, h);
  }
  if (family == 3) return refuse(ProxyRefusal::unsupported, "v2: AF_UNIX");
  if (protocol != 1) return refuse(ProxyRefusal::unsupported, "v2: not a stream");
  const std::uint8_t* a = &bytes[16];
  // The address block comes first; TLVs (if any) fill the rest of len and are ignored.
  if (family == 1) {
    if (len < 12) return refuse(ProxyRefusal::malformed, "v2: address block too short");
    h.source = flow::Endpoint::v4({a[0], a[1], a[2], a[3]}, be16(a + 8));
    h.destination = flow::Endpoint::v4({a[4], a[5], a[6], a[7]}, be16(a + 10));
  } else {
    if (len < 36) return refuse(ProxyRefusal::malformed, "v2: address block too short");
    std::array<std::uint8_t, 16> s{}, d{};
    std::copy(a, a + 16, s.begin());
    std::copy(a + 16, a + 32, d.begin());
    h.source = flow::Endpoint::v6(s, be16(a + 32)).unmapped();
    h.destination = flow::Endpoint::v6(d, be16(a + 34)).unmapped();
  }
  return done(16 + len, h);
}

}  // namespace

const char* to_string(ProxyRefusal r) noexcept {
  switch (r) {
    case ProxyRefusal::untrusted:
      return "untrusted";
    case ProxyRefusal::missing:
      return "missing";
    case ProxyRefusal::malformed:
      return "malformed";
    case ProxyRefusal::unsupported:
      return "unsupported";
    case ProxyRefusal::timeout:
      return "timeout";
  }
  return "unknown";
}

ProxyParse parse_proxy_header(std::span<const std::uint8_t> bytes) noexcept {
  if (bytes.empty()) return {};
  const Prefix v1 = match(bytes, v1_prefix());
  const Prefix v2 = match(bytes, kV2Signature);
  if (v1 == Prefix::full) return parse_v1(bytes);
  if (v2 == Prefix::full) return parse_v2(bytes);
  if (v1 == Prefix::partial || v2 == Prefix::partial) return {};
  return refuse(ProxyRefusal::missing, "no PROXY header");
}

ProxyLook looks_like_proxy(std::span<const std::uint8_t> bytes) noexcept {
  if (bytes.empty()) return ProxyLook::need_more;
  const Prefix v1 = match(bytes, v1_prefix());
  const Prefix v2 = match(bytes, kV2Signature);
  if (v1 == Prefix::full || v2 == Prefix::full) return ProxyLook::proxy;
  if (v1 == Prefix::partial) return ProxyLook::need_more;
  // Up to 4 bytes the v2 signature is CRLFCRLF, a keep-alive a client may open with.
  if (v2 == Prefix::partial && bytes.size() > 4) return ProxyLook::need_more;
  return ProxyLook::not_proxy;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  const auto slash = text.find('/');
  const auto addr = flow::Endpoint::parse(text.substr(0, slash), 0);
  if (!addr) return std::nullopt;
  Cidr c;
  c.network = addr->unmapped();
  const unsigned bits = c.network.family == flow::Family::ipv4 ? 32 : 128;
  c.prefix = bits;
  if (slash != std::string_view::npos) {
    const auto p = text.substr(slash + 1);
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || v > bits) return std::nullopt;
    c.prefix = v;
  }
  return c;
}

bool Cidr::contains(const flow::Endpoint& address) const noexcept {
  const flow::Endpoint a = address.unmapped();
  if (a.family != network.family) return false;
  const unsigned whole = prefix / 8;
  for (unsigned i = 0; i < whole; ++i) {
    if (a.address[i] != network.address[i]) return false;
  }
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (a.address[whole] & mask) == (network.address[whole] & mask);
}

}  // namespace edge::net::detail
