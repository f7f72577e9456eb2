// Key provenance: a key with a version's label and CKA_ID that the HSM did not generate (planted
// with a known value by a PIN holder) is refused and never mints or verifies.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/process.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace {

using edge::hsm::Hsm;
using edge::hsm::HsmError;
using edge::hsm::KeySetInfo;
using edge::hsm::MacStatus;
using edge::hsm::MacTag;
using edge::test::RawP11;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;

// The value a planter chose, so they can compute every MAC offline.
const std::vector<unsigned char> kKnownValue = {
    0x6b, 0x6e, 0x6f, 0x77, 0x6e, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x2d,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66};

std::vector<std::uint32_t> versions_of(const KeySetInfo& info) {
  std::vector<std::uint32_t> v;
  for (const auto& k : info.versions) v.push_back(k.version);
  return v;
}

// CKA_ID of a version as hsm/README.md documents it: "EKS1" | u32 version | i64 created |
// u32 retain | set name, big-endian.
std::vector<unsigned char> version_id(const std::string& set, std::uint32_t version) {
  std::vector<unsigned char> id = {'E', 'K', 'S', '1'};
  for (int i = 3; i >= 0; --i) id.push_back(static_cast<unsigned char>(version >> (8 * i)));
  const std::uint64_t created = 1700000000;
  for (int i = 7; i >= 0; --i) id.push_back(static_cast<unsigned char>(created >> (8 * i)));
  for (unsigned char b : {0, 0, 0, 3}) id.push_back(b);
  for (char c : set) id.push_back(static_cast<unsigned char>(c));
  return id;
}

std::string as_text(const std::vector<std::uint8_t>& d) { return {d.begin(), d.end()}; }

MacTag to_tag(const std::vector<unsigned char>& raw) {
  MacTag t{};
  EXPECT_EQ(raw.size(), t.size());
  for (std::size_t i = 0; i < t.size() && i < raw.size(); ++i) t[i] = raw[i];
  return t;
}

// A logged-in read/write session with plain PKCS#11 (in this process; an Hsm may be alive).
struct RawSession {
  explicit RawSession(const SoftHsmToken& token) {
    s = p11.open_session(p11.slot_by_label(token.label()), true);
    p11.login(s, token.user_pin());
  }
  ~RawSession() { p11.f().C_CloseSession(s); }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;

  // Plants the known value under `label` / `id`; returns the MAC of `data` under it,
  // which is exactly what HMAC-SHA256 with kKnownValue computes offline.
  std::vector<unsigned char> plant(const std::string& label, const std::vector<unsigned char>& id,
                                   const std::vector<std::uint8_t>& data) {
    const CK_OBJECT_HANDLE k = p11.create_known_hmac_key(s, label, id, kKnownValue);
    const auto a = edge::test::read_secret_key(p11, s, k);
    EXPECT_FALSE(a.local) << "the token marks a created key as not generated inside it";
    EXPECT_TRUE(a.sensitive);
    EXPECT_FALSE(a.extractable);
    return edge::test::raw_hmac_sha256(p11, s, k, as_text(data));
  }

  RawP11 p11{edge::test::softhsm_module_path()};
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
};

