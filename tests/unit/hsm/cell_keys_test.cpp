// Cell key transfer between two HSMs (issue 15, HSM layer): two real SoftHSM tokens are two
// members. A version generated on A reaches B only wrapped under B's transport key, after A's SO
// admitted B; both copies on B have the attributes the design promises; nothing is wrapped for a
// member the SO did not admit (the HSM itself refuses); a blob with another check value or a
// changed bit leaves nothing behind; admission is one edge-hsm run with the SO PIN.
#include <edge/hsm/cell_keys.h>
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
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
using edge::hsm::TransportPublicKey;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;

constexpr const char* kMemberA = "member-a";
constexpr const char* kMemberB = "member-b";

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
    a_ = std::make_unique<Hsm>(token_.config());
    edge::hsm::HsmConfig cb = token_.config();
    cb.token.label = kMemberB;
    b_ = std::make_unique<Hsm>(cb);
    so_pin_file_ = token_.dir() / "so.pin";
    edge::test::write_file(so_pin_file_, token_.so_pin() + "\n");
  }

  // `edge-hsm cell trust MEMBER` on the token `label` as its SO, in its own process.
  edge::test::CommandResult trust(const std::string& label, const std::string& member,
                                  const TransportPublicKey& k, const std::string& fp) {
    const auto der = token_.dir() / "member-pub.der";
    edge::test::write_file(der, std::string(k.spki.begin(), k.spki.end()), 0644);
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

TEST_F(CellKeysTest, TransportKeyIsUnwrapOnlyNeverExtractableAndItsFingerprintIsStable) {
  CellKeys ca(*a_);
  EXPECT_FALSE(ca.has_transport_key());
  const TransportPublicKey k = ca.create_transport_key();
  EXPECT_TRUE(ca.has_transport_key());
  EXPECT_THAT(k.fingerprint, ::testing::MatchesRegex("sha256:[0-9a-f]{64}"));
  EXPECT_EQ(ca.transport_public_key().fingerprint, k.fingerprint);
  EXPECT_EQ(edge::hsm::parse_rsa_spki(k.spki).modulus.size(), 256u);
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
}

TEST_F(CellKeysTest, AVersionReachesTheOtherHsmOnlyWrappedAndBothCopiesKeepThePolicy) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const std::string kcv = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  EXPECT_THAT(kcv, ::testing::MatchesRegex("[0-9a-f]{16}"));
  EXPECT_EQ(ca.check_value("sipflow", 1), kcv);

  const std::vector<std::uint8_t> blob = ca.wrap_version_for("sipflow", 1, kMemberB);
  EXPECT_EQ(blob.size(), 256u) << "RSA-2048 OAEP";
  cb.import_version("sipflow", 1, 1700000000, 3, blob, kcv);
  EXPECT_EQ(cb.check_value("sipflow", 1), kcv) << "the same key value on both HSMs";
  EXPECT_THROW(cb.import_version("sipflow", 1, 1700000000, 3, blob, kcv), CellKeyError) << "imported twice";

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
}

TEST_F(CellKeysTest, NothingIsWrappedForAMemberTheSoHasNotAdmitted) {
  CellKeys ca(*a_), cb(*b_);
  pub_a_ = ca.create_transport_key();
  pub_b_ = cb.create_transport_key();
  // Before its SO admitted this member's own key, A cannot even make a version.
  EXPECT_THAT([&] { ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("has no trusted transport key")));
  ASSERT_EQ(trust(token_.label(), kMemberA, pub_a_, pub_a_.fingerprint).exit_code, 0);
  const std::string kcv = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
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
  cut.spki.pop_back();
  const auto truncated = trust(token_.label(), kMemberB, cut, pub_b_.fingerprint);
  EXPECT_EQ(truncated.exit_code, 1) << truncated.err;
  EXPECT_THAT(truncated.err, HasSubstr("malformed public key"));
  const auto bad_id = trust(token_.label(), "no/slash", pub_b_, pub_b_.fingerprint);
  EXPECT_EQ(bad_id.exit_code, 2) << bad_id.err;
  EXPECT_TRUE(CellKeys(*a_).peers().empty());
}

TEST_F(CellKeysTest, ABlobWithAnotherCheckValueOrAChangedBitLeavesNothingBehind) {
  admit_both();
  CellKeys ca(*a_), cb(*b_);
  const std::string kcv = ca.generate_version(kMemberA, "sipflow", 1, 1700000000, 3);
  const std::vector<std::uint8_t> blob = ca.wrap_version_for("sipflow", 1, kMemberB);

  // A check value that is not the key's (an attacker's etcd record, a mix-up): refused.
  std::string other = kcv;
  other[0] = other[0] == '0' ? '1' : '0';
  EXPECT_THAT([&] { cb.import_version("sipflow", 1, 1700000000, 3, blob, other); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("refused, nothing kept")));
  // One changed bit and OAEP refuses the blob.
  std::vector<std::uint8_t> flipped = blob;
  flipped[100] ^= 0x01;
  EXPECT_THAT([&] { cb.import_version("sipflow", 1, 1700000000, 3, flipped, kcv); },
              ::testing::ThrowsMessage<CellKeyError>(HasSubstr("does not unwrap")));
  EXPECT_EQ(b_->status().state, edge::hsm::HsmState::available) << "a bad blob is no fault of the HSM";
  Raw raw(token_, kMemberB);
  EXPECT_TRUE(raw.find(CKO_SECRET_KEY, "").empty()) << "nothing of the refused imports is left on B";
  // The genuine one still imports.
  cb.import_version("sipflow", 1, 1700000000, 3, blob, kcv);
  EXPECT_EQ(cb.check_value("sipflow", 1), kcv);
}

}  // namespace
