// STUN Binding decode/encode against the RFC 5769 test vectors, bounds checks, and the
// STUN / SIP / CRLF demultiplexing of a SIP UDP port.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "edge/net/sip/stun.h"

namespace stun = edge::sip::stun;

namespace {

// RFC 5769 §2.1 Sample Request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY,
// FINGERPRINT).
const std::vector<std::uint8_t> kRequest = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

// RFC 5769 §2.2 Sample IPv4 Response: 192.0.2.1 port 32853.
const std::vector<std::uint8_t> kResponseV4 = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

// RFC 5769 §2.3 Sample IPv6 Response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
const std::vector<std::uint8_t> kResponseV6 = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c};

const stun::TransactionId kTid = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                  0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

stun::Endpoint v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d,
                  std::uint16_t port) {
  stun::Endpoint e;
  e.address = {a, b, c, d};
  e.port = port;
  return e;
}

stun::Endpoint sample_v6() {
  stun::Endpoint e;
  e.ipv6 = true;
  e.address = {0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78,
               0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77};
  e.port = 32853;
  return e;
}

// The bytes of one attribute (header + padded value) of a message, or empty.
std::vector<std::uint8_t> attribute(const std::vector<std::uint8_t>& msg, std::uint16_t type) {
  for (std::size_t pos = 20; pos + 4 <= msg.size();) {
    std::uint16_t t = static_cast<std::uint16_t>(msg[pos] << 8 | msg[pos + 1]);
    std::size_t len = static_cast<std::size_t>(msg[pos + 2] << 8 | msg[pos + 3]);
    std::size_t padded = (len + 3) & ~std::size_t{3};
    if (t == type)
      return {msg.begin() + static_cast<long>(pos),
              msg.begin() + static_cast<long>(pos + 4 + padded)};
    pos += 4 + padded;
  }
  return {};
}

}  // namespace

TEST(Stun, Crc32KnownAnswer) {
  const std::string_view s = "123456789";
  EXPECT_EQ(stun::crc32({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}), 0xcbf43926u);
}

TEST(Stun, DecodesRfc5769Request) {
  stun::Message m;
  ASSERT_EQ(stun::decode(kRequest, m, true), stun::Error::ok);
  EXPECT_TRUE(m.is_binding_request());
  EXPECT_EQ(m.method(), 1);
  EXPECT_EQ(m.transaction_id, kTid);
  EXPECT_TRUE(m.has_fingerprint);
  EXPECT_TRUE(m.has_message_integrity);
  EXPECT_TRUE(m.has_username);
  EXPECT_EQ(m.software, "STUN test client");
  // PRIORITY (0x0024) is comprehension-required and this server does no ICE: 420 material.
  ASSERT_EQ(m.unknown_count, 1u);
  EXPECT_EQ(m.unknown_required[0], 0x0024);
}

TEST(Stun, DecodesRfc5769Responses) {
  stun::Message m;
  ASSERT_EQ(stun::decode(kResponseV4, m, true), stun::Error::ok);
  EXPECT_EQ(m.type, stun::kBindingSuccess);
  ASSERT_TRUE(m.has_xor_mapped_address);
  EXPECT_FALSE(m.xor_mapped_address.ipv6);
  EXPECT_EQ(m.xor_mapped_address.port, 32853);
  EXPECT_EQ(m.xor_mapped_address.address[0], 192);
  EXPECT_EQ(m.xor_mapped_address.address[1], 0);
  EXPECT_EQ(m.xor_mapped_address.address[2], 2);
  EXPECT_EQ(m.xor_mapped_address.address[3], 1);

  ASSERT_EQ(stun::decode(kResponseV6, m, true), stun::Error::ok);
  ASSERT_TRUE(m.has_xor_mapped_address);
  EXPECT_TRUE(m.xor_mapped_address.ipv6);
  EXPECT_EQ(m.xor_mapped_address.port, 32853);
  EXPECT_EQ(m.xor_mapped_address.address, sample_v6().address);
}

