// Cell key transfer between two HSMs (issue 15, HSM layer): two real SoftHSM tokens are two
// members. A member's identity is two RSA pairs (transport + signing); a version generated on A
// reaches B only wrapped under B's transport key, after A's SO admitted B, with a record signed by
// A that B's HSM verifies under A's trusted verify key; both copies on B have the attributes the
// design promises; nothing is wrapped for a member the SO did not admit (the HSM itself refuses);
// a blob or record that does not check out leaves nothing behind; an imported version is adopted
// by KeySetManager / KeySetMac only by the record rule, so a key planted with a known value is
// never used; admission is one edge-hsm run with the SO PIN.
#include <edge/hsm/cell_keys.h>
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
#include <tuple>
#include <vector>

namespace {

using edge::hsm::CellKeyError;
using edge::hsm::CellKeys;
using edge::hsm::Hsm;
using edge::hsm::KeyState;
using edge::hsm::MacStatus;
using edge::hsm::MacTag;
using edge::hsm::TransportPublicKey;
using edge::hsm::VersionRecord;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;

constexpr const char* kMemberA = "member-a";
constexpr const char* kMemberB = "member-b";
constexpr const char* kMemberC = "member-c";

// The value a planter chose, so they can compute every MAC offline.
const std::vector<unsigned char> kKnownValue = {
    0x6b, 0x6e, 0x6f, 0x77, 0x6e, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x2d,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66};

// CKA_ID of a version as hsm/README.md documents it: "EKS1" | u32 version | i64 created |
// u32 retain | set name, big-endian (created 1700000000, retain 3 as the tests generate them).
std::vector<unsigned char> version_id(const std::string& set, std::uint32_t version) {
  std::vector<unsigned char> id = {'E', 'K', 'S', '1'};
  for (int i = 3; i >= 0; --i) id.push_back(static_cast<unsigned char>(version >> (8 * i)));
  const std::uint64_t created = 1700000000;
  for (int i = 7; i >= 0; --i) id.push_back(static_cast<unsigned char>(created >> (8 * i)));
  for (unsigned char b : {0, 0, 0, 3}) id.push_back(b);
  for (char c : set) id.push_back(static_cast<unsigned char>(c));
  return id;
}

MacTag to_tag(const std::vector<unsigned char>& raw) {
  MacTag t{};
  EXPECT_EQ(raw.size(), t.size());
  for (std::size_t i = 0; i < t.size() && i < raw.size(); ++i) t[i] = raw[i];
  return t;
}

// Plain PKCS#11 view of one token (independent of edge_hsm), logged in as the user.
class Raw {
 public:
  Raw(const SoftHsmToken& token, const std::string& label) : p11_(edge::test::softhsm_module_path()) {
    s_ = p11_.open_session(p11_.slot_by_label(label), true);
    p11_.login(s_, token.user_pin());
  }
  ~Raw() { p11_.f().C_CloseSession(s_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  // Objects of a class, with a label (empty: any).
  std::vector<CK_OBJECT_HANDLE> find(CK_OBJECT_CLASS cls, const std::string& label) const {
    std::vector<CK_ATTRIBUTE> t = {{CKA_CLASS, &cls, sizeof cls}};
    if (!label.empty()) t.push_back({CKA_LABEL, const_cast<char*>(label.data()), label.size()});
    return p11_.find(s_, t);
  }
  bool get_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) const {
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof v};
    edge::test::p11_check(p11_.f().C_GetAttributeValue(s_, h, &a, 1), "C_GetAttributeValue");
    return v != CK_FALSE;
  }
  CK_RV set_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, bool value) const {
    CK_BBOOL v = value ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof v};
    return p11_.f().C_SetAttributeValue(s_, h, &a, 1);
  }
  CK_RV create(std::vector<CK_ATTRIBUTE>& t) const {
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    return p11_.f().C_CreateObject(s_, t.data(), static_cast<CK_ULONG>(t.size()), &h);
  }
  // A known-value HMAC key with `label` / `id` (what a PIN holder can plant); returns the
  // HMAC of `data` under it, which anyone knowing the value computes offline.
  std::vector<unsigned char> plant(const std::string& label, const std::vector<unsigned char>& id,
                                   const std::vector<std::uint8_t>& data) const {
    const CK_OBJECT_HANDLE k = p11_.create_known_hmac_key(s_, label, id, kKnownValue);
    EXPECT_FALSE(edge::test::read_secret_key(p11_, s_, k).local);
    return edge::test::raw_hmac_sha256(p11_, s_, k, std::string(data.begin(), data.end()));
  }
  CK_RV destroy(CK_OBJECT_HANDLE h) const { return p11_.f().C_DestroyObject(s_, h); }
  CK_RV wrap_oaep(CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key) const {
    CK_RSA_PKCS_OAEP_PARAMS p{CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0};
    CK_MECHANISM m{CKM_RSA_PKCS_OAEP, &p, sizeof p};
    std::vector<std::uint8_t> out(1024);
    CK_ULONG len = out.size();
    return p11_.f().C_WrapKey(s_, &m, wrapping, key, out.data(), &len);
  }
  // Whether the token hands out the key's value (it must not).
  bool value_readable(CK_OBJECT_HANDLE h) const {
    return edge::test::read_secret_key(p11_, s_, h).value_rv == CKR_OK;
  }

 private:
  edge::test::RawP11 p11_;
  CK_SESSION_HANDLE s_ = CK_INVALID_HANDLE;
};

class CellKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_.init_extra_token(kMemberB);
    // A third member's token, for the tests that need one: made before the module is
    // loaded (SoftHSM reads its token list once per process).
    token_.init_extra_token(kMemberC);
    a_ = std::make_unique<Hsm>(token_.config());
    b_ = std::make_unique<Hsm>(config_of(kMemberB));
    so_pin_file_ = token_.dir() / "so.pin";
    edge::test::write_file(so_pin_file_, token_.so_pin() + "\n");
  }

  edge::hsm::HsmConfig config_of(const std::string& label) const {
    edge::hsm::HsmConfig c = token_.config();
    c.token.label = label;
    return c;
  }

  // `edge-hsm cell trust MEMBER` on the token `label` as its SO, in its own process.
  edge::test::CommandResult trust(const std::string& label, const std::string& member,
                                  const TransportPublicKey& k, const std::string& fp) {
    const auto der = token_.dir() / "member-identity.der";
    const std::vector<std::uint8_t> identity = k.identity();
    edge::test::write_file(der, std::string(identity.begin(), identity.end()), 0644);
    return edge::test::run_command(
        {EDGE_HSM_TOOL, "--module", edge::test::softhsm_module_path(), "--token", label, "--pin-file",
         token_.pin_file().string(), "cell", "trust", member, "--public-key", der.string(), "--fingerprint",
         fp, "--so-pin-file", so_pin_file_.string()},
        token_.child_env());
  }

  // Both members with transport keys; each HSM's SO admitted its own member and the other.
  void admit_both() {
    CellKeys ca(*a_), cb(*b_);
    pub_a_ = ca.create_transport_key();
    pub_b_ = cb.create_transport_key();
    const std::string la = token_.label(), lb = kMemberB;
    for (const auto& [label, member, key] :
         {std::tuple{la, kMemberA, &pub_a_}, std::tuple{la, kMemberB, &pub_b_},
          std::tuple{lb, kMemberB, &pub_b_}, std::tuple{lb, kMemberA, &pub_a_}}) {
      const auto r = trust(label, member, *key, key->fingerprint);
      ASSERT_EQ(r.exit_code, 0) << label << " admitting " << member << ": " << r.err;
    }
  }

  SoftHsmToken token_;
  std::unique_ptr<Hsm> a_, b_;
  std::filesystem::path so_pin_file_;
  TransportPublicKey pub_a_, pub_b_;
};

TEST(CellSpki, EncodesAndParsesAnRsaKeyAndRefusesWhatIsNot) {
  std::vector<std::uint8_t> n(256, 0xab);
  n[0] = 0xc1;
  const std::vector<std::uint8_t> e = {0x01, 0x00, 0x01};
  const std::vector<std::uint8_t> der = edge::hsm::encode_rsa_spki(n, e);
  // SEQUENCE, 290 content bytes (long form), rsaEncryption, BIT STRING: the usual 294-byte SPKI.
  EXPECT_EQ(der.size(), 294u);
  EXPECT_EQ(der[0], 0x30);
  const auto parts = edge::hsm::parse_rsa_spki(der);
  EXPECT_EQ(parts.modulus, n);
  EXPECT_EQ(parts.exponent, e);

  std::vector<std::uint8_t> trailing = der;
  trailing.push_back(0);
  EXPECT_THROW(edge::hsm::parse_rsa_spki(trailing), CellKeyError);
  std::vector<std::uint8_t> truncated(der.begin(), der.end() - 1);
  EXPECT_THROW(edge::hsm::parse_rsa_spki(truncated), CellKeyError);
  std::vector<std::uint8_t> small(128, 0xab);  // 1024 bits
  EXPECT_THROW(edge::hsm::parse_rsa_spki(edge::hsm::encode_rsa_spki(small, e)), CellKeyError);
  const std::vector<std::uint8_t> even = {0x01, 0x00, 0x00};
  EXPECT_THROW(edge::hsm::parse_rsa_spki(edge::hsm::encode_rsa_spki(n, even)), CellKeyError);
  std::vector<std::uint8_t> other_alg = der;
  other_alg[12] = 0x0b;  // another OID arc
  EXPECT_THROW(edge::hsm::parse_rsa_spki(other_alg), CellKeyError);
  EXPECT_THROW(edge::hsm::parse_rsa_spki({}), CellKeyError);
}

TEST(CellSpki, AnIdentityIsTwoSpkisAndSplitsBackOnlyWhenWellFormed) {
  std::vector<std::uint8_t> n1(256, 0xab), n2(256, 0xcd);
  n1[0] = 0xc1;
  n2[0] = 0xd3;
  const std::vector<std::uint8_t> e = {0x01, 0x00, 0x01};
  TransportPublicKey k;
  k.spki = edge::hsm::encode_rsa_spki(n1, e);
  k.signing_spki = edge::hsm::encode_rsa_spki(n2, e);
  const std::vector<std::uint8_t> id = k.identity();
  EXPECT_EQ(id.size(), 2 * 294u);
  const auto parts = edge::hsm::split_identity(id);
  EXPECT_EQ(parts.transport_spki, k.spki);
  EXPECT_EQ(parts.signing_spki, k.signing_spki);
  EXPECT_THAT(edge::hsm::identity_fingerprint(id), ::testing::MatchesRegex("sha256:[0-9a-f]{64}"));
  EXPECT_NE(edge::hsm::identity_fingerprint(id), edge::hsm::identity_fingerprint(k.spki));

  EXPECT_THROW(edge::hsm::split_identity(k.spki), CellKeyError) << "no signing key";
  std::vector<std::uint8_t> cut(id.begin(), id.end() - 1);
  EXPECT_THROW(edge::hsm::split_identity(cut), CellKeyError);
  std::vector<std::uint8_t> three = id;
  three.insert(three.end(), k.spki.begin(), k.spki.end());
  EXPECT_THROW(edge::hsm::split_identity(three), CellKeyError) << "a third key";
  EXPECT_THROW(edge::hsm::split_identity({}), CellKeyError);
}

