// Flow identity: endpoints, equality, keyed hashing and text forms of FlowKey.
#include <edge/net/token/flow_key.h>

#include <gtest/gtest.h>

#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace edge::flow {
namespace {

FlowKey key(Transport t, const char* local, std::uint16_t lport, const char* remote, std::uint16_t rport) {
  return FlowKey{t, *Endpoint::parse(local, lport), *Endpoint::parse(remote, rport)};
}

TEST(FlowKey, ParsesIpv4AndIpv6AndRejectsJunk) {
  auto v4 = Endpoint::parse("192.0.2.1", 5060);
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->family, Family::ipv4);
  EXPECT_EQ(v4->address_size(), 4u);
  EXPECT_EQ(v4->address[0], 192);
  EXPECT_EQ(v4->address[3], 1);
  EXPECT_EQ(v4->port, 5060);

  auto v6 = Endpoint::parse("2001:db8::1", 5061);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->family, Family::ipv6);
  EXPECT_EQ(v6->address_size(), 16u);
  EXPECT_EQ(v6->address[0], 0x20);
  EXPECT_EQ(v6->address[15], 1);

  for (const char* bad :
       {"", "192.0.2", "192.0.2.256", "[2001:db8::1]", "host.example", "2001:db8::1::2", "1.2.3.4 "}) {
    EXPECT_FALSE(Endpoint::parse(bad, 1)) << bad;
  }
}

TEST(FlowKey, EqualityIgnoresTheUnusedTailOfAnIpv4Address) {
  Endpoint a = Endpoint::v4({10, 0, 0, 1}, 5060);
  Endpoint b = a;
  b.address[9] = 0xaa;  // garbage beyond the 4 bytes IPv4 uses
  EXPECT_EQ(a, b);
  EXPECT_EQ(EndpointHash{}(a), EndpointHash{}(b));
  b.port = 5061;
  EXPECT_NE(a, b);
}

TEST(FlowKey, EveryFieldTakesPartInEquality) {
  const FlowKey base = key(Transport::tcp, "192.0.2.1", 5060, "198.51.100.7", 40312);
  std::vector<FlowKey> variants;
  for (Transport t : kAllTransports) {
    if (t != base.transport) variants.push_back({t, base.local, base.remote});
  }
  variants.push_back(key(Transport::tcp, "192.0.2.2", 5060, "198.51.100.7", 40312));
  variants.push_back(key(Transport::tcp, "192.0.2.1", 5061, "198.51.100.7", 40312));
  variants.push_back(key(Transport::tcp, "192.0.2.1", 5060, "198.51.100.8", 40312));
  variants.push_back(key(Transport::tcp, "192.0.2.1", 5060, "198.51.100.7", 40313));
  variants.push_back(key(Transport::tcp, "198.51.100.7", 40312, "192.0.2.1", 5060));  // swapped
  variants.push_back(key(Transport::tcp, "::ffff:192.0.2.1", 5060, "::ffff:198.51.100.7", 40312));
  for (const FlowKey& v : variants) {
    EXPECT_NE(v, base) << to_string(v);
  }
  EXPECT_EQ(base, key(Transport::tcp, "192.0.2.1", 5060, "198.51.100.7", 40312));
}

TEST(FlowKey, WorksAsAnUnorderedMapKey) {
  std::unordered_map<FlowKey, int> table;
  for (int i = 0; i < 1000; ++i) {
    FlowKey k{Transport::udp, Endpoint::v4({192, 0, 2, 1}, 5060),
              Endpoint::v4({198, 51, 100, static_cast<std::uint8_t>(i % 256)},
                           static_cast<std::uint16_t>(1024 + i))};
    table[k] = i;
  }
  EXPECT_EQ(table.size(), 1000u);
  FlowKey probe{Transport::udp, Endpoint::v4({192, 0, 2, 1}, 5060),
                Endpoint::v4({198, 51, 100, 7}, 1024 + 7)};
  ASSERT_TRUE(table.count(probe));
  EXPECT_EQ(table[probe], 7);
  // Hashes of distinct keys spread out (a keyed hash, not an identity).
  std::unordered_set<std::size_t> hashes;
  for (const auto& [k, v] : table) hashes.insert(FlowKeyHash{}(k));
  EXPECT_EQ(hashes.size(), table.size());
}

TEST(FlowKey, UnmapsV4MappedAddresses) {
  auto mapped = Endpoint::parse("::ffff:192.0.2.9", 5060);
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(mapped->is_v4_mapped());
  EXPECT_EQ(mapped->unmapped(), *Endpoint::parse("192.0.2.9", 5060));
  auto plain6 = Endpoint::parse("2001:db8::9", 5060);
  EXPECT_FALSE(plain6->is_v4_mapped());
  EXPECT_EQ(plain6->unmapped(), *plain6);
}

TEST(FlowKey, TextForms) {
  EXPECT_EQ(to_string(key(Transport::wss, "2001:db8::1", 443, "192.0.2.1", 40000).local),
            "[2001:db8::1]:443");
  EXPECT_EQ(to_string(key(Transport::tls_sctp, "192.0.2.1", 5061, "198.51.100.7", 1)),
            "TLS-SCTP 192.0.2.1:5061->198.51.100.7:1");
  std::vector<std::string> names;
  for (Transport t : kAllTransports) names.emplace_back(to_string(t));
  EXPECT_EQ(names, (std::vector<std::string>{"UDP", "TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"}));
}

TEST(FlowKey, TransportCodesRoundTripAndZeroIsNone) {
  for (Transport t : kAllTransports) {
    EXPECT_EQ(transport_from_code(static_cast<std::uint8_t>(t)), t);
  }
  EXPECT_FALSE(transport_from_code(0));
  for (int c = 8; c < 256; ++c) EXPECT_FALSE(transport_from_code(static_cast<std::uint8_t>(c)));
}

// Published SipHash-2-4 vectors (key 00..0f, message 00..n-1).
TEST(FlowKey, SipHashMatchesReferenceVectors) {
  const std::array<std::uint64_t, 2> k = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
  std::vector<std::uint8_t> msg;
  EXPECT_EQ(siphash24(k, msg), 0x726fdb47dd0e0e31ULL);
  msg.push_back(0);
  EXPECT_EQ(siphash24(k, msg), 0x74f839c593dc67fdULL);
  for (std::uint8_t i = 1; i < 15; ++i) msg.push_back(i);
  EXPECT_EQ(siphash24(k, msg), 0xa129ca6149be45e5ULL);
  EXPECT_NE(siphash13(k, msg), siphash24(k, msg));
}

}  // namespace
}  // namespace edge::flow