TEST(Stun, EncodedXorMappedAddressMatchesRfc5769) {
  std::array<std::uint8_t, stun::kMaxResponseSize> buf{};
  std::size_t n =
      stun::encode_binding_success(kTid, v4(192, 0, 2, 1, 32853), buf, true, "test vector");
  ASSERT_GT(n, 0u);
  std::vector<std::uint8_t> ours(buf.begin(), buf.begin() + static_cast<long>(n));
  EXPECT_EQ(attribute(ours, 0x0020), attribute(kResponseV4, 0x0020));
  EXPECT_EQ(std::vector<std::uint8_t>(ours.begin(), ours.begin() + 2),
            std::vector<std::uint8_t>({0x01, 0x01}));
  EXPECT_EQ(std::vector<std::uint8_t>(ours.begin() + 4, ours.begin() + 20),
            std::vector<std::uint8_t>(kResponseV4.begin() + 4, kResponseV4.begin() + 20));

  n = stun::encode_binding_success(kTid, sample_v6(), buf, true, "test vector");
  ASSERT_GT(n, 0u);
  ours.assign(buf.begin(), buf.begin() + static_cast<long>(n));
  EXPECT_EQ(attribute(ours, 0x0020), attribute(kResponseV6, 0x0020));

  // Our own output decodes, FINGERPRINT included, and carries the address back.
  stun::Message m;
  ASSERT_EQ(stun::decode(ours, m, true), stun::Error::ok);
  EXPECT_EQ(m.transaction_id, kTid);
  EXPECT_EQ(m.xor_mapped_address.address, sample_v6().address);
  EXPECT_EQ(m.software, "test vector");
}

TEST(Stun, EncodeWithoutFingerprintAndTooSmallBuffers) {
  std::array<std::uint8_t, 64> buf{};
  std::size_t n = stun::encode_binding_success(kTid, v4(10, 0, 0, 1, 5060), buf, false);
  EXPECT_EQ(n, 32u);
  stun::Message m;
  ASSERT_EQ(stun::decode({buf.data(), n}, m), stun::Error::ok);
  EXPECT_FALSE(m.has_fingerprint);
  EXPECT_EQ(stun::decode({buf.data(), n}, m, true), stun::Error::bad_fingerprint);
  EXPECT_EQ(
      stun::encode_binding_success(kTid, sample_v6(), std::span<std::uint8_t>(buf.data(), 40)), 0u);
  EXPECT_EQ(stun::encode_binding_success(kTid, sample_v6(), buf, true, std::string(200, 's')), 0u);
}

TEST(Stun, ErrorResponseListsUnknownAttributes) {
  std::array<std::uint8_t, stun::kMaxResponseSize> buf{};
  const std::uint16_t unknown[] = {0x0024, 0x0025, 0x0026};
  std::size_t n = stun::encode_binding_error(kTid, 420, "Unknown Attribute", unknown, buf);
  ASSERT_GT(n, 0u);
  std::vector<std::uint8_t> out(buf.begin(), buf.begin() + static_cast<long>(n));
  stun::Message m;
  ASSERT_EQ(stun::decode(out, m, true), stun::Error::ok);
  EXPECT_EQ(m.type, stun::kBindingError);
  auto ec = attribute(out, 0x0009);
  ASSERT_GE(ec.size(), 8u);
  EXPECT_EQ(ec[6], 4);
  EXPECT_EQ(ec[7], 20);
  auto ua = attribute(out, 0x000a);
  ASSERT_EQ(ua.size(), 12u);  // 6 bytes of types padded to 8
  EXPECT_EQ(ua[4], 0x00);
  EXPECT_EQ(ua[5], 0x24);
  EXPECT_EQ(stun::encode_binding_error(kTid, 200, "x", {}, buf), 0u);
}