TEST(CellRecord, EncodesDecodesAndRefusesEveryMalformedInput) {
  VersionRecord r;
  r.set = "sipflow";
  r.version = 7;
  r.created = 1700000000;
  r.retain = 3;
  for (std::size_t i = 0; i < r.check_mac.size(); ++i) r.check_mac[i] = static_cast<std::uint8_t>(i * 7 + 1);
  r.origin = kMemberA;
  r.signature.assign(256, 0x5a);
  const std::vector<std::uint8_t> enc = edge::hsm::encode_record(r);
  const auto back = edge::hsm::decode_record(enc);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->set, r.set);
  EXPECT_EQ(back->version, r.version);
  EXPECT_EQ(back->created, r.created);
  EXPECT_EQ(back->retain, r.retain);
  EXPECT_EQ(back->check_mac, r.check_mac);
  EXPECT_EQ(back->origin, r.origin);
  EXPECT_EQ(back->signature, r.signature);
  EXPECT_EQ(edge::hsm::encode_record(*back), enc);
  EXPECT_EQ(r.check_value(), "01080f161d242b32");
  // The signed bytes: context with its NUL, then the body (the record without its signature).
  const auto signed_bytes = edge::hsm::record_signed_bytes(r);
  const std::string ctx("edge cell version record v1\0", 28);
  ASSERT_GT(signed_bytes.size(), ctx.size());
  EXPECT_EQ(std::string(signed_bytes.begin(), signed_bytes.begin() + 28), ctx);
  EXPECT_EQ(signed_bytes.size(), 28 + enc.size() - 2 - 256);

  // Every proper prefix is malformed.
  for (std::size_t n = 0; n < enc.size(); ++n)
    EXPECT_FALSE(edge::hsm::decode_record(std::span(enc.data(), n)).has_value()) << "prefix of " << n;
  std::vector<std::uint8_t> trailing = enc;
  trailing.push_back(0);
  EXPECT_FALSE(edge::hsm::decode_record(trailing).has_value());
  std::vector<std::uint8_t> magic = enc;
  magic[3] = '2';
  EXPECT_FALSE(edge::hsm::decode_record(magic).has_value());
  std::vector<std::uint8_t> huge_set = enc;
  huge_set[4] = 0xff;  // set length 0xff07: beyond the input
  EXPECT_FALSE(edge::hsm::decode_record(huge_set).has_value());
  std::vector<std::uint8_t> bad_name = enc;
  bad_name[6] = '/';  // "/ipflow" is no key set name
  EXPECT_FALSE(edge::hsm::decode_record(bad_name).has_value());
  VersionRecord v0 = r;
  v0.version = 0;
  EXPECT_FALSE(edge::hsm::decode_record(edge::hsm::encode_record(v0)).has_value());
  VersionRecord unsigned_record = r;
  unsigned_record.signature.clear();
  EXPECT_FALSE(edge::hsm::decode_record(edge::hsm::encode_record(unsigned_record)).has_value());
  VersionRecord bad_origin = r;
  bad_origin.origin = "no/slash";
  EXPECT_FALSE(edge::hsm::decode_record(edge::hsm::encode_record(bad_origin)).has_value());
  std::vector<std::uint8_t> garbage(600);
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<std::uint8_t>(i * 131 + 17);
  EXPECT_FALSE(edge::hsm::decode_record(garbage).has_value());
  std::vector<std::uint8_t> ones(600, 0xff);
  std::copy(enc.begin(), enc.begin() + 4, ones.begin());
  EXPECT_FALSE(edge::hsm::decode_record(ones).has_value());
}

TEST_F(CellKeysTest, IdentityIsTwoPairsWithTheirPoliciesAndItsFingerprintIsStable) {
  CellKeys ca(*a_);
  EXPECT_FALSE(ca.has_transport_key());
  const TransportPublicKey k = ca.create_transport_key();
  EXPECT_TRUE(ca.has_transport_key());
  EXPECT_THAT(k.fingerprint, ::testing::MatchesRegex("sha256:[0-9a-f]{64}"));
  EXPECT_EQ(k.fingerprint, edge::hsm::identity_fingerprint(k.identity())) << "HSM and software agree";
  EXPECT_EQ(ca.transport_public_key().fingerprint, k.fingerprint);
  EXPECT_EQ(ca.transport_public_key().identity(), k.identity());
  EXPECT_EQ(edge::hsm::parse_rsa_spki(k.spki).modulus.size(), 256u);
  EXPECT_EQ(edge::hsm::parse_rsa_spki(k.signing_spki).modulus.size(), 256u);
  EXPECT_NE(k.spki, k.signing_spki) << "two pairs";
  EXPECT_THROW(ca.create_transport_key(), CellKeyError);

  Raw raw(token_, token_.label());
  const auto priv = raw.find(CKO_PRIVATE_KEY, "cell/transport");
  ASSERT_EQ(priv.size(), 1u);
  EXPECT_TRUE(raw.get_bool(priv[0], CKA_SENSITIVE));
  EXPECT_FALSE(raw.get_bool(priv[0], CKA_EXTRACTABLE));
  EXPECT_TRUE(raw.get_bool(priv[0], CKA_UNWRAP));
  EXPECT_FALSE(raw.get_bool(priv[0], CKA_DECRYPT));
  EXPECT_FALSE(raw.get_bool(priv[0], CKA_SIGN));
  EXPECT_FALSE(raw.get_bool(priv[0], CKA_MODIFIABLE));
  const auto sign = raw.find(CKO_PRIVATE_KEY, "cell/sign");
  ASSERT_EQ(sign.size(), 1u);
  EXPECT_TRUE(raw.get_bool(sign[0], CKA_SENSITIVE));
  EXPECT_FALSE(raw.get_bool(sign[0], CKA_EXTRACTABLE));
  EXPECT_TRUE(raw.get_bool(sign[0], CKA_SIGN));
  EXPECT_FALSE(raw.get_bool(sign[0], CKA_DECRYPT));
  EXPECT_FALSE(raw.get_bool(sign[0], CKA_UNWRAP));
  EXPECT_FALSE(raw.get_bool(sign[0], CKA_DERIVE));
  EXPECT_FALSE(raw.get_bool(sign[0], CKA_MODIFIABLE));
  const auto sign_pub = raw.find(CKO_PUBLIC_KEY, "cell/sign");
  ASSERT_EQ(sign_pub.size(), 1u);
  EXPECT_TRUE(raw.get_bool(sign_pub[0], CKA_VERIFY));
  EXPECT_FALSE(raw.get_bool(sign_pub[0], CKA_WRAP));
  EXPECT_FALSE(raw.get_bool(sign_pub[0], CKA_ENCRYPT));
}

