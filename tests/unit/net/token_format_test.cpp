// Token format v1 and codec logic with a deterministic oracle: layout, categories, tamper
// detection, no allocation.
#include <edge/net/token/base64url.h>
#include <edge/net/token/token.h>
#include <edge/net/token/token_codec.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "token_test_oracle.h"

// Counts heap allocations so tests can prove the per-message path makes none.
// GCC's -Wmismatched-new-delete cannot see that this pair is consistent.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<std::size_t> g_allocations{0};
}
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace edge::flow {
namespace {

using testing::TestOracle;

FlowKey v4_flow(Transport t = Transport::tcp) {
  return {t, *Endpoint::parse("192.0.2.10", 5060), *Endpoint::parse("198.51.100.7", 40312)};
}
FlowKey v6_flow(Transport t = Transport::wss) {
  return {t, *Endpoint::parse("2001:db8::10", 443), *Endpoint::parse("2001:db8:1::7", 50000)};
}

// Raw bytes -> text, for inputs built by hand.
std::string to_text(const std::vector<std::uint8_t>& raw) {
  std::string s(base64url_encoded_size(raw.size()), '\0');
  base64url_encode(raw, s);
  return s;
}
std::vector<std::uint8_t> to_raw(std::string_view text) {
  std::vector<std::uint8_t> raw(base64url_decoded_size(text.size()));
  const auto n = base64url_decode(text, raw);
  EXPECT_GE(n, 0);
  raw.resize(static_cast<std::size_t>(n < 0 ? 0 : n));
  return raw;
}
// Re-signs hand-edited signed bytes with the test oracle's key, so a test can
// show that a structural check (not the MAC) rejects them.
std::string signed_text(std::vector<std::uint8_t> signed_part, std::uint32_t version) {
  const auto tag = TestOracle::tag(version, signed_part);
  signed_part.insert(signed_part.end(), tag.begin(), tag.begin() + kTagSize);
  return to_text(signed_part);
}

// An oracle answering every sign with one fixed tag: lets the documented worked
// example be checked byte for byte (its tag is HMAC-SHA256 under the demo key
// 00 01 .. 1f, computed outside; see docs/token-format.md).
class FixedTagOracle : public hsm::MacOracle {
 public:
  std::uint32_t minting_version() const override { return 3; }
  std::uint64_t epoch() const override { return 1; }
  hsm::MacStatus sign(std::uint32_t, std::span<const std::uint8_t> data, hsm::MacTag& out) override {
    last_signed.assign(data.begin(), data.end());
    static constexpr hsm::MacTag kTagV4 = {0x8a, 0xfd, 0xea, 0x0a, 0x11, 0x43, 0x69, 0x2a, 0xd0, 0x71, 0xc5,
                                           0x32, 0x92, 0xef, 0x6f, 0xd4, 0x0b, 0x16, 0xfe, 0xe5, 0xc2, 0xa7,
                                           0xb0, 0xea, 0x47, 0x82, 0x30, 0x97, 0x88, 0x42, 0xc4, 0x9b};
    static constexpr hsm::MacTag kTagV6 = {0x9f, 0x0f, 0x1b, 0x23, 0x78, 0xda, 0xb7, 0x5b, 0x21, 0x07, 0x39,
                                           0x95, 0xad, 0x6a, 0xf9, 0xe1, 0x41, 0x98, 0x98, 0x69, 0x0e, 0x2c,
                                           0x4e, 0x94, 0x2f, 0x6a, 0x93, 0xd6, 0x5e, 0x55, 0xb2, 0xa2};
    out = data.size() == kSignedSizeV4 ? kTagV4 : kTagV6;
    return hsm::MacStatus::ok;
  }
  hsm::MacStatus verify(std::uint32_t, std::span<const std::uint8_t>,
                        std::span<const std::uint8_t>) override {
    return hsm::MacStatus::mismatch;
  }
  std::vector<std::uint8_t> last_signed;
};

TEST(TokenFormat, WorkedExampleFromTheDocs) {
  auto oracle = std::make_shared<FixedTagOracle>();
  TokenCodec codec(oracle);
  const MintResult m = codec.mint(v4_flow(Transport::tcp));
  ASSERT_EQ(m.status, MintStatus::ok);
  EXPECT_EQ(m.key_version, 3u);
  const std::vector<std::uint8_t> expect_signed = {
      0x01,                                 // format v1
      0x00, 0x00, 0x00, 0x03,               // key version 3
      0x02,                                 // flags: IPv4, transport TCP (2)
      192,  0,    2,    10,   0x13, 0xc4,   // local 192.0.2.10:5060
      198,  51,   100,  7,    0x9d, 0x78};  // remote 198.51.100.7:40312
  EXPECT_EQ(oracle->last_signed, expect_signed);
  EXPECT_EQ(m.token.view(), "AQAAAAMCwAACChPExjNkB514iv3qChFDaSrQccUyku9v1A");
  EXPECT_EQ(m.token.size, kTextSizeV4);

  const MintResult m6 = codec.mint(v6_flow(Transport::wss));
  ASSERT_EQ(m6.status, MintStatus::ok);
  ASSERT_EQ(oracle->last_signed.size(), kSignedSizeV6);
  EXPECT_EQ(oracle->last_signed[5], 0x87);  // IPv6 | WSS
  EXPECT_EQ(m6.token.view(),
            "AQAAAAOHIAENuAAAAAAAAAAAAAAAEAG7IAENuAABAAAAAAAAAAAAB8NQnw8bI3jat1shBzmVrWr54Q");
}

TEST(TokenFormat, SizesAreFixedPerFamily) {
  EXPECT_EQ(kRawSizeV4, 34u);
  EXPECT_EQ(kTextSizeV4, 46u);
  EXPECT_EQ(kRawSizeV6, 58u);
  EXPECT_EQ(kTextSizeV6, 78u);
  EXPECT_EQ(base64url_encoded_size(kRawSizeV4), kTextSizeV4);
  EXPECT_EQ(base64url_encoded_size(kRawSizeV6), kTextSizeV6);
}

TEST(TokenFormat, RoundTripsEveryTransportOverIpv4AndIpv6) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle, {.verified_cache_capacity = 0});
  for (Transport t : kAllTransports) {
    for (const FlowKey& flow : {v4_flow(t), v6_flow(t)}) {
      const MintResult m = codec.mint(flow);
      ASSERT_EQ(m.status, MintStatus::ok) << to_string(flow);
      for (char c : m.token.view()) ASSERT_TRUE(is_base64url_char(c));
      ParsedToken p;
      ASSERT_EQ(parse_token(m.token.view(), p), ParseStatus::well_formed);
      EXPECT_EQ(p.flow, flow);
      EXPECT_EQ(p.key_version, 1u);
      const VerifyResult v = codec.verify(m.token.view());
      EXPECT_EQ(v.status, TokenStatus::valid) << to_string(flow);
      EXPECT_EQ(v.source, VerifySource::hsm);
      EXPECT_EQ(v.flow, flow);
      EXPECT_EQ(v.key_version, 1u);
    }
  }
}

