// Key-set keys as the token holds them: non-extractable HMAC secrets, read back from outside edge_hsm.
#include <edge/hsm/hsm.h>
#include <edge/test/process.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>

namespace {

using edge::hsm::Hsm;
using edge::test::RawP11;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;

class KeyTemplateTest : public ::testing::Test {
 protected:
  // Creates the set through edge_hsm, then closes it, so what follows reads the token
  // with nothing of ours loaded.
  void create_set(const std::function<void(edge::hsm::KeySetManager&)>& more = {}) {
    Hsm hsm(token_.config());
    hsm.keysets().create("tmpl");
    if (more) more(hsm.keysets());
  }

  struct Opened {
    RawP11 p11{edge::test::softhsm_module_path()};
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  };
  std::unique_ptr<Opened> open_raw(bool login = true) {
    auto o = std::make_unique<Opened>();
    EXPECT_TRUE(o->p11.owns_initialize()) << "an edge_hsm instance is still initialised";
    o->session = o->p11.open_session(o->p11.slot_by_label(token_.label()), false);
    if (login) o->p11.login(o->session, token_.user_pin());
    return o;
  }
  CK_OBJECT_HANDLE only_key(const Opened& o, const std::string& label) {
    auto found = o.p11.find_by_label(o.session, label);
    EXPECT_EQ(found.size(), 1u) << label;
    return found.empty() ? CK_INVALID_HANDLE : found.front();
  }