TEST_F(CellKeysTest, SignaturesVerifyOnlyUnderTheTrustedVerifyKeyOfTheMember) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const std::vector<std::uint8_t> data = edge::test::sample_data(64);
  const std::vector<std::uint8_t> sig = ca.sign(data);
  EXPECT_EQ(sig.size(), 256u);
  EXPECT_TRUE(cb.verify(kMemberA, data, sig));
  EXPECT_TRUE(ca.verify(kMemberA, data, sig)) << "A admitted itself";
  EXPECT_FALSE(cb.verify(kMemberB, data, sig)) << "not B's signature";
  std::vector<std::uint8_t> changed = data;
  changed[0] ^= 1;
  EXPECT_FALSE(cb.verify(kMemberA, changed, sig));
  std::vector<std::uint8_t> bad_sig = sig;
  bad_sig[10] ^= 1;
  EXPECT_FALSE(cb.verify(kMemberA, data, bad_sig));
  EXPECT_FALSE(cb.verify(kMemberA, data, {})) << "empty signature";
  EXPECT_THROW(cb.verify(kMemberC, data, sig), CellKeyError) << "unknown member";
  EXPECT_THROW(cb.verify("no/slash", data, sig), CellKeyError);
  auto listed = cb.peers();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].member, kMemberA);
  EXPECT_TRUE(listed[0].trusted);
  EXPECT_EQ(listed[0].fingerprint, pub_a_.fingerprint);
  EXPECT_EQ(listed[1].fingerprint, pub_b_.fingerprint);

  // A PIN holder plants C's look-alike verify key on B with C's (here: B's own) public key:
  // not trusted, so never used, and C stays unknown.
  {
    Raw raw(token_, kMemberB);
    const auto parts = edge::hsm::parse_rsa_spki(pub_b_.signing_spki);
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    const std::string label = std::string("cell/peer/") + kMemberC + "/sign";
    std::vector<std::uint8_t> id = {'E', 'C', 'V', '1'};
    id.insert(id.end(), kMemberC, kMemberC + std::string_view(kMemberC).size());
    std::vector<CK_ATTRIBUTE> t = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &no, sizeof no},
        {CKA_VERIFY, &yes, sizeof yes},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        {CKA_ID, id.data(), id.size()},
        {CKA_MODULUS, const_cast<std::uint8_t*>(parts.modulus.data()), parts.modulus.size()},
        {CKA_PUBLIC_EXPONENT, const_cast<std::uint8_t*>(parts.exponent.data()), parts.exponent.size()},
    };
    ASSERT_EQ(raw.create(t), CKR_OK);
  }
  const std::vector<std::uint8_t> b_sig = cb.sign(data);
  EXPECT_TRUE(cb.verify(kMemberB, data, b_sig));
  EXPECT_THAT([&] { cb.verify(kMemberC, data, b_sig); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("no trusted verify key")));
  listed = cb.peers();
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[2].member, kMemberC);
  EXPECT_FALSE(listed[2].trusted);

  // remove_peer removes both objects: A is no longer trusted on B.
  EXPECT_TRUE(cb.remove_peer(kMemberA));
  EXPECT_FALSE(cb.remove_peer(kMemberA));
  EXPECT_THROW(cb.verify(kMemberA, data, sig), CellKeyError);
  EXPECT_TRUE(Raw(token_, kMemberB).find(CKO_PUBLIC_KEY, std::string("cell/peer/") + kMemberA).empty());
  EXPECT_TRUE(
      Raw(token_, kMemberB).find(CKO_PUBLIC_KEY, std::string("cell/peer/") + kMemberA + "/sign").empty());
}