TEST(TokenFormat, FlowsThatCannotBeEncoded) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle);
  FlowKey mixed{Transport::tcp, *Endpoint::parse("192.0.2.1", 5060), *Endpoint::parse("2001:db8::1", 5060)};
  EXPECT_EQ(codec.mint(mixed).status, MintStatus::invalid_flow);
  EXPECT_EQ(codec.mint(mixed).encode, EncodeStatus::family_mismatch);
  mixed.remote = mixed.remote.unmapped();  // not mapped: still mixed
  EXPECT_EQ(codec.mint(mixed).encode, EncodeStatus::family_mismatch);
  FlowKey mapped{Transport::tcp, *Endpoint::parse("192.0.2.1", 5060),
                 Endpoint::parse("::ffff:198.51.100.1", 4000)->unmapped()};
  EXPECT_EQ(codec.mint(mapped).status, MintStatus::ok);
  FlowKey zero = v4_flow();
  zero.remote.port = 0;
  EXPECT_EQ(codec.mint(zero).encode, EncodeStatus::zero_port);
  zero = v4_flow();
  zero.local.port = 0;
  EXPECT_EQ(codec.mint(zero).encode, EncodeStatus::zero_port);
  EXPECT_EQ(oracle->signs.load(), 1u);  // only the valid one reached the oracle
}