TEST(Stun, BoundsAndStrictness) {
  stun::Message m;
  auto req = kRequest;
  EXPECT_EQ(stun::decode({req.data(), 19}, m), stun::Error::too_short);
  // Length not a multiple of 4, and not matching the datagram.
  req[3] = 0x57;
  EXPECT_EQ(stun::decode(req, m), stun::Error::bad_length);
  req = kRequest;
  req.push_back(0);
  req.push_back(0);
  req.push_back(0);
  req.push_back(0);
  EXPECT_EQ(stun::decode(req, m), stun::Error::bad_length);
  // Wrong cookie / top bits.
  req = kRequest;
  req[4] = 0x22;
  EXPECT_EQ(stun::decode(req, m), stun::Error::not_stun);
  req = kRequest;
  req[0] = 0x40;
  EXPECT_EQ(stun::decode(req, m), stun::Error::not_stun);
  // An attribute length running past the end.
  req = kRequest;
  req[22] = 0x01;  // SOFTWARE length 0x0110
  EXPECT_EQ(stun::decode(req, m), stun::Error::truncated_attribute);
  // A flipped bit anywhere before FINGERPRINT is caught by it.
  req = kRequest;
  req[30] ^= 1;
  EXPECT_EQ(stun::decode(req, m), stun::Error::bad_fingerprint);
  // Something after a valid FINGERPRINT.
  {
    std::array<std::uint8_t, 64> b{};
    std::size_t n = stun::encode_binding_success(kTid, v4(10, 0, 0, 1, 5060), b, false);
    b[3] = static_cast<std::uint8_t>(n - 20 + 8 + 4);
    std::uint32_t crc = stun::crc32({b.data(), n}) ^ 0x5354554eu;
    std::vector<std::uint8_t> v(b.begin(), b.begin() + static_cast<long>(n));
    for (std::uint8_t x : {0x80, 0x28, 0x00, 0x04}) v.push_back(x);
    for (int sh = 24; sh >= 0; sh -= 8) v.push_back(static_cast<std::uint8_t>(crc >> sh));
    for (std::uint8_t x : {0x80, 0x22, 0x00, 0x00}) v.push_back(x);
    EXPECT_EQ(stun::decode(v, m), stun::Error::fingerprint_not_last);
  }
  // Malformed XOR-MAPPED-ADDRESS.
  auto resp = kResponseV4;
  resp[41] = 0x03;  // family
  EXPECT_EQ(stun::decode(resp, m), stun::Error::bad_attribute);
  // A header-only Binding request (what a UA sends for keep-alive) is fine.
  std::vector<std::uint8_t> bare(kRequest.begin(), kRequest.begin() + 20);
  bare[3] = 0;
  ASSERT_EQ(stun::decode(bare, m), stun::Error::ok);
  EXPECT_TRUE(m.is_binding_request());
  EXPECT_NE(stun::reason(stun::Error::bad_length), "unknown error");
}

TEST(Stun, DatagramDemultiplexing) {
  auto kind = [](std::string_view s) {
    return stun::classify_datagram({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
  };
  EXPECT_EQ(stun::classify_datagram(kRequest), stun::DatagramKind::stun);
  EXPECT_EQ(kind("REGISTER sip:example.test SIP/2.0\r\n"), stun::DatagramKind::sip);
  EXPECT_EQ(kind("SIP/2.0 200 OK\r\n"), stun::DatagramKind::sip);
  EXPECT_EQ(kind("\r\n\r\n"), stun::DatagramKind::keep_alive);
  EXPECT_EQ(kind("\r\n"), stun::DatagramKind::keep_alive);
  // CRLFs before a start line are ignored (RFC 3261 §7.5), and a method may begin with any token
  // character (RFC 4475 intmeth): both are SIP (issue 17; they were dropped).
  EXPECT_EQ(kind("\r\nX"), stun::DatagramKind::sip);
  EXPECT_EQ(kind("\r\n\r\nOPTIONS sip:example.test SIP/2.0\r\n"), stun::DatagramKind::sip);
  EXPECT_EQ(kind("!interesting-Method0123456789_*+`.%indeed'~ sip:x SIP/2.0\r\n"), stun::DatagramKind::sip);
  EXPECT_EQ(kind("\r\n\x16\x03"), stun::DatagramKind::unknown);
  EXPECT_EQ(kind(""), stun::DatagramKind::unknown);
  EXPECT_EQ(kind(std::string_view("\x00\x01\x00\x00", 4)),
            stun::DatagramKind::unknown);  // too short
  EXPECT_EQ(kind(std::string_view("\x16\x03\x01\x00", 4)),
            stun::DatagramKind::unknown);                    // DTLS/TLS
  EXPECT_EQ(kind("\x80\x00"), stun::DatagramKind::unknown);  // RTP
  auto no_cookie = kRequest;
  no_cookie[4] = 0;
  EXPECT_EQ(stun::classify_datagram(no_cookie), stun::DatagramKind::unknown);
}