TEST_F(CellKeysTest, AVersionReachesTheOtherHsmOnlyWrappedAndBothCopiesKeepThePolicy) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const VersionRecord rec = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  const std::string kcv = rec.check_value();
  EXPECT_THAT(kcv, ::testing::MatchesRegex("[0-9a-f]{16}"));
  EXPECT_EQ(ca.check_value("sipflow", 1), kcv);
  EXPECT_EQ(rec.origin, kMemberA);

  const std::vector<std::uint8_t> blob = ca.wrap_version_for("sipflow", 1, kMemberB);
  EXPECT_EQ(blob.size(), 256u) << "RSA-2048 OAEP";
  cb.import_version(rec, blob);
  EXPECT_EQ(cb.check_value("sipflow", 1), kcv) << "the same key value on both HSMs";
  EXPECT_THROW(cb.import_version(rec, blob), CellKeyError) << "imported twice";

  Raw raw(token_, kMemberB);
  const auto verify = raw.find(CKO_SECRET_KEY, "sipflow/v1");
  ASSERT_EQ(verify.size(), 1u);
  EXPECT_TRUE(raw.get_bool(verify[0], CKA_SENSITIVE));
  EXPECT_FALSE(raw.get_bool(verify[0], CKA_EXTRACTABLE));
  EXPECT_TRUE(raw.get_bool(verify[0], CKA_SIGN));
  EXPECT_TRUE(raw.get_bool(verify[0], CKA_VERIFY));
  EXPECT_FALSE(raw.get_bool(verify[0], CKA_ENCRYPT));
  EXPECT_FALSE(raw.get_bool(verify[0], CKA_WRAP));
  EXPECT_FALSE(raw.get_bool(verify[0], CKA_LOCAL)) << "unwrapped, as SoftHSM reports it";
  const auto escrow = raw.find(CKO_SECRET_KEY, "sipflow/v1/escrow");
  ASSERT_EQ(escrow.size(), 1u);
  EXPECT_TRUE(raw.get_bool(escrow[0], CKA_SENSITIVE));
  EXPECT_TRUE(raw.get_bool(escrow[0], CKA_EXTRACTABLE));
  EXPECT_TRUE(raw.get_bool(escrow[0], CKA_WRAP_WITH_TRUSTED));
  EXPECT_FALSE(raw.get_bool(escrow[0], CKA_SIGN));
  EXPECT_FALSE(raw.get_bool(escrow[0], CKA_VERIFY));
  EXPECT_FALSE(raw.get_bool(escrow[0], CKA_MODIFIABLE));
  // A user-PIN holder cannot loosen either copy: the verify copy never becomes extractable,
  // the escrow copy is not modifiable at all (and CKA_WRAP_WITH_TRUSTED only goes to true).
  EXPECT_NE(raw.set_bool(verify[0], CKA_EXTRACTABLE, true), CKR_OK);
  EXPECT_NE(raw.set_bool(verify[0], CKA_WRAP_WITH_TRUSTED, false), CKR_OK);
  EXPECT_NE(raw.set_bool(escrow[0], CKA_WRAP_WITH_TRUSTED, false), CKR_OK);
  EXPECT_NE(raw.set_bool(escrow[0], CKA_SIGN, true), CKR_OK);
  EXPECT_FALSE(raw.get_bool(verify[0], CKA_EXTRACTABLE));
  EXPECT_TRUE(raw.get_bool(escrow[0], CKA_WRAP_WITH_TRUSTED));
  // Nothing of ours can be read in clear, and the generated session key on A is gone.
  EXPECT_FALSE(raw.value_readable(verify[0]));
  EXPECT_FALSE(raw.value_readable(escrow[0]));
  EXPECT_EQ(Raw(token_, token_.label()).find(CKO_SECRET_KEY, "").size(), 2u)
      << "A: verify + escrow copy only";
  // The record is stored on both, public data.
  EXPECT_EQ(raw.find(CKO_DATA, "cell/record/sipflow/v1").size(), 1u);
  EXPECT_EQ(Raw(token_, token_.label()).find(CKO_DATA, "cell/record/sipflow/v1").size(), 1u);
}

TEST_F(CellKeysTest, TheRecordRoundTripsThroughTheTokenAndItsSignatureVerifiesInTheOtherHsm) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const VersionRecord rec = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  EXPECT_EQ(rec.set, "sipflow");
  EXPECT_EQ(rec.version, 1u);
  EXPECT_EQ(rec.created, 1700000000);
  EXPECT_EQ(rec.retain, 3u);
  EXPECT_EQ(rec.signature.size(), 256u);
  const auto decoded = edge::hsm::decode_record(edge::hsm::encode_record(rec));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(edge::hsm::encode_record(*decoded), edge::hsm::encode_record(rec));
  const auto stored = ca.record("sipflow", 1);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(edge::hsm::encode_record(*stored), edge::hsm::encode_record(rec));
  EXPECT_FALSE(ca.record("sipflow", 2).has_value());
  // B's HSM checks A's signature over the record (as import does) under A's trusted key.
  EXPECT_TRUE(cb.verify(kMemberA, edge::hsm::record_signed_bytes(rec), rec.signature));
  VersionRecord other = rec;
  other.version = 2;
  EXPECT_FALSE(cb.verify(kMemberA, edge::hsm::record_signed_bytes(other), rec.signature));

  cb.import_version(*decoded, ca.wrap_version_for("sipflow", 1, kMemberB));
  const auto on_b = cb.record("sipflow", 1);
  ASSERT_TRUE(on_b.has_value());
  EXPECT_EQ(edge::hsm::encode_record(*on_b), edge::hsm::encode_record(rec));
  EXPECT_EQ(cb.check_value("sipflow", 1), rec.check_value());
}

TEST_F(CellKeysTest, ARecordWithAFieldChangedAfterSigningIsRefusedAndNothingIsKept) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const VersionRecord rec = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  const std::vector<std::uint8_t> blob = ca.wrap_version_for("sipflow", 1, kMemberB);
  std::vector<VersionRecord> changed(5, rec);
  changed[0].retain = 9;
  changed[1].created += 1;
  changed[2].check_mac[0] ^= 1;
  changed[3].origin = kMemberB;  // B trusts itself, but B did not sign it
  changed[4].signature[20] ^= 1;
  for (const VersionRecord& r : changed) {
    EXPECT_THAT([&] { cb.import_version(r, blob); },
                ::testing::ThrowsMessage<CellKeyError>(HasSubstr("refused, nothing kept")));
  }
  VersionRecord v2 = rec;
  v2.version = 2;
  EXPECT_THROW(cb.import_version(v2, blob), CellKeyError);
  Raw raw(token_, kMemberB);
  EXPECT_TRUE(raw.find(CKO_SECRET_KEY, "").empty()) << "no key of a refused import is left on B";
  EXPECT_TRUE(raw.find(CKO_DATA, "").empty()) << "no record of a refused import is left on B";
  EXPECT_THROW(b_->keysets().get("sipflow"), edge::hsm::HsmError);
  cb.import_version(rec, blob);
  EXPECT_EQ(cb.check_value("sipflow", 1), rec.check_value());
}