TEST(TokenFormat, NoActiveKeyAndUnavailableOracleOnMint) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle);
  oracle->set_unavailable(true);
  EXPECT_EQ(codec.mint(v4_flow()).status, MintStatus::hsm_unavailable);
  oracle->set_unavailable(false);
  oracle->retire(1);
  EXPECT_EQ(codec.mint(v4_flow()).status, MintStatus::no_active_key);
  EXPECT_EQ(codec.stats().mint_failures, 2u);
}

TEST(TokenFormat, NotOursInputs) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle);
  const std::string good(codec.mint(v4_flow()).token.view());
  const std::string good6(codec.mint(v6_flow()).token.view());
  std::vector<std::string> inputs = {
      "",
      "a",
      "alice",
      good.substr(0, good.size() - 1),  // truncated
      good.substr(0, good.size() - 4),
      good + "A",                  // one character too many
      good + "==",                 // padded
      good6.substr(0, 76) + "==",  // padded to the other length
      good6 + "AAAA",
      std::string(46, '='),
      std::string(46, '+'),
      std::string(78, '/'),
      std::string(46, ' '),
      good.substr(0, 45) + ".",  // a SIP-legal but non-base64url character
      good.substr(0, 20) + "%41" + good.substr(23),
      // Kamailio-sized tokens (standard base64 of 23 and 47 bytes).
      "qUI5mEpBTkbR+5bWUQIBAfQTiAEBgAQA",
      std::string(64, 'A'),
  };
  // Non-canonical last character: both lengths leave 4 unused low bits in
  // it, so setting the lowest one gives the same bytes in a second spelling.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (std::string stray : {good, good6}) {
    stray.back() = alphabet[alphabet.find(stray.back()) ^ 1u];
    inputs.push_back(stray);
  }
  // Other format versions, correctly signed.
  for (std::uint8_t version : {0x00, 0x02, 0x7f, 0x81, 0xff}) {
    auto raw = to_raw(good);
    raw.resize(kSignedSizeV4);
    raw[0] = version;
    inputs.push_back(signed_text(raw, 1));
  }
  for (const std::string& in : inputs) {
    ParsedToken p;
    EXPECT_EQ(parse_token(in, p), ParseStatus::not_ours) << in;
    EXPECT_EQ(codec.verify(in).status, TokenStatus::not_ours) << in;
  }
  EXPECT_EQ(oracle->verifies.load(), 0u);
}

TEST(TokenFormat, MalformedInputsAreDecidedWithoutTheOracle) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle);
  const auto base4 = [&] {
    auto r = to_raw(codec.mint(v4_flow()).token.view());
    r.resize(kSignedSizeV4);
    return r;
  }();
  const auto base6 = [&] {
    auto r = to_raw(codec.mint(v6_flow()).token.view());
    r.resize(kSignedSizeV6);
    return r;
  }();
  std::vector<std::string> inputs;
  auto with = [&](std::vector<std::uint8_t> raw, std::size_t at, std::uint8_t value) {
    raw[at] = value;
    inputs.push_back(signed_text(raw, 1));
  };
  for (std::uint8_t reserved : {0x10, 0x20, 0x40, 0x70}) {
    with(base4, 5, static_cast<std::uint8_t>(0x02 | reserved));
    with(base6, 5, static_cast<std::uint8_t>(0x87 | reserved));
  }
  for (std::uint8_t code : {0, 8, 9, 15}) {
    with(base4, 5, code);
    with(base6, 5, static_cast<std::uint8_t>(0x80 | code));
  }
  with(base4, 5, 0x82);  // IPv6 bit on an IPv4-sized token
  with(base6, 5, 0x07);  // IPv4 flags on an IPv6-sized token
  auto zero_version = base4;
  zero_version[1] = zero_version[2] = zero_version[3] = zero_version[4] = 0;
  inputs.push_back(signed_text(zero_version, 0));
  auto zero_port = base4;
  zero_port[16] = zero_port[17] = 0;
  inputs.push_back(signed_text(zero_port, 1));
  zero_port = base6;
  zero_port[22] = zero_port[23] = 0;
  inputs.push_back(signed_text(zero_port, 1));
  const auto verifies_before = oracle->verifies.load();
  for (const std::string& in : inputs) {
    ParsedToken p;
    EXPECT_EQ(parse_token(in, p), ParseStatus::malformed) << in;
    EXPECT_EQ(codec.verify(in).status, TokenStatus::malformed) << in;
  }
  EXPECT_EQ(oracle->verifies.load(), verifies_before);
  EXPECT_EQ(codec.stats().malformed, inputs.size());
}

