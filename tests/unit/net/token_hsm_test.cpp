// Flow tokens against a real SoftHSM token: round trips, tampering, rotation, restart, HSM call
// counts.
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/net/token/base64url.h>
#include <edge/net/token/token.h>
#include <edge/net/token/token_codec.h>
#include <edge/test/fault_shim.h>
#include <edge/test/softhsm_fixture.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace edge::flow {
namespace {

constexpr const char* kSet = "flows";

FlowKey v4_flow(Transport t = Transport::tcp, std::uint16_t rport = 40312) {
  return {t, *Endpoint::parse("192.0.2.10", 5060), *Endpoint::parse("198.51.100.7", rport)};
}
FlowKey v6_flow(Transport t = Transport::wss, std::uint16_t rport = 50000) {
  return {t, *Endpoint::parse("2001:db8::10", 443), *Endpoint::parse("2001:db8:1::7", rport)};
}

std::vector<std::uint8_t> to_raw(std::string_view text) {
  std::vector<std::uint8_t> raw(base64url_decoded_size(text.size()));
  const auto n = base64url_decode(text, raw);
  raw.resize(static_cast<std::size_t>(n < 0 ? 0 : n));
  return raw;
}
std::string to_text(const std::vector<std::uint8_t>& raw) {
  std::string s(base64url_encoded_size(raw.size()), '\0');
  base64url_encode(raw, s);
  return s;
}

// One SoftHSM token per test, an Hsm on it and a key set with v1.
class FlowTokenHsm : public ::testing::Test {
 protected:
  void SetUp() override {
    open();
    hsm_->keysets().create(kSet, 3);
    mac_->refresh();
    ASSERT_EQ(mac_->minting_version(), 1u);
  }

  // (Re)opens the HSM on the same token, as a process restart would.
  void open() {
    mac_.reset();
    hsm_.reset();
    hsm_ = std::make_unique<hsm::Hsm>(token_.config());
    mac_ = hsm_->mac_for(kSet);
  }

  std::unique_ptr<TokenCodec> codec(TokenCodecConfig config = {}) {
    return std::make_unique<TokenCodec>(mac_, config);
  }

  hsm::OpCountersSnapshot ops() const { return hsm_->counters().snapshot(); }