TEST_F(CellKeysTest, ARecordSignedByAnUntrustedOrUnknownMemberIsRefused) {
  admit_both();
  // A third member C: its own HSM, admitted by its own SO, trusting B, but not trusted by B.
  Hsm hc(config_of(kMemberC));
  CellKeys cc(hc), cb(*b_);
  const TransportPublicKey pub_c = cc.create_transport_key();
  ASSERT_EQ(trust(kMemberC, kMemberC, pub_c, pub_c.fingerprint).exit_code, 0);
  ASSERT_EQ(trust(kMemberC, kMemberB, pub_b_, pub_b_.fingerprint).exit_code, 0);
  const VersionRecord rec = cc.generate_version(kMemberC, "sipflow", 1, 1700000000, 3);
  const std::vector<std::uint8_t> blob = cc.wrap_version_for("sipflow", 1, kMemberB);
  EXPECT_THAT([&] { cb.import_version(rec, blob); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("no trusted verify key")));
  // C's record presented as A's (A is trusted on B): A's key does not verify C's signature.
  VersionRecord as_a = rec;
  as_a.origin = kMemberA;
  EXPECT_THAT([&] { cb.import_version(as_a, blob); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("is not signed by member 'member-a'")));
  // A record A really signed, but the blob is C's key: the MAC check refuses it.
  VersionRecord signed_by_a = rec;
  signed_by_a.origin = kMemberA;
  signed_by_a.signature = CellKeys(*a_).sign(edge::hsm::record_signed_bytes(signed_by_a));
  EXPECT_TRUE(cb.verify(kMemberA, edge::hsm::record_signed_bytes(signed_by_a), signed_by_a.signature));
  VersionRecord wrong_mac = signed_by_a;
  wrong_mac.check_mac[5] ^= 0x40;
  wrong_mac.signature = CellKeys(*a_).sign(edge::hsm::record_signed_bytes(wrong_mac));
  EXPECT_THAT([&] { cb.import_version(wrong_mac, blob); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("is not the key of the signed record")));
  Raw raw(token_, kMemberB);
  EXPECT_TRUE(raw.find(CKO_SECRET_KEY, "").empty());
  EXPECT_TRUE(raw.find(CKO_DATA, "").empty());
  EXPECT_EQ(b_->status().state, edge::hsm::HsmState::available);
}

TEST_F(CellKeysTest, AnImportedVersionMintsAndVerifiesThroughKeySetMacOnBothHsms) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const VersionRecord rec = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  cb.import_version(rec, ca.wrap_version_for("sipflow", 1, kMemberB));
  for (Hsm* h : {a_.get(), b_.get()}) {
    const auto info = h->keysets().get("sipflow");
    ASSERT_EQ(info.versions.size(), 1u);
    EXPECT_EQ(info.versions[0].version, 1u);
    EXPECT_EQ(info.versions[0].state, KeyState::active);
    EXPECT_TRUE(info.versions[0].minting);
    EXPECT_EQ(info.versions[0].origin, kMemberA);
    EXPECT_TRUE(info.refused.empty());
  }
  auto mac_a = a_->mac_for("sipflow");
  auto mac_b = b_->mac_for("sipflow");
  EXPECT_EQ(mac_b->minting_version(), 1u);
  const auto data = edge::test::sample_data();
  MacTag ta{}, tb{};
  ASSERT_EQ(mac_a->sign(1, data, ta), MacStatus::ok);
  ASSERT_EQ(mac_b->sign(1, data, tb), MacStatus::ok);
  EXPECT_EQ(ta, tb) << "the same key on both HSMs";
  EXPECT_EQ(mac_b->verify(1, data, ta), MacStatus::ok) << "A's MAC verifies on B";
  EXPECT_EQ(mac_a->verify(1, data, tb), MacStatus::ok);
  auto other = data;
  other[0] ^= 1;
  EXPECT_EQ(mac_b->verify(1, other, ta), MacStatus::mismatch);

  // edge-hsm keyset list shows the origin.
  const auto listed =
      edge::test::run_command({EDGE_HSM_TOOL, "--module", edge::test::softhsm_module_path(), "--token",
                               kMemberB, "--pin-file", token_.pin_file().string(), "keyset", "list"},
                              token_.child_env());
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("sipflow v1 active minting"));
  EXPECT_THAT(listed.out, HasSubstr("origin=member-a"));
  const auto json = edge::test::run_command(
      {EDGE_HSM_TOOL, "--module", edge::test::softhsm_module_path(), "--token", kMemberB, "--pin-file",
       token_.pin_file().string(), "keyset", "list", "--json"},
      token_.child_env());
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"origin\":\"member-a\""));

  // Retired: listed as retired (origin kept), signs and verifies nothing.
  b_->keysets().retire("sipflow", 1);
  const auto retired = b_->keysets().get("sipflow");
  ASSERT_EQ(retired.versions.size(), 1u);
  EXPECT_EQ(retired.versions[0].state, KeyState::retired);
  EXPECT_EQ(retired.versions[0].origin, kMemberA);
  mac_b->refresh();
  EXPECT_EQ(mac_b->sign(1, data, tb), MacStatus::retired_version);
  EXPECT_EQ(mac_b->verify(1, data, ta), MacStatus::retired_version);
}