// Every single-bit change of the raw token is rejected, whichever check catches it.
TEST(TokenFormat, EveryFlippedBitIsRejected) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle, {.verified_cache_capacity = 0});
  for (const FlowKey& flow : {v4_flow(Transport::udp), v6_flow(Transport::ws)}) {
    const auto raw = to_raw(codec.mint(flow).token.view());
    for (std::size_t bit = 0; bit < raw.size() * 8; ++bit) {
      auto copy = raw;
      copy[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      const VerifyResult v = codec.verify(to_text(copy));
      EXPECT_NE(v.status, TokenStatus::valid) << "bit " << bit;
      EXPECT_NE(v.status, TokenStatus::hsm_unavailable) << "bit " << bit;
    }
  }
}

// Every character of the text replaced by every other base64url character is rejected.
TEST(TokenFormat, EveryChangedCharacterIsRejected) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle, {.verified_cache_capacity = 0});
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (const FlowKey& flow : {v4_flow(), v6_flow()}) {
    const std::string good(codec.mint(flow).token.view());
    for (std::size_t i = 0; i < good.size(); ++i) {
      for (char c : alphabet) {
        if (c == good[i]) continue;
        std::string bad = good;
        bad[i] = c;
        EXPECT_NE(codec.verify(bad).status, TokenStatus::valid) << i << " " << c;
      }
    }
  }
}

TEST(TokenFormat, KeyVersionSelectsTheKey) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle);
  const std::string t1(codec.mint(v4_flow()).token.view());
  oracle->add(2);
  const MintResult m2 = codec.mint(v4_flow());
  EXPECT_EQ(m2.key_version, 2u);
  EXPECT_NE(std::string(m2.token.view()), t1);
  EXPECT_TRUE(codec.verify(t1).valid());
  EXPECT_TRUE(codec.verify(m2.token.view()).valid());
  // The version field is signed: pointing a v1 token at version 2 breaks it.
  auto raw = to_raw(t1);
  raw[4] = 2;
  const VerifyResult v = codec.verify(to_text(raw));
  EXPECT_EQ(v.status, TokenStatus::tampered);
  EXPECT_EQ(v.mac, hsm::MacStatus::mismatch);
  // An unknown version is tampered, not malformed.
  raw[4] = 9;
  const VerifyResult u = codec.verify(to_text(raw));
  EXPECT_EQ(u.status, TokenStatus::tampered);
  EXPECT_EQ(u.mac, hsm::MacStatus::unknown_version);
}

TEST(TokenFormat, UnavailableOracleIsNotTampering) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle, {.verified_cache_capacity = 0});
  const std::string t(codec.mint(v4_flow()).token.view());
  oracle->set_unavailable(true);
  EXPECT_EQ(codec.verify(t).status, TokenStatus::hsm_unavailable);
  EXPECT_EQ(codec.verify(std::string(10, 'x')).status, TokenStatus::not_ours);
  oracle->set_unavailable(false);
  EXPECT_EQ(codec.verify(t).status, TokenStatus::valid);
}

TEST(TokenFormat, DecodeAndVerifyNeverAllocate) {
  auto oracle = std::make_shared<TestOracle>();
  TokenCodec codec(oracle);
  const FlowKey flow = v6_flow();
  FlowToken mine(flow);
  const std::string own(mine.get(codec).token.view());
  const std::string other(codec.mint(v4_flow()).token.view());
  TokenCodec cold(oracle);  // empty cache: the oracle path
  std::string tampered = other;
  tampered[30] = tampered[30] == 'A' ? 'B' : 'A';
  const std::string inputs[] = {own, other, tampered, "", "garbage", std::string(46, '!')};
  ParsedToken p;
  const auto before = g_allocations.load();
  for (const auto& in : inputs) {
    (void)parse_token(in, p);
    (void)codec.verify(in, &mine);
    (void)codec.verify(in);
    (void)cold.verify(in);
  }
  const auto after = g_allocations.load();
  EXPECT_EQ(after - before, 0u);
}

}  // namespace
}  // namespace edge::flow
