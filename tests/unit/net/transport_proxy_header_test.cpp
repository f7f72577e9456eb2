// The PROXY protocol parser (v1 text, v2 binary) on good headers and on bad input of every kind, at every
// split, and the trusted-source ranges.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy_header.h"

namespace edge::net::detail {
namespace {

using Status = ProxyParse::Status;
using Bytes = std::vector<std::uint8_t>;

Bytes bytes(std::string_view s) { return {s.begin(), s.end()}; }

ProxyParse parse(const Bytes& b) { return parse_proxy_header(b); }

const Bytes kSig = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// A v2 header: signature, version/command, family/protocol, length, then `rest`.
Bytes v2(std::uint8_t ver_cmd, std::uint8_t fam, const Bytes& rest, int length = -1) {
  Bytes b = kSig;
  b.push_back(ver_cmd);
  b.push_back(fam);
  const auto len = static_cast<std::uint16_t>(length < 0 ? rest.size() : static_cast<std::size_t>(length));
  b.push_back(static_cast<std::uint8_t>(len >> 8));
  b.push_back(static_cast<std::uint8_t>(len & 0xFF));
  b.insert(b.end(), rest.begin(), rest.end());
  return b;
}

// 192.0.2.7:40312 -> 198.51.100.1:5060
const Bytes kTcp4 = {192, 0, 2, 7, 198, 51, 100, 1, 0x9D, 0x78, 0x13, 0xC4};

TEST(ProxyHeaderV1, Tcp4NamesTheClientAndConsumesOnlyTheLine) {
  const auto b = bytes("PROXY TCP4 192.0.2.7 198.51.100.1 40312 5060\r\nREGISTER sip:x SIP/2.0\r\n");
  const auto p = parse(b);
  ASSERT_EQ(p.status, Status::ok) << p.detail;
  EXPECT_EQ(p.consumed, std::string_view("PROXY TCP4 192.0.2.7 198.51.100.1 40312 5060\r\n").size());
  EXPECT_FALSE(p.header.local);
  EXPECT_EQ(p.header.source, *flow::Endpoint::parse("192.0.2.7", 40312));
  EXPECT_EQ(p.header.destination, *flow::Endpoint::parse("198.51.100.1", 5060));
}

TEST(ProxyHeaderV1, Tcp6AndUnknown) {
  const auto p = parse(bytes("PROXY TCP6 2001:db8::7 2001:db8::1 5061 5060\r\n"));
  ASSERT_EQ(p.status, Status::ok) << p.detail;
  EXPECT_EQ(p.header.source, *flow::Endpoint::parse("2001:db8::7", 5061));
  const auto u = parse(bytes("PROXY UNKNOWN\r\n"));
  ASSERT_EQ(u.status, Status::ok);
  EXPECT_TRUE(u.header.local);
  EXPECT_EQ(u.consumed, 15u);
  const auto u2 = parse(bytes("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"));
  ASSERT_EQ(u2.status, Status::ok);
  EXPECT_TRUE(u2.header.local);
}

TEST(ProxyHeaderV1, EverySplitNeedsMoreUntilTheCrlf) {
  const auto b = bytes("PROXY TCP4 192.0.2.7 198.51.100.1 40312 5060\r\n");
  for (std::size_t n = 1; n < b.size(); ++n) {
    const Bytes part(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(parse(part).status, Status::need_more) << n;
  }
  EXPECT_EQ(parse(b).status, Status::ok);
}

TEST(ProxyHeaderV1, BadLinesAreMalformed) {
  for (const char* s : {
           "PROXY TCP4 192.0.2.7 198.51.100.1 40312\r\n",         // a port missing
           "PROXY TCP4 192.0.2.7 198.51.100.1 40312 5060 7\r\n",  // a field too many
           "PROXY TCP4 192.0.2.7  198.51.100.1 40312 5060\r\n",   // two spaces
           "PROXY TCP4 192.0.2.7 198.51.100.1 40312 65536\r\n",   // port out of range
           "PROXY TCP4 192.0.2.7 198.51.100.1 040312 5060\r\n",   // leading zero
           "PROXY TCP4 192.0.2.7 198.51.100.1 -1 5060\r\n",       // sign
           "PROXY TCP4 2001:db8::7 198.51.100.1 1 5060\r\n",      // IPv6 in TCP4
           "PROXY TCP6 192.0.2.7 2001:db8::1 1 5060\r\n",         // IPv4 in TCP6
           "PROXY TCP4 192.0.2.300 198.51.100.1 1 5060\r\n",      // not an address
           "PROXY TCP4 example.com 198.51.100.1 1 5060\r\n",      // a name
           "PROXY TCP4 192.0.2.7 198.51.100.1 40312 5060\n",      // LF without CR
           "PROXY \r\n",                                          // nothing
           "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",           // v1 knows only TCP
       }) {
    const auto p = parse(bytes(s));
    EXPECT_EQ(p.status, Status::refused) << s;
    EXPECT_EQ(p.refusal, ProxyRefusal::malformed) << s;
  }
}

TEST(ProxyHeaderV1, OversizedLineIsRefusedAt107Bytes) {
  std::string s = "PROXY TCP4 ";
  s.append(200, '1');
  const auto b = bytes(s);
  const Bytes first106(b.begin(), b.begin() + 106);
  EXPECT_EQ(parse(first106).status, Status::need_more);
  const Bytes first107(b.begin(), b.begin() + 107);
  const auto p = parse(first107);
  EXPECT_EQ(p.status, Status::refused);
  EXPECT_EQ(p.refusal, ProxyRefusal::malformed);
  EXPECT_EQ(parse(b).status, Status::refused);
}

TEST(ProxyHeaderV2, ProxyTcp4AndTcp6) {
  auto b = v2(0x21, 0x11, kTcp4);
  b.push_back('R');  // the stream behind it
  const auto p = parse(b);
  ASSERT_EQ(p.status, Status::ok) << p.detail;
  EXPECT_EQ(p.consumed, 28u);
  EXPECT_FALSE(p.header.local);
  EXPECT_EQ(p.header.source, *flow::Endpoint::parse("192.0.2.7", 40312));
  EXPECT_EQ(p.header.destination, *flow::Endpoint::parse("198.51.100.1", 5060));

  Bytes a6(36, 0);
  a6[0] = 0x20;
  a6[1] = 0x01;
  a6[15] = 7;
  a6[16] = 0x20;
  a6[17] = 0x01;
  a6[31] = 1;
  a6[32] = 0x13;
  a6[33] = 0xC5;
  a6[34] = 0x13;
  a6[35] = 0xC4;
  const auto p6 = parse(v2(0x21, 0x21, a6));
  ASSERT_EQ(p6.status, Status::ok) << p6.detail;
  EXPECT_EQ(p6.header.source, *flow::Endpoint::parse("2001::7", 5061));
}

TEST(ProxyHeaderV2, TlvsAreSkipped) {
  Bytes rest = kTcp4;
  // PP2_TYPE_ALPN "sip", PP2_TYPE_NOOP of 5 bytes, an unknown type.
  for (const Bytes& tlv : {Bytes{0x01, 0x00, 0x03, 's', 'i', 'p'}, Bytes{0x04, 0x00, 0x05, 0, 0, 0, 0, 0},
                           Bytes{0xEE, 0x00, 0x01, 0x42}}) {
    rest.insert(rest.end(), tlv.begin(), tlv.end());
  }
  const auto b = v2(0x21, 0x11, rest);
  const auto p = parse(b);
  ASSERT_EQ(p.status, Status::ok) << p.detail;
  EXPECT_EQ(p.consumed, b.size());
  EXPECT_EQ(p.header.source, *flow::Endpoint::parse("192.0.2.7", 40312));
}

TEST(ProxyHeaderV2, LocalAndUnspecUseTheConnection) {
  const auto l = parse(v2(0x20, 0x00, {}));
  ASSERT_EQ(l.status, Status::ok);
  EXPECT_TRUE(l.header.local);
  EXPECT_EQ(l.consumed, 16u);
  // LOCAL with an address block: skipped.
  const auto l2 = parse(v2(0x20, 0x11, kTcp4));
  ASSERT_EQ(l2.status, Status::ok);
  EXPECT_TRUE(l2.header.local);
  EXPECT_EQ(l2.consumed, 28u);
  const auto u = parse(v2(0x21, 0x00, {}));
  ASSERT_EQ(u.status, Status::ok);
  EXPECT_TRUE(u.header.local);
}

TEST(ProxyHeaderV2, EverySplitNeedsMore) {
  const auto b = v2(0x21, 0x11, kTcp4);
  for (std::size_t n = 1; n < b.size(); ++n) {
    const Bytes part(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(parse(part).status, Status::need_more) << n;
  }
}

TEST(ProxyHeaderV2, BadHeadersAreRefusedByReason) {
  struct Case {
    const char* what;
    Bytes b;
    ProxyRefusal why;
  };
  Bytes unix_block(216, 0);
  const std::vector<Case> cases = {
      {"version 1", v2(0x11, 0x11, kTcp4), ProxyRefusal::malformed},
      {"version 3", v2(0x31, 0x11, kTcp4), ProxyRefusal::malformed},
      {"command 2", v2(0x22, 0x11, kTcp4), ProxyRefusal::malformed},
      {"family 4", v2(0x21, 0x41, kTcp4), ProxyRefusal::malformed},
      {"protocol 3", v2(0x21, 0x13, kTcp4), ProxyRefusal::malformed},
      {"TCP4 block short", v2(0x21, 0x11, Bytes(kTcp4.begin(), kTcp4.begin() + 11)), ProxyRefusal::malformed},
      {"TCP6 block short", v2(0x21, 0x21, Bytes(35, 0)), ProxyRefusal::malformed},
      {"length past the maximum", v2(0x21, 0x11, kTcp4, 1025), ProxyRefusal::malformed},
      {"length 65535", v2(0x21, 0x11, kTcp4, 65535), ProxyRefusal::malformed},
      {"AF_UNIX", v2(0x21, 0x31, unix_block), ProxyRefusal::unsupported},
      {"UDP over IPv4", v2(0x21, 0x12, kTcp4), ProxyRefusal::unsupported},
      {"INET, protocol unspec", v2(0x21, 0x10, kTcp4), ProxyRefusal::unsupported},
  };
  for (const auto& c : cases) {
    const auto p = parse(c.b);
    EXPECT_EQ(p.status, Status::refused) << c.what;
    EXPECT_EQ(p.refusal, c.why) << c.what << ": " << p.detail;
  }
  // A length at the maximum is waited for, not refused.
  EXPECT_EQ(parse(v2(0x21, 0x11, kTcp4, 1024)).status, Status::need_more);
}

TEST(ProxyHeader, NoSignatureIsMissing) {
  for (const char* s : {"REGISTER sip:example.com SIP/2.0\r\n", "GET / HTTP/1.1\r\n", "\x16\x03\x01", "PROXZ",
                        "PRACK sip:x SIP/2.0\r\n", "\r\n\r\n\r\n"}) {
    const auto p = parse(bytes(s));
    EXPECT_EQ(p.status, Status::refused) << s;
    EXPECT_EQ(p.refusal, ProxyRefusal::missing) << s;
  }
  // A wrong byte inside the v2 signature.
  Bytes b = v2(0x21, 0x11, kTcp4);
  b[7] = 'X';
  EXPECT_EQ(parse(b).refusal, ProxyRefusal::missing);
  EXPECT_EQ(parse(Bytes{}).status, Status::need_more);
}

TEST(ProxyHeader, LooksLikeProxyForDirectClients) {
  EXPECT_EQ(looks_like_proxy(bytes("PROXY TCP4 1.2.3.4")), ProxyLook::proxy);
  EXPECT_EQ(looks_like_proxy(v2(0x21, 0x11, kTcp4)), ProxyLook::proxy);
  EXPECT_EQ(looks_like_proxy(bytes("PRO")), ProxyLook::need_more);
  EXPECT_EQ(looks_like_proxy(Bytes(kSig.begin(), kSig.begin() + 6)), ProxyLook::need_more);
  // Keep-alives a client may open with are not held back.
  EXPECT_EQ(looks_like_proxy(bytes("\r\n")), ProxyLook::not_proxy);
  EXPECT_EQ(looks_like_proxy(bytes("\r\n\r\n")), ProxyLook::not_proxy);
  EXPECT_EQ(looks_like_proxy(bytes("PRACK sip:x SIP/2.0")), ProxyLook::not_proxy);
  EXPECT_EQ(looks_like_proxy(bytes("OPTIONS sip:x SIP/2.0")), ProxyLook::not_proxy);
  EXPECT_EQ(looks_like_proxy(bytes("\x16\x03\x01\x02")), ProxyLook::not_proxy);
}

TEST(ProxyHeader, FuzzishInputNeverReadsPastTheEnd) {
  // Deterministic pseudo-random bytes behind both signatures: every answer is
  // one of the three, consumed never exceeds the input.
  std::uint32_t x = 12345;
  const auto next = [&x] {
    x = x * 1103515245u + 12345u;
    return static_cast<std::uint8_t>(x >> 16);
  };
  for (int round = 0; round < 20000; ++round) {
    Bytes b = round % 2 == 0 ? kSig : bytes("PROXY ");
    const std::size_t n = next() % 64;
    for (std::size_t i = 0; i < n; ++i) b.push_back(next());
    const auto p = parse(b);
    if (p.status == Status::ok) {
      EXPECT_LE(p.consumed, b.size());
    }
  }
}

TEST(ProxyTrustedSources, CidrRanges) {
  const auto lb = Cidr::parse("127.0.0.2");
  ASSERT_TRUE(lb);
  EXPECT_EQ(lb->prefix, 32u);
  EXPECT_TRUE(lb->contains(*flow::Endpoint::parse("127.0.0.2", 1)));
  EXPECT_FALSE(lb->contains(*flow::Endpoint::parse("127.0.0.3", 1)));
  const auto net = Cidr::parse("10.1.0.0/20");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->contains(*flow::Endpoint::parse("10.1.15.255", 0)));
  EXPECT_FALSE(net->contains(*flow::Endpoint::parse("10.1.16.0", 0)));
  EXPECT_TRUE(net->contains(*flow::Endpoint::parse("::ffff:10.1.2.3", 0))) << "v4-mapped";
  EXPECT_FALSE(net->contains(*flow::Endpoint::parse("2001:db8::1", 0)));
  const auto v6 = Cidr::parse("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*flow::Endpoint::parse("2001:db8:ffff::1", 0)));
  EXPECT_FALSE(v6->contains(*flow::Endpoint::parse("2001:db9::1", 0)));
  EXPECT_TRUE(Cidr::parse("0.0.0.0/0")->contains(*flow::Endpoint::parse("192.0.2.1", 0)));
  for (const char* bad :
       {"", "/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "2001:db8::/129", "host/8", "10.0.0.0/8x"}) {
    EXPECT_FALSE(Cidr::parse(bad)) << bad;
  }
}

}  // namespace
}  // namespace edge::net::detail