TEST_F(CellKeysTest, AKeyPlantedWithAKnownValueNextToOrInsteadOfAnImportedOneIsNeverUsed) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const VersionRecord rec = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  cb.import_version(rec, ca.wrap_version_for("sipflow", 1, kMemberB));
  const auto data = edge::test::sample_data();
  MacTag genuine{};
  ASSERT_EQ(a_->mac_for("sipflow")->sign(1, data, genuine), MacStatus::ok);

  // Next to it: same label and CKA_ID, a value the planter knows, planted as the user.
  const MacTag forged = to_tag(Raw(token_, kMemberB).plant("sipflow/v1", version_id("sipflow", 1), data));
  ASSERT_NE(forged, genuine);
  {
    Hsm hb(config_of(kMemberB));  // a fresh process view: nothing cached
    const auto info = hb.keysets().get("sipflow");
    ASSERT_EQ(info.versions.size(), 1u);
    EXPECT_EQ(info.versions[0].origin, kMemberA);
    ASSERT_EQ(info.refused.size(), 1u);
    EXPECT_EQ(info.refused[0].version, 1u);
    EXPECT_THAT(info.refused[0].reason, HasSubstr("HMAC"));
    ASSERT_EQ(hb.keysets().list().size(), 1u);
    auto mac = hb.mac_for("sipflow");
    // The first use re-finds the key by label and ID (both objects match): only the
    // imported key is taken, so the planted value neither verifies nor mints.
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(mac->verify(1, data, forged), MacStatus::mismatch) << "a forged MAC verified";
      EXPECT_EQ(mac->verify(1, data, genuine), MacStatus::ok);
      MacTag t{};
      ASSERT_EQ(mac->sign(1, data, t), MacStatus::ok);
      EXPECT_EQ(t, genuine) << "minted with a key someone knows";
    }
  }
  // Instead of it: the user destroys the imported key; the planted one stays refused. A
  // KeySetMac that has the imported key's handle cached (refreshed while it existed) finds
  // the planted key by label and ID on its next use (the per-message re-find) and refuses it.
  auto old = b_->mac_for("sipflow");
  {
    MacTag t{};
    ASSERT_EQ(old->sign(1, data, t), MacStatus::ok);
    EXPECT_EQ(t, genuine);
  }
  {
    Raw raw(token_, kMemberB);
    // Destroy every sipflow/v1 key, then plant the known value again, alone.
    for (CK_OBJECT_HANDLE h : raw.find(CKO_SECRET_KEY, "sipflow/v1")) ASSERT_EQ(raw.destroy(h), CKR_OK);
    EXPECT_EQ(to_tag(raw.plant("sipflow/v1", version_id("sipflow", 1), data)), forged);
  }
  Hsm hb(config_of(kMemberB));
  EXPECT_THAT([&] { hb.keysets().get("sipflow"); },
              ::testing::ThrowsMessage<edge::hsm::HsmError>(HasSubstr("HMAC")));
  EXPECT_TRUE(hb.keysets().list().empty());
  auto mac = hb.mac_for("sipflow");
  EXPECT_EQ(mac->minting_version(), 0u);
  EXPECT_EQ(mac->verify(1, data, forged), MacStatus::unknown_version) << "a forged MAC verified";
  MacTag t{};
  EXPECT_EQ(mac->sign(1, data, t), MacStatus::unknown_version) << "minted with a key someone knows";
  const std::uint64_t finds = b_->counters().find.load();
  EXPECT_EQ(old->verify(1, data, forged), MacStatus::unknown_version) << "the re-find took the planted key";
  EXPECT_GT(b_->counters().find.load(), finds) << "the stale handle made it look the key up again";
  EXPECT_EQ(old->sign(1, data, t), MacStatus::unknown_version);
  old->refresh();
  EXPECT_EQ(old->verify(1, data, forged), MacStatus::unknown_version);
  EXPECT_EQ(old->minting_version(), 0u);
}

TEST_F(CellKeysTest, DestroyVersionLeavesNothingAndIsIdempotent) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const VersionRecord rec = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  cb.import_version(rec, ca.wrap_version_for("sipflow", 1, kMemberB));
  cb.destroy_version("sipflow", 1);
  Raw raw(token_, kMemberB);
  EXPECT_TRUE(raw.find(CKO_SECRET_KEY, "").empty());
  EXPECT_TRUE(raw.find(CKO_DATA, "").empty());
  EXPECT_FALSE(cb.record("sipflow", 1).has_value());
  EXPECT_NO_THROW(cb.destroy_version("sipflow", 1));
  EXPECT_THROW(b_->keysets().get("sipflow"), edge::hsm::HsmError);
  // Destroyed, it can be imported again (the blob is A's, still valid).
  cb.import_version(rec, ca.wrap_version_for("sipflow", 1, kMemberB));
  EXPECT_EQ(cb.check_value("sipflow", 1), rec.check_value());
  ca.destroy_version("sipflow", 1);
  EXPECT_TRUE(Raw(token_, token_.label()).find(CKO_SECRET_KEY, "").empty());
  EXPECT_TRUE(Raw(token_, token_.label()).find(CKO_DATA, "").empty());
  EXPECT_THROW(ca.wrap_version_for("sipflow", 1, kMemberB), CellKeyError);
}