TEST(KeyProvenance, AKnownValueKeyPlantedAsANewVersionIsRefused) {
  SoftHsmToken token;
  const auto data = edge::test::sample_data();
  { Hsm(token.config()).keysets().create("sipflow", 3); }
  const MacTag forged = to_tag(RawSession(token).plant("sipflow/v2", version_id("sipflow", 2), data));

  Hsm hsm(token.config());
  const KeySetInfo info = hsm.keysets().get("sipflow");
  EXPECT_EQ(versions_of(info), (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(info.minting_version(), 1u) << "the planted v2 would mint";
  ASSERT_EQ(info.refused.size(), 1u);
  EXPECT_EQ(info.refused[0].version, 2u);
  EXPECT_EQ(info.refused[0].label, "sipflow/v2");
  EXPECT_THAT(info.refused[0].reason, HasSubstr("CKA_LOCAL"));
  ASSERT_EQ(hsm.keysets().list().size(), 1u);
  EXPECT_EQ(hsm.keysets().list()[0].refused.size(), 1u);

  auto mac = hsm.mac_for("sipflow");
  EXPECT_EQ(mac->minting_version(), 1u);
  EXPECT_EQ(mac->verify(2, data, forged), MacStatus::unknown_version) << "a forged MAC verified";
  MacTag t{};
  EXPECT_EQ(mac->sign(2, data, t), MacStatus::unknown_version) << "minted with a key someone knows";
  ASSERT_EQ(mac->info().refused.size(), 1u);
  EXPECT_THAT(mac->info().refused[0].reason, HasSubstr("CKA_LOCAL"));

  // Asking for that version by number says why it is not there.
  try {
    mac->set_minting_version(2);
    ADD_FAILURE() << "the planted version was accepted for minting";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("CKA_LOCAL"));
  }
  try {
    hsm.keysets().retire("sipflow", 2);
    ADD_FAILURE() << "retire acted on the planted key";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("sipflow/v2' was refused: CKA_LOCAL"));
  }

  // The operator tool lists it as refused.
  auto r = edge::test::run_command({EDGE_HSM_TOOL, "--module", edge::test::softhsm_module_path(), "--token",
                                    token.label(), "--pin-file", token.pin_file().string(), "keyset", "list"},
                                   token.child_env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sipflow v1 active minting"));
  EXPECT_THAT(r.out, HasSubstr("sipflow v2 REFUSED reason=\"CKA_LOCAL is not true"));
}

TEST(KeyProvenance, AKnownValueKeyBesideALiveVersionIsNeverUsed) {
  SoftHsmToken token;
  const auto data = edge::test::sample_data();
  MacTag genuine{};
  {
    Hsm hsm(token.config());
    hsm.keysets().create("sipflow", 3);
    ASSERT_EQ(hsm.mac_for("sipflow")->sign(1, data, genuine), MacStatus::ok);
  }
  MacTag forged{};
  {
    RawSession raw(token);
    const auto found = raw.p11.find_by_label(raw.s, "sipflow/v1");
    ASSERT_EQ(found.size(), 1u);
    const auto id = edge::test::read_secret_key(raw.p11, raw.s, found[0]).id;
    forged = to_tag(raw.plant("sipflow/v1", id, data));  // the very same label and CKA_ID
  }
  ASSERT_NE(forged, genuine);

  Hsm hsm(token.config());
  // A fresh view: the first use finds two objects with v1's label and ID.
  auto mac = hsm.mac_for("sipflow");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(mac->verify(1, data, forged), MacStatus::mismatch) << "a forged MAC verified";
    EXPECT_EQ(mac->verify(1, data, genuine), MacStatus::ok);
    MacTag t{};
    ASSERT_EQ(mac->sign(1, data, t), MacStatus::ok);
    EXPECT_EQ(t, genuine) << "minted with the planted key";
  }
  ASSERT_EQ(mac->info().refused.size(), 1u);
  EXPECT_EQ(mac->info().refused[0].version, 1u);
  EXPECT_EQ(versions_of(hsm.keysets().get("sipflow")), (std::vector<std::uint32_t>{1}));

  // The genuine key destroyed behind the view's back: the per-message path finds the
  // planted one alone under v1's label and ID and still uses nothing.
  {
    RawSession raw(token);
    for (const auto h : raw.p11.find_by_label(raw.s, "sipflow/v1")) {
      if (edge::test::read_secret_key(raw.p11, raw.s, h).local)
        edge::test::p11_check(raw.p11.f().C_DestroyObject(raw.s, h), "C_DestroyObject");
    }
    ASSERT_EQ(raw.p11.find_by_label(raw.s, "sipflow/v1").size(), 1u);
  }
  EXPECT_EQ(mac->verify(1, data, forged), MacStatus::unknown_version) << "a forged MAC verified";
  MacTag t{};
  EXPECT_EQ(mac->sign(1, data, t), MacStatus::unknown_version);
  mac->refresh();
  EXPECT_EQ(mac->minting_version(), 0u);
  EXPECT_EQ(mac->verify(1, data, forged), MacStatus::unknown_version);
  try {
    hsm.keysets().get("sipflow");
    ADD_FAILURE() << "a set of one planted key exists";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("does not exist; object labelled 'sipflow/v1' was refused: CKA_LOCAL"));
  }
}

// Generated in the token but extractable at first (its value could have been read out),
// then switched to non-extractable, which PKCS#11 allows: CKA_NEVER_EXTRACTABLE stays false.
TEST(KeyProvenance, AKeyThatWasOnceExtractableIsRefused) {
  SoftHsmToken token;
  const auto data = edge::test::sample_data();
  { Hsm(token.config()).keysets().create("sipflow", 3); }
  {
    RawSession raw(token);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    std::string label = "sipflow/v2";
    auto id = version_id("sipflow", 2);
    std::vector<CK_ATTRIBUTE> tmpl = {
        {CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_VALUE_LEN, &len, sizeof len},   {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},     {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &yes, sizeof yes}, {CKA_SIGN, &yes, sizeof yes},
        {CKA_VERIFY, &yes, sizeof yes},      {CKA_LABEL, label.data(), label.size()},
        {CKA_ID, id.data(), id.size()},
    };
    CK_MECHANISM mech{CKM_GENERIC_SECRET_KEY_GEN, nullptr, 0};
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    edge::test::p11_check(raw.p11.f().C_GenerateKey(raw.s, &mech, tmpl.data(), tmpl.size(), &k),
                          "C_GenerateKey");
    CK_ATTRIBUTE off{CKA_EXTRACTABLE, &no, sizeof no};
    edge::test::p11_check(raw.p11.f().C_SetAttributeValue(raw.s, k, &off, 1), "C_SetAttributeValue");
    const auto a = edge::test::read_secret_key(raw.p11, raw.s, k);
    ASSERT_TRUE(a.local);
    ASSERT_FALSE(a.extractable);
    ASSERT_FALSE(a.never_extractable);
  }
  Hsm hsm(token.config());
  const KeySetInfo info = hsm.keysets().get("sipflow");
  EXPECT_EQ(versions_of(info), (std::vector<std::uint32_t>{1}));
  ASSERT_EQ(info.refused.size(), 1u);
  EXPECT_THAT(info.refused[0].reason, HasSubstr("CKA_NEVER_EXTRACTABLE"));
  MacTag t{};
  EXPECT_EQ(hsm.mac_for("sipflow")->sign(2, data, t), MacStatus::unknown_version);
}

// What edge_hsm generates passes its own check, also after retirement and restart.
TEST(KeyProvenance, GeneratedVersionsAreAdoptedAndNothingIsRefused) {
  SoftHsmToken token;
  {
    Hsm hsm(token.config());
    hsm.keysets().create("sipflow", 3);
    hsm.keysets().rotate("sipflow");
    hsm.keysets().retire("sipflow", 1);
  }
  Hsm hsm(token.config());
  const KeySetInfo info = hsm.keysets().get("sipflow");
  EXPECT_EQ(versions_of(info), (std::vector<std::uint32_t>{1, 2}));
  EXPECT_TRUE(info.refused.empty());
  EXPECT_TRUE(hsm.mac_for("sipflow")->info().refused.empty());
}

}  // namespace
