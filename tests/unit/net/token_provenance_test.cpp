// Flow tokens forged offline with a key value planted on the token (same label and CKA_ID as a
// key-set version) do not verify against the real SoftHSM key set.
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/net/token/token.h>
#include <edge/net/token/token_codec.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>
#include <string>
#include <vector>

namespace edge::flow {
namespace {

constexpr const char* kSet = "flows";
const std::vector<unsigned char> kKnownValue(32, 0x42);

// The forger: HMAC-SHA256 with the planted value, computed in this process with
// OpenSSL, no HSM involved. It mints under whatever version it claims.
class KnownKeyOracle final : public hsm::MacOracle {
 public:
  explicit KnownKeyOracle(std::uint32_t version) : version_(version) {}
  std::uint32_t minting_version() const override { return version_; }
  std::uint64_t epoch() const override { return 0; }
  hsm::MacStatus sign(std::uint32_t, std::span<const std::uint8_t> data, hsm::MacTag& out) override {
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), kKnownValue.data(), static_cast<int>(kKnownValue.size()), data.data(), data.size(),
             out.data(), &len) == nullptr ||
        len != out.size())
      return hsm::MacStatus::unavailable;
    return hsm::MacStatus::ok;
  }
  hsm::MacStatus verify(std::uint32_t, std::span<const std::uint8_t>,
                        std::span<const std::uint8_t>) override {
    return hsm::MacStatus::unavailable;
  }

 private:
  std::uint32_t version_;
};

FlowKey flow() {
  return {Transport::tcp, *Endpoint::parse("192.0.2.10", 5060), *Endpoint::parse("198.51.100.7", 40312)};
}

// CKA_ID of a new version, laid out as hsm/README.md documents it.
std::vector<unsigned char> version_id(std::uint32_t version) {
  std::vector<unsigned char> id = {'E', 'K', 'S', '1'};
  for (int i = 3; i >= 0; --i) id.push_back(static_cast<unsigned char>(version >> (8 * i)));
  for (int i = 0; i < 8; ++i) id.push_back(i == 4 ? 0x65 : 0);
  for (unsigned char b : {0, 0, 0, 3}) id.push_back(b);
  for (const char* c = kSet; *c != '\0'; ++c) id.push_back(static_cast<unsigned char>(*c));
  return id;
}

TEST(TokenProvenance, ATokenMintedWithAPlantedKnownKeyDoesNotVerify) {
  test::SoftHsmToken token;
  { hsm::Hsm(token.config()).keysets().create(kSet, 3); }
  {
    // A PIN holder plants the known value twice: under v1's exact label and CKA_ID, and as v2.
    test::RawP11 p11(test::softhsm_module_path());
    auto s = p11.open_session(p11.slot_by_label(token.label()), true);
    p11.login(s, token.user_pin());
    const auto found = p11.find_by_label(s, std::string(kSet) + "/v1");
    ASSERT_EQ(found.size(), 1u);
    const auto v1_id = test::read_secret_key(p11, s, found[0]).id;
    p11.create_known_hmac_key(s, std::string(kSet) + "/v1", v1_id, kKnownValue);
    p11.create_known_hmac_key(s, std::string(kSet) + "/v2", version_id(2), kKnownValue);
    p11.f().C_CloseSession(s);
  }

  hsm::Hsm hsm(token.config());
  auto mac = hsm.mac_for(kSet);
  ASSERT_EQ(mac->minting_version(), 1u) << "the planted v2 was adopted";
  TokenCodec edge_codec(mac);
  const MintResult real = edge_codec.mint(flow());
  ASSERT_EQ(real.status, MintStatus::ok);

  for (std::uint32_t v : {1u, 2u}) {
    TokenCodec forger(std::make_shared<KnownKeyOracle>(v));
    const MintResult forged = forger.mint(flow());
    ASSERT_EQ(forged.status, MintStatus::ok);
    ASSERT_EQ(forged.key_version, v);
    ASSERT_NE(std::string(forged.token.view()), std::string(real.token.view()));
    TokenCodec verifier(mac);  // an empty cache: the MAC is checked in the HSM
    const VerifyResult r = verifier.verify(forged.token.view());
    EXPECT_EQ(r.status, TokenStatus::tampered) << "a token forged with the planted key for v" << v;
    EXPECT_FALSE(r.valid());
  }
  TokenCodec verifier(mac);
  EXPECT_TRUE(verifier.verify(real.token.view()).valid());
}

}  // namespace
}  // namespace edge::flow