TEST_F(CellKeysTest, NothingIsWrappedForAMemberTheSoHasNotAdmitted) {
  CellKeys ca(*a_), cb(*b_);
  pub_a_ = ca.create_transport_key();
  pub_b_ = cb.create_transport_key();
  // Before its SO admitted this member's own key, A cannot even make a version.
  EXPECT_THAT([&] { ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("has no trusted transport key")));
  ASSERT_EQ(trust(token_.label(), kMemberA, pub_a_, pub_a_.fingerprint).exit_code, 0);
  const std::string kcv = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3).check_value();
  EXPECT_THAT([&] { ca.wrap_version_for("sipflow", 1, kMemberB); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("has no trusted transport key")));

  // A user-PIN holder creates B's public key on A as a wrap key with our label and ID: the
  // user cannot make it trusted, the HSM refuses to wrap the escrow copy under it, and the
  // edge does not use it.
  const std::string label = std::string("cell/peer/") + kMemberB;
  {
    Raw raw(token_, token_.label());
    const auto parts = edge::hsm::parse_rsa_spki(pub_b_.spki);
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    std::vector<std::uint8_t> id = {'E', 'C', 'P', '1'};
    id.insert(id.end(), kMemberB, kMemberB + std::string_view(kMemberB).size());
    std::vector<CK_ATTRIBUTE> t = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &no, sizeof no},
        {CKA_WRAP, &yes, sizeof yes},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        {CKA_ID, id.data(), id.size()},
        {CKA_MODULUS, const_cast<std::uint8_t*>(parts.modulus.data()), parts.modulus.size()},
        {CKA_PUBLIC_EXPONENT, const_cast<std::uint8_t*>(parts.exponent.data()), parts.exponent.size()},
    };
    std::vector<CK_ATTRIBUTE> trusted = t;
    trusted.push_back({CKA_TRUSTED, &yes, sizeof yes});
    EXPECT_EQ(raw.create(trusted), CKR_ATTRIBUTE_READ_ONLY) << "only the SO sets CKA_TRUSTED";
    EXPECT_EQ(raw.create(t), CKR_OK);
    const auto escrow = raw.find(CKO_SECRET_KEY, "sipflow/v1/escrow");
    const auto planted = raw.find(CKO_PUBLIC_KEY, label);
    ASSERT_EQ(escrow.size(), 1u);
    ASSERT_EQ(planted.size(), 1u);
    EXPECT_EQ(raw.wrap_oaep(planted[0], escrow[0]), CKR_KEY_NOT_WRAPPABLE) << "the HSM's own refusal";
  }
  EXPECT_THROW(ca.wrap_version_for("sipflow", 1, kMemberB), CellKeyError);
  auto listed = ca.peers();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].member, kMemberA);
  EXPECT_TRUE(listed[0].trusted);
  EXPECT_EQ(listed[0].fingerprint, pub_a_.fingerprint);
  EXPECT_EQ(listed[1].member, kMemberB);
  EXPECT_FALSE(listed[1].trusted);

  // The SO admits B only with the fingerprint the operator compared, and once.
  const auto wrong = trust(token_.label(), kMemberB, pub_b_, pub_a_.fingerprint);
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_THAT(wrong.err, HasSubstr("not admitted"));
  EXPECT_THROW(ca.wrap_version_for("sipflow", 1, kMemberB), CellKeyError);
  ASSERT_EQ(trust(token_.label(), kMemberB, pub_b_, pub_b_.fingerprint).exit_code, 0);
  EXPECT_EQ(ca.wrap_version_for("sipflow", 1, kMemberB).size(), 256u)
      << "the trusted key, not the planted one";
  const auto again = trust(token_.label(), kMemberB, pub_b_, pub_b_.fingerprint);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("admitted already"));
  EXPECT_EQ(ca.check_value("sipflow", 1), kcv);
}

TEST_F(CellKeysTest, AdmissionRefusesAMalformedKeyAndAnInvalidMemberId) {
  CellKeys cb(*b_);
  pub_b_ = cb.create_transport_key();
  TransportPublicKey cut = pub_b_;
  cut.signing_spki.pop_back();
  const auto truncated = trust(token_.label(), kMemberB, cut, pub_b_.fingerprint);
  EXPECT_EQ(truncated.exit_code, 1) << truncated.err;
  EXPECT_THAT(truncated.err, HasSubstr("malformed public key"));
  TransportPublicKey transport_only = pub_b_;
  transport_only.signing_spki.clear();
  const auto one_key = trust(token_.label(), kMemberB, transport_only, pub_b_.fingerprint);
  EXPECT_EQ(one_key.exit_code, 1) << one_key.err;
  EXPECT_THAT(one_key.err, HasSubstr("no signing public key"));
  TransportPublicKey same = pub_b_;
  same.signing_spki = same.spki;
  const auto reused = trust(token_.label(), kMemberB, same, edge::hsm::identity_fingerprint(same.identity()));
  EXPECT_EQ(reused.exit_code, 1) << reused.err;
  EXPECT_THAT(reused.err, HasSubstr("one key for both"));
  const auto bad_id = trust(token_.label(), "no/slash", pub_b_, pub_b_.fingerprint);
  EXPECT_EQ(bad_id.exit_code, 2) << bad_id.err;
  EXPECT_TRUE(CellKeys(*a_).peers().empty());
}

TEST_F(CellKeysTest, ABlobWithAChangedBitLeavesNothingBehind) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const VersionRecord rec = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  const std::vector<std::uint8_t> blob = ca.wrap_version_for("sipflow", 1, kMemberB);
  // One changed bit and OAEP refuses the blob.
  std::vector<std::uint8_t> flipped = blob;
  flipped[100] ^= 0x01;
  EXPECT_THAT([&] { cb.import_version(rec, flipped); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("does not unwrap")));
  EXPECT_THROW(cb.import_version(rec, {}), CellKeyError);
  EXPECT_EQ(b_->status().state, edge::hsm::HsmState::available) << "a bad blob is no fault of the HSM";
  Raw raw(token_, kMemberB);
  EXPECT_TRUE(raw.find(CKO_SECRET_KEY, "").empty()) << "nothing of the refused imports is left on B";
  EXPECT_TRUE(raw.find(CKO_DATA, "").empty());
  // The genuine one still imports.
  cb.import_version(rec, blob);
  EXPECT_EQ(cb.check_value("sipflow", 1), rec.check_value());
}

}  // namespace