  test::SoftHsmToken token_;
  std::unique_ptr<hsm::Hsm> hsm_;
  std::shared_ptr<hsm::KeySetMac> mac_;
};

TEST_F(FlowTokenHsm, RoundTripsEveryTransportOverIpv4AndIpv6) {
  auto minter = codec();
  auto verifier = codec();  // its own, empty cache: every verify goes to the HSM
  for (Transport t : kAllTransports) {
    for (const FlowKey& flow : {v4_flow(t), v6_flow(t)}) {
      const MintResult m = minter->mint(flow);
      ASSERT_EQ(m.status, MintStatus::ok) << to_string(flow);
      EXPECT_EQ(m.key_version, 1u);
      const VerifyResult v = verifier->verify(m.token.view());
      EXPECT_EQ(v.status, TokenStatus::valid) << to_string(flow);
      EXPECT_EQ(v.source, VerifySource::hsm);
      EXPECT_EQ(v.flow, flow);
    }
  }
  EXPECT_EQ(ops().sign, 2 * kAllTransports.size());
  EXPECT_EQ(ops().verify, 2 * kAllTransports.size());
}

TEST_F(FlowTokenHsm, EveryFlippedBitIsRejected) {
  auto c = codec();
  for (const FlowKey& flow : {v4_flow(Transport::udp), v6_flow(Transport::tls)}) {
    const auto raw = to_raw(c->mint(flow).token.view());
    ASSERT_FALSE(raw.empty());
    for (std::size_t bit = 0; bit < raw.size() * 8; ++bit) {
      auto copy = raw;
      copy[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      const VerifyResult v = c->verify(to_text(copy));
      EXPECT_NE(v.status, TokenStatus::valid) << "bit " << bit;
      EXPECT_NE(v.status, TokenStatus::hsm_unavailable) << "bit " << bit;
      // A flip in the tag or in an address reaches the HSM, which refuses it.
      if (bit >= kHeaderSize * 8) {
        EXPECT_EQ(v.status, TokenStatus::tampered) << "bit " << bit;
      }
    }
  }
  EXPECT_EQ(c->stats().cache.size, 2u);  // the two minted tokens, nothing else
}

TEST_F(FlowTokenHsm, EveryChangedCharacterIsRejected) {
  auto c = codec();
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (const FlowKey& flow : {v4_flow(), v6_flow()}) {
    const std::string good(c->mint(flow).token.view());
    for (std::size_t i = 0; i < good.size(); ++i) {
      for (char ch : alphabet) {
        if (ch == good[i]) continue;
        std::string bad = good;
        bad[i] = ch;
        const TokenStatus st = c->verify(bad).status;
        EXPECT_NE(st, TokenStatus::valid) << i << " " << ch;
        EXPECT_NE(st, TokenStatus::hsm_unavailable) << i << " " << ch;
      }
    }
  }
}

TEST_F(FlowTokenHsm, EveryRetainedVersionVerifiesAndADestroyedOneDoesNot) {
  std::vector<std::string> tokens;  // tokens[i] minted with version i + 1
  auto minter = codec();
  for (std::uint32_t v = 1; v <= 3; ++v) {
    if (v > 1) {
      hsm_->keysets().rotate(kSet);
      mac_->refresh();
    }
    const MintResult m = minter->mint(v4_flow());
    ASSERT_EQ(m.status, MintStatus::ok);
    ASSERT_EQ(m.key_version, v);
    tokens.emplace_back(m.token.view());
  }
  auto verifier = codec();
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const VerifyResult r = verifier->verify(tokens[i]);
    EXPECT_EQ(r.status, TokenStatus::valid) << "v" << i + 1;
    EXPECT_EQ(r.key_version, i + 1);
  }
  // Retain 3: a fourth version destroys v1, whose tokens then fail as tampered.
  hsm_->keysets().rotate(kSet);
  mac_->refresh();
  const VerifyResult gone = verifier->verify(tokens[0]);
  EXPECT_EQ(gone.status, TokenStatus::tampered);
  EXPECT_EQ(gone.source, VerifySource::hsm);  // the cached verification was dropped
  EXPECT_EQ(gone.mac, hsm::MacStatus::unknown_version);
  EXPECT_TRUE(verifier->verify(tokens[1]).valid());
  EXPECT_TRUE(verifier->verify(tokens[2]).valid());
}

TEST_F(FlowTokenHsm, RetiredVersionFailsAndTheCacheForgetsIt) {
  auto c = codec();
  const std::string t1(c->mint(v4_flow()).token.view());
  ASSERT_EQ(c->verify(t1).source, VerifySource::cache);  // minted tokens are cached
  hsm_->keysets().rotate(kSet);
  mac_->refresh();
  const std::string t2(c->mint(v6_flow()).token.view());
  EXPECT_EQ(c->verify(t1).source, VerifySource::cache);  // rotation alone keeps v1 valid

  hsm_->keysets().retire(kSet, 1);
  mac_->refresh();
  const auto before = ops();
  const VerifyResult r = c->verify(t1);
  EXPECT_EQ(r.status, TokenStatus::tampered);
  EXPECT_EQ(r.source, VerifySource::hsm);
  EXPECT_EQ(r.mac, hsm::MacStatus::retired_version);
  EXPECT_EQ(c->stats().epoch_changes, 1u);
  // Retired stays retired, however often it is presented: never cached as valid.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c->verify(t1).status, TokenStatus::tampered);
  EXPECT_GE(ops().total(), before.total());
  // v2 still verifies (once through the HSM: the whole cache was dropped).
  const VerifyResult r2 = c->verify(t2);
  EXPECT_EQ(r2.status, TokenStatus::valid);
  EXPECT_EQ(r2.source, VerifySource::hsm);
  EXPECT_EQ(c->verify(t2).source, VerifySource::cache);
}

TEST_F(FlowTokenHsm, TokensMintedBeforeARestartVerifyAfterIt) {
  std::vector<std::pair<std::string, FlowKey>> minted;
  {
    auto c = codec();
    for (Transport t : kAllTransports) {
      for (const FlowKey& flow : {v4_flow(t), v6_flow(t)}) {
        minted.emplace_back(std::string(c->mint(flow).token.view()), flow);
      }
    }
  }
  open();  // Hsm destroyed and reopened on the same token: keys survive, caches do not
  auto c = codec();
  for (const auto& [text, flow] : minted) {
    const VerifyResult r = c->verify(text);
    EXPECT_EQ(r.status, TokenStatus::valid) << text;
    EXPECT_EQ(r.source, VerifySource::hsm);
    EXPECT_EQ(r.flow, flow);
  }
  EXPECT_EQ(ops().verify, minted.size());
}

TEST_F(FlowTokenHsm, CacheHitCostsNoHsmCall) {
  std::string text;
  {
    auto other_node = codec();
    text = std::string(other_node->mint(v6_flow()).token.view());
  }
  auto c = codec();
  const auto first = c->verify(text);
  ASSERT_EQ(first.status, TokenStatus::valid);
  ASSERT_EQ(first.source, VerifySource::hsm);
  const auto before = ops();
  for (int i = 0; i < 1000; ++i) {
    const VerifyResult r = c->verify(text);
    ASSERT_EQ(r.status, TokenStatus::valid);
    ASSERT_EQ(r.source, VerifySource::cache);
    ASSERT_EQ(r.flow, v6_flow());
  }
  const auto after = ops();
  EXPECT_EQ(after.total(), before.total());
  EXPECT_EQ(after.sign, before.sign);
  EXPECT_EQ(after.verify, before.verify);
  EXPECT_EQ(c->stats().verified_by_cache, 1000u);
  EXPECT_EQ(c->stats().cache.hits, 1000u);
  EXPECT_EQ(c->stats().hsm_verifies, 1u);
}

TEST_F(FlowTokenHsm, FlowTokenMintsOncePerFlowPerKeyVersion) {
  auto c = codec();
  FlowToken a(v4_flow(Transport::tcp, 1111));
  FlowToken b(v4_flow(Transport::tcp, 2222));
  const auto before = ops();
  std::string ta, tb;
  for (int i = 0; i < 100; ++i) {
    ta = std::string(a.get(*c).token.view());
    tb = std::string(b.get(*c).token.view());
  }
  EXPECT_NE(ta, tb);
  EXPECT_EQ(ops().sign - before.sign, 2u);
  EXPECT_EQ(a.mints(), 1u);

  hsm_->keysets().rotate(kSet);
  mac_->refresh();
  const MintResult m = a.get(*c);
  EXPECT_EQ(m.key_version, 2u);
  EXPECT_NE(std::string(m.token.view()), ta);
  for (int i = 0; i < 100; ++i) (void)a.get(*c);
  EXPECT_EQ(a.mints(), 2u);
  EXPECT_EQ(ops().sign - before.sign, 3u);

  // Management pins the old version across a staged rotation: minting follows.
  mac_->set_minting_version(1);
  EXPECT_EQ(a.get(*c).key_version, 1u);
  EXPECT_EQ(a.mints(), 3u);
}

TEST_F(FlowTokenHsm, OwnFlowTokenVerifiesWithoutHsmOrCacheLookup) {
  auto c = codec({.verified_cache_capacity = 1024, .cache_minted = false});
  FlowToken own(v4_flow());
  FlowToken other(v4_flow(Transport::tcp, 9999));
  const std::string text(own.get(*c).token.view());
  (void)other.get(*c);
  const auto before = ops();
  const auto cache_before = c->cache().stats();
  for (int i = 0; i < 100; ++i) {
    const VerifyResult r = c->verify(text, &own);
    ASSERT_EQ(r.status, TokenStatus::valid);
    ASSERT_EQ(r.source, VerifySource::flow);
    ASSERT_EQ(r.flow, own.flow());
    ASSERT_EQ(r.key_version, 1u);
  }
  EXPECT_EQ(ops().total(), before.total());
  const auto cache_after = c->cache().stats();
  EXPECT_EQ(cache_after.hits + cache_after.misses, cache_before.hits + cache_before.misses);
  // Presented on another flow ("incoming" request): the HSM once, then the cache.
  EXPECT_EQ(c->verify(text, &other).source, VerifySource::hsm);
  EXPECT_EQ(c->verify(text, &other).source, VerifySource::cache);
  // After a retirement the flow's token is not trusted blindly any more.
  hsm_->keysets().rotate(kSet);
  hsm_->keysets().retire(kSet, 1);
  mac_->refresh();
  const VerifyResult r = c->verify(text, &own);
  EXPECT_EQ(r.status, TokenStatus::tampered);
  EXPECT_EQ(r.source, VerifySource::hsm);
}

TEST_F(FlowTokenHsm, ConcurrentMintAndVerify) {
  auto c = codec({.verified_cache_capacity = 64});
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const FlowKey flow = (i % 2) ? v4_flow(Transport::tcp, static_cast<std::uint16_t>(1000 + t * 100 + i))
                                     : v6_flow(Transport::ws, static_cast<std::uint16_t>(1000 + t * 100 + i));
        const MintResult m = c->mint(flow);
        if (m.status != MintStatus::ok) {
          ++bad;
          continue;
        }
        const VerifyResult r = c->verify(m.token.view());
        if (!r.valid() || !(r.flow == flow)) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(c->cache().size(), c->cache().capacity());
}

// HSM faults are "cannot decide now" (503), never "tampered" (403).
TEST(FlowTokenHsmFaults, FailingSignAndVerifyGiveUnavailable) {
  test::SoftHsmToken token;
  test::FaultShim shim(token);
  hsm::Hsm hsm(shim.config());
  hsm.keysets().create(kSet);
  auto mac = hsm.mac_for(kSet);
  mac->refresh();
  TokenCodec minter(mac);
  const std::string text(minter.mint(v4_flow()).token.view());
  TokenCodec verifier(mac);

  shim.set("C_Sign CKR_DEVICE_ERROR");
  EXPECT_EQ(verifier.verify(text).status, TokenStatus::hsm_unavailable);
  EXPECT_EQ(minter.mint(v6_flow()).status, MintStatus::hsm_unavailable);
  FlowToken ft(v6_flow());
  EXPECT_EQ(ft.get(minter).status, MintStatus::hsm_unavailable);
  EXPECT_GT(shim.injected("C_Sign"), 0u);
  // Structure is still decided without the HSM.
  EXPECT_EQ(verifier.verify("nope").status, TokenStatus::not_ours);

  // Recovery comes on the first call after the back-off (400 ms at most with
  // the fixture's config); 10 s is an upper bound, not an expectation.
  shim.clear();
  bool recovered = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!recovered && std::chrono::steady_clock::now() < deadline) {
    recovered = verifier.verify(text).valid();
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(recovered);
}

}  // namespace
}  // namespace edge::flow