  SoftHsmToken token_;
};

TEST_F(KeyTemplateTest, GeneratedKeyIsANonExtractableTokenHmacSecret) {
  create_set();
  auto o = open_raw();
  auto a = edge::test::read_secret_key(o->p11, o->session, only_key(*o, "tmpl/v1"));

  EXPECT_EQ(a.object_class, CKO_SECRET_KEY);
  EXPECT_EQ(a.key_type, CKK_GENERIC_SECRET);
  EXPECT_EQ(a.value_len, 32u);
  EXPECT_TRUE(a.token) << "a session key would vanish with the process";
  EXPECT_TRUE(a.is_private);
  EXPECT_TRUE(a.sensitive);
  EXPECT_FALSE(a.extractable);
  EXPECT_TRUE(a.always_sensitive) << "the key was visible at some point";
  EXPECT_TRUE(a.never_extractable);
  EXPECT_TRUE(a.local) << "the key was not generated inside the token";
  EXPECT_EQ(a.label, "tmpl/v1");
  EXPECT_FALSE(a.id.empty()) << "CKA_ID carries set and version";
}

TEST_F(KeyTemplateTest, KeyCanOnlySignAndVerify) {
  create_set();
  auto o = open_raw();
  auto a = edge::test::read_secret_key(o->p11, o->session, only_key(*o, "tmpl/v1"));
  EXPECT_TRUE(a.sign);
  EXPECT_TRUE(a.verify);
  EXPECT_FALSE(a.encrypt);
  EXPECT_FALSE(a.decrypt);
  EXPECT_FALSE(a.wrap);
  EXPECT_FALSE(a.unwrap);
  EXPECT_FALSE(a.derive);
}

TEST_F(KeyTemplateTest, KeyValueCannotBeRead) {
  create_set();
  auto o = open_raw();
  auto a = edge::test::read_secret_key(o->p11, o->session, only_key(*o, "tmpl/v1"));
  EXPECT_EQ(a.value_rv, CKR_ATTRIBUTE_SENSITIVE) << edge::test::p11_rv_name(a.value_rv);
}

// Modifiable (retirement flips CKA_SIGN/CKA_VERIFY), yet never to be made readable later.
TEST_F(KeyTemplateTest, KeyCannotBeMadeExtractableLater) {
  create_set();
  auto o = open_raw();
  o->session = o->p11.open_session(o->p11.slot_by_label(token_.label()), true);  // R/W
  auto key = only_key(*o, "tmpl/v1");
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE extractable{CKA_EXTRACTABLE, &yes, sizeof yes};
  EXPECT_NE(o->p11.f().C_SetAttributeValue(o->session, key, &extractable, 1), CKR_OK);
  CK_ATTRIBUTE sensitive{CKA_SENSITIVE, &no, sizeof no};
  EXPECT_NE(o->p11.f().C_SetAttributeValue(o->session, key, &sensitive, 1), CKR_OK);
  auto a = edge::test::read_secret_key(o->p11, o->session, key);
  EXPECT_TRUE(a.sensitive);
  EXPECT_FALSE(a.extractable);
  EXPECT_EQ(a.value_rv, CKR_ATTRIBUTE_SENSITIVE);
}

// CKA_MODIFIABLE only because retirement switches CKA_SIGN / CKA_VERIFY off; no copy with
// other flags, and retirement leaves the provenance attributes the adoption check reads.
TEST_F(KeyTemplateTest, VersionIsModifiableOnlyForRetirementAndCannotBeCopied) {
  create_set([](auto& ks) {
    ks.rotate("tmpl");
    ks.retire("tmpl", 1);
  });
  auto o = open_raw();
  o->session = o->p11.open_session(o->p11.slot_by_label(token_.label()), true);  // R/W
  for (const char* label : {"tmpl/v1", "tmpl/v2"}) {
    const auto key = only_key(*o, label);
    auto a = edge::test::read_secret_key(o->p11, o->session, key);
    EXPECT_TRUE(a.modifiable) << label << ": retirement needs C_SetAttributeValue";
    CK_BBOOL copyable = CK_TRUE;
    CK_ATTRIBUTE c{CKA_COPYABLE, &copyable, sizeof copyable};
    ASSERT_EQ(o->p11.f().C_GetAttributeValue(o->session, key, &c, 1), CKR_OK);
    EXPECT_EQ(copyable, CK_FALSE) << label;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE more{CKA_DERIVE, &yes, sizeof yes};
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    EXPECT_NE(o->p11.f().C_CopyObject(o->session, key, &more, 1, &copy), CKR_OK) << label;
    EXPECT_TRUE(a.local) << label;
    EXPECT_TRUE(a.never_extractable) << label;
    EXPECT_TRUE(a.always_sensitive) << label;
  }
}

TEST_F(KeyTemplateTest, KeyIsInvisibleWithoutLogin) {
  create_set();
  auto o = open_raw(/*login=*/false);
  EXPECT_TRUE(o->p11.find_by_label(o->session, "tmpl/v1").empty());
}

TEST_F(KeyTemplateTest, EveryVersionHasItsOwnLabelAndId) {
  create_set([](auto& ks) {
    ks.rotate("tmpl");
    ks.rotate("tmpl");
  });
  auto o = open_raw();
  auto v1 = edge::test::read_secret_key(o->p11, o->session, only_key(*o, "tmpl/v1"));
  auto v2 = edge::test::read_secret_key(o->p11, o->session, only_key(*o, "tmpl/v2"));
  auto v3 = edge::test::read_secret_key(o->p11, o->session, only_key(*o, "tmpl/v3"));
  EXPECT_NE(v1.id, v2.id);
  EXPECT_NE(v2.id, v3.id);
  EXPECT_NE(v1.id, v3.id);
  // Three different keys, not three labels on one.
  auto t1 = edge::test::raw_hmac_sha256(o->p11, o->session, only_key(*o, "tmpl/v1"), "x");
  auto t2 = edge::test::raw_hmac_sha256(o->p11, o->session, only_key(*o, "tmpl/v2"), "x");
  auto t3 = edge::test::raw_hmac_sha256(o->p11, o->session, only_key(*o, "tmpl/v3"), "x");
  EXPECT_NE(t1, t2);
  EXPECT_NE(t2, t3);
}

TEST_F(KeyTemplateTest, RetiredKeyIsRefusedByTheTokenItself) {
  create_set([](auto& ks) {
    ks.rotate("tmpl");
    ks.retire("tmpl", 1);
  });
  auto o = open_raw();
  auto key = only_key(*o, "tmpl/v1");
  auto a = edge::test::read_secret_key(o->p11, o->session, key);
  EXPECT_FALSE(a.sign);
  EXPECT_FALSE(a.verify);
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  EXPECT_EQ(o->p11.f().C_SignInit(o->session, &mech, key), CKR_KEY_FUNCTION_NOT_PERMITTED);
  // The active one still signs.
  EXPECT_EQ(edge::test::raw_hmac_sha256(o->p11, o->session, only_key(*o, "tmpl/v2"), "x").size(), 32u);
}

// The same facts through an independent tool, as an operator would check them.
TEST_F(KeyTemplateTest, Pkcs11ToolSeesASensitiveNeverExtractableKey) {
  create_set();
  ASSERT_NO_THROW(edge::test::find_program("pkcs11-tool", "opensc"));
  auto r = edge::test::run_command(
      {"pkcs11-tool", "--module", edge::test::softhsm_module_path(), "--token-label", token_.label(),
       "--login", "--pin", token_.user_pin(), "--list-objects", "--type", "secrkey"},
      token_.child_env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Secret Key Object; Generic secret length 32"));
  EXPECT_THAT(r.out, HasSubstr("label:      tmpl/v1"));
  EXPECT_THAT(r.out, HasSubstr("Access:     sensitive, always sensitive, never extractable, local"));
  // pkcs11-tool tries to read the value and is refused.
  EXPECT_THAT(r.err + r.out, HasSubstr("CKR_ATTRIBUTE_SENSITIVE"));
}

}  // namespace
