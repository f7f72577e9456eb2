// Signing keys: ECDSA P-256 pairs in a real SoftHSM token, checked from outside (raw PKCS#11, OpenSSL).
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/signing_key.h>
#include <edge/test/process.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace {

using edge::hsm::EcdsaSignature;
using edge::hsm::Hsm;
using edge::hsm::HsmError;
using edge::hsm::Sha256Digest;
using edge::hsm::SigningKeys;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;

Sha256Digest sha256(std::string_view data) {
  Sha256Digest d{};
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr), 1);
  return d;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey load_pem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                &BIO_free);
  return Pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
}

// OpenSSL's own verification of a PKCS#11 raw (r || s) signature over SHA-256(data).
bool openssl_verifies(EVP_PKEY* key, std::string_view data, const EcdsaSignature& raw) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(raw.data(), 32, nullptr), BN_bin2bn(raw.data() + 32, 32, nullptr));
  unsigned char* der = nullptr;
  const int der_len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
                  EVP_DigestVerify(ctx, der, static_cast<std::size_t>(der_len),
                                   reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

bool bool_attribute(const edge::test::RawP11& p11, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                    CK_ATTRIBUTE_TYPE type) {
  CK_BBOOL v = CK_FALSE;
  CK_ATTRIBUTE a{type, &v, sizeof v};
  edge::test::p11_check(p11.f().C_GetAttributeValue(s, h, &a, 1), "C_GetAttributeValue");
  return v != CK_FALSE;
}

TEST(SigningKey, SignaturesVerifyWithTheExportedPublicKeyInOpenSsl) {
  SoftHsmToken token;
  Hsm hsm(token.config());
  SigningKeys keys(hsm);
  const auto info = keys.create("firmware");
  EXPECT_EQ(info.name, "firmware");
  EXPECT_EQ(info.public_key_der.size(), 91u);  // SPKI of an uncompressed P-256 point

  Pkey pub = load_pem(edge::hsm::public_key_pem(info.public_key_der));
  ASSERT_TRUE(pub) << "OpenSSL does not parse our PEM";
  EXPECT_EQ(EVP_PKEY_get_bits(pub.get()), 256);

  const EcdsaSignature sig = keys.sign_digest("firmware", sha256("manifest v1"));
  EXPECT_TRUE(openssl_verifies(pub.get(), "manifest v1", sig));
  EXPECT_FALSE(openssl_verifies(pub.get(), "manifest v2", sig));
  // ECDSA is randomized: a second signature differs and verifies too.
  const EcdsaSignature again = keys.sign_digest("firmware", sha256("manifest v1"));
  EXPECT_NE(sig, again);
  EXPECT_TRUE(openssl_verifies(pub.get(), "manifest v1", again));
}

TEST(SigningKey, PrivateHalfIsSensitiveNonExtractableAndSignOnly) {
  SoftHsmToken token;
  Hsm hsm(token.config());
  SigningKeys(hsm).create("fw");

  edge::test::RawP11 p11(edge::test::softhsm_module_path());
  const CK_SESSION_HANDLE s = p11.open_session(p11.slot_by_label(token.label()), false);
  p11.login(s, token.user_pin());
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  const std::string label = edge::hsm::signing_key_label("fw");
  const auto found = p11.find(
      s, {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, const_cast<char*>(label.data()), label.size()}});
  ASSERT_EQ(found.size(), 1u);
  const CK_OBJECT_HANDLE k = found.front();
  EXPECT_TRUE(bool_attribute(p11, s, k, CKA_TOKEN));
  EXPECT_TRUE(bool_attribute(p11, s, k, CKA_PRIVATE));
  EXPECT_TRUE(bool_attribute(p11, s, k, CKA_SENSITIVE));
  EXPECT_FALSE(bool_attribute(p11, s, k, CKA_EXTRACTABLE));
  EXPECT_TRUE(bool_attribute(p11, s, k, CKA_SIGN));
  EXPECT_FALSE(bool_attribute(p11, s, k, CKA_DECRYPT));
  EXPECT_FALSE(bool_attribute(p11, s, k, CKA_UNWRAP));
  EXPECT_FALSE(bool_attribute(p11, s, k, CKA_DERIVE));
  EXPECT_FALSE(bool_attribute(p11, s, k, CKA_MODIFIABLE));
  // The private value itself is refused by the HSM.
  std::vector<unsigned char> buf(256);
  CK_ATTRIBUTE value{CKA_VALUE, buf.data(), buf.size()};
  EXPECT_EQ(p11.f().C_GetAttributeValue(s, k, &value, 1), CKR_ATTRIBUTE_SENSITIVE);
  // Nobody can switch another use on later.
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE widen{CKA_DECRYPT, &yes, sizeof yes};
  EXPECT_NE(p11.f().C_SetAttributeValue(s, k, &widen, 1), CKR_OK);
  p11.f().C_CloseSession(s);
}

TEST(SigningKey, SurvivesAProcessRestartAndListsGetsAndDestroys) {
  SoftHsmToken token;
  std::vector<std::uint8_t> der;
  {
    Hsm hsm(token.config());
    SigningKeys keys(hsm);
    der = keys.create("b-key").public_key_der;
    keys.create("a-key");
    EXPECT_THAT([&] { keys.create("b-key"); },
                ::testing::ThrowsMessage<HsmError>(HasSubstr("already exists")));
  }
  Hsm hsm(token.config());
  SigningKeys keys(hsm);
  const auto all = keys.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "a-key");
  EXPECT_EQ(all[1].name, "b-key");
  EXPECT_EQ(keys.get("b-key").public_key_der, der);
  EXPECT_TRUE(keys.exists("a-key"));
  keys.destroy("a-key");
  EXPECT_FALSE(keys.exists("a-key"));
  EXPECT_THAT([&] { keys.sign_digest("a-key", sha256("x")); },
              ::testing::ThrowsMessage<HsmError>(HasSubstr("does not exist")));
  EXPECT_THAT([&] { keys.destroy("a-key"); },
              ::testing::ThrowsMessage<HsmError>(HasSubstr("does not exist")));
  EXPECT_THROW(keys.create("bad/name"), HsmError);
  EXPECT_THROW(keys.create(""), HsmError);
}

TEST(SigningKey, PublicKeyFileIsWrittenAtomicallyAndWorldReadable) {
  SoftHsmToken token;
  Hsm hsm(token.config());
  SigningKeys keys(hsm);
  const auto info = keys.create("firmware");
  edge::test::TempDir dir;
  const auto path = edge::hsm::write_public_key_pem(edge::hsm::public_key_dir(dir.path()), info);
  EXPECT_EQ(path, dir.path() / "keys" / "firmware.pub.pem");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  const std::string pem = edge::test::read_file(path);
  EXPECT_EQ(pem, edge::hsm::public_key_pem(info.public_key_der));
  Pkey pub = load_pem(pem);
  ASSERT_TRUE(pub);
  EXPECT_TRUE(openssl_verifies(pub.get(), "data", keys.sign_digest("firmware", sha256("data"))));
  // Nothing but the PEM is left in the directory (no temp file).
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(path.parent_path()),
                          std::filesystem::directory_iterator()),
            1);
}

}  // namespace
