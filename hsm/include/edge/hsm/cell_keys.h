// CellKeys: the HSM half of a cell's key transfer (issue 15). Each member's identity
// is two RSA-2048 pairs in its HSM: a transport pair that moves keys (RSA-OAEP unwrap
// only) and a signing pair that signs version records (RSA-PSS). A key-set version
// travels from HSM to HSM only wrapped (RSA-OAEP) under the transport public key of a
// member the SO of the sending HSM has marked CKA_TRUSTED, together with a version
// record signed by the member that generated it; it never exists in clear outside an
// HSM.
//
// Objects (all token objects):
//   transport pair   label "cell/transport", CKA_ID "ECT1". Private key: sensitive,
//                    never extractable, unwrap only, not modifiable, with a
//                    CKA_UNWRAP_TEMPLATE that makes every key it unwraps a sensitive
//                    generic secret that can be wrapped again only under trusted keys.
//   signing pair     label "cell/sign", CKA_ID "ECS1". Private key: sensitive, never
//                    extractable, CKA_SIGN only, not modifiable. Public key: verify only.
//   member keys      label "cell/peer/<member>", CKA_ID "ECP1" + member: a member's
//                    transport public key (this member's own too), wrap only; and
//                    label "cell/peer/<member>/sign", CKA_ID "ECV1" + member: its signing
//                    public key, verify only. Both created by the SO after comparing the
//                    fingerprint of the identity blob, CKA_TRUSTED, not modifiable
//                    (admit_member).
//   verify copy      label "<set>/v<N>", the key-set version's usual CKA_ID: what mints
//                    and verifies. Sensitive, never extractable, sign/verify only.
//   escrow copy      label "<set>/v<N>/escrow", CKA_ID "EKE1" + the rest of the
//                    version's ID: the same value, extractable but only under a trusted
//                    key (CKA_WRAP_WITH_TRUSTED), no usage at all, not modifiable. It is
//                    what is wrapped for a member admitted later, so every retained
//                    version can still reach it.
//   version record   CKO_DATA, label "cell/record/<set>/v<N>", public: encode_record of
//                    the signed VersionRecord of the version. An unwrapped verify copy
//                    (CKA_LOCAL false) is used only when its record verifies under the
//                    trusted verify key of the record's origin and its HMAC over
//                    kCheckValueInput is the record's check_mac (hsm/README.md).
// A version's two copies come out of one wrapped blob (the originating member wraps
// its freshly generated escrow copy under its own trusted transport key and unwraps
// it twice), so every member, the originator included, holds the same objects.
//
// Methods are management-path calls: they may block on the HSM and throw
// HsmError / Pkcs11Error / CellKeyError with a reason. No method ever returns,
// logs or stores key material: only public keys, signatures, wrapped blobs and
// check values.
#pragma once

#include <edge/hsm/error.h>
#include <edge/hsm/secret.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edge::hsm {

class Hsm;
class Module;
struct TokenSelector;

// A cell key operation that cannot be done as asked (no transport key, a peer not
// trusted, a fingerprint that does not match, a malformed public key or blob). The
// HSM itself is fine.
class CellKeyError : public HsmError {
 public:
  using HsmError::HsmError;
};

inline constexpr std::string_view kTransportKeyLabel = "cell/transport";
inline constexpr std::string_view kSigningKeyLabel = "cell/sign";
inline constexpr std::string_view kPeerKeyLabelPrefix = "cell/peer/";
inline constexpr std::string_view kPeerSignLabelSuffix = "/sign";
inline constexpr std::string_view kRecordLabelPrefix = "cell/record/";
inline constexpr std::size_t kTransportKeyBits = 2048;

// A member's public identity as it is published: the DER SubjectPublicKeyInfo
// (rsaEncryption) of its transport and of its signing public key, and the
// fingerprint "sha256:<64 lowercase hex>" of the identity blob (computed in the HSM),
// which operators compare out of band.
struct TransportPublicKey {                    // kept name: the member's public identity
  std::vector<std::uint8_t> spki;              // transport (RSA-OAEP) public key, DER SPKI
  std::vector<std::uint8_t> signing_spki;      // signing (RSA-PSS) public key, DER SPKI
  std::string fingerprint;                     // sha256:<hex> of identity()
  std::vector<std::uint8_t> identity() const;  // spki || signing_spki
};

// The identity blob cut into its two SPKIs (DER is self-delimiting). CellKeyError when
// malformed (not exactly two canonical RSA SPKIs of 2048..4096 bits).
struct IdentityParts {
  std::vector<std::uint8_t> transport_spki, signing_spki;
};
IdentityParts split_identity(std::span<const std::uint8_t> identity);
// "sha256:<hex>" of the identity blob in software (OpenSSL); the same text the HSM
// computes.
std::string identity_fingerprint(std::span<const std::uint8_t> identity);

// The signed description of one version of a cell key set. check_mac is the full
// HMAC-SHA256 under the version over kCheckValueInput; signature is RSA-PSS
// (SHA-256, MGF1-SHA256, salt 32) by `origin`'s signing key over
// kRecordSignatureContext || encode_record_body (hsm/README.md has the layout).
struct VersionRecord {
  std::string set;
  std::uint32_t version = 0;
  std::int64_t created = 0;
  std::uint32_t retain = 0;
  std::array<std::uint8_t, 32> check_mac{};
  std::string origin;
  std::vector<std::uint8_t> signature;
  std::string check_value() const;  // first 8 bytes of check_mac, hex
};
// The bytes the signature covers: the context string (with its NUL) and the body.
inline constexpr std::string_view kRecordSignatureContext{"edge cell version record v1\0", 28};
std::vector<std::uint8_t> encode_record_body(const VersionRecord&);         // without the signature
std::vector<std::uint8_t> record_signed_bytes(const VersionRecord&);        // context || body
std::vector<std::uint8_t> encode_record(const VersionRecord&);              // with signature
std::optional<VersionRecord> decode_record(std::span<const std::uint8_t>);  // nullopt when malformed

struct PeerKey {
  std::string member;
  std::string fingerprint;
  bool trusted = false;  // CKA_TRUSTED, set by the SO
};

// Member ids: 1..64 of [A-Za-z0-9._-], as cell member names are.
bool valid_member_id(std::string_view id) noexcept;

// The key check value of a version: the first 8 bytes of HMAC-SHA256 under the
// version over a fixed string, as 16 lowercase hex digits. Equal check values on two
// HSMs mean the same key value; it reveals nothing usable about the value.
inline constexpr std::string_view kCheckValueInput = "edge cell key check value v1";

class CellKeys {
 public:
  explicit CellKeys(Hsm& hsm) : hsm_(hsm) {}

  bool has_transport_key();
  // Generates the transport pair and the signing pair (C_GenerateKeyPair, RSA 2048,
  // e = 65537): "cell init". CellKeyError when one exists.
  TransportPublicKey create_transport_key();
  // Both public keys and the fingerprint of the identity blob.
  TransportPublicKey transport_public_key();

  // The member keys in this HSM (trusted: both the wrap key and the verify key were
  // imported by the SO with admit_member; an untrusted one is ignored by every wrap
  // and verify).
  std::vector<PeerKey> peers();
  // Destroys the peer's public keys (both objects, found again in this session).
  // False when absent.
  bool remove_peer(std::string_view member);

  // Signs `data` with this member's signing key (RSA-PSS SHA-256).
  std::vector<std::uint8_t> sign(std::span<const std::uint8_t> data);
  // true: valid signature by `member`'s trusted verify key; false: invalid;
  // CellKeyError: member not trusted in this HSM. Only the CKA_TRUSTED verify key
  // is used, never a same-labelled object a user made.
  bool verify(std::string_view member, std::span<const std::uint8_t> data, std::span<const std::uint8_t> sig);

  // A new version of a cell key set: generates the escrow copy, wraps it under this
  // member's own transport key as the SO admitted it (member id `self`) and unwraps
  // the verify and escrow copies from that blob; then signs the version's record
  // (origin `self`) and stores it in the token. Returns the signed record.
  VersionRecord generate_version(std::string_view self, std::string_view set, std::uint32_t version,
                                 std::int64_t created, std::uint32_t retain);

  // The escrow copy of (set, version) wrapped under `member`'s transport key
  // (RSA-OAEP, SHA-1/MGF1-SHA1, the only OAEP SoftHSM 2.6 offers). The HSM refuses
  // (CellKeyError naming it) unless the SO has trusted that peer's key.
  std::vector<std::uint8_t> wrap_version_for(std::string_view set, std::uint32_t version,
                                             std::string_view member);

  // Imports a version made by another member: the record's signature must verify in
  // this HSM under the trusted verify key of record.origin, its fields must be sane;
  // then the blob is unwrapped into the verify and escrow copies, the verify copy's
  // HMAC over kCheckValueInput must be record.check_mac (C_Verify), and the record is
  // stored. On any failure nothing is left behind. CellKeyError when the version
  // exists already.
  void import_version(const VersionRecord& record, std::span<const std::uint8_t> wrapped);

  // The stored record of (set, version), or nullopt (not a cell version here).
  std::optional<VersionRecord> record(std::string_view set, std::uint32_t version);

  // Destroys the verify copy, the escrow copy and the record of (set, version).
  // Idempotent.
  void destroy_version(std::string_view set, std::uint32_t version);

  // The check value of the verify copy of (set, version).
  std::string check_value(std::string_view set, std::uint32_t version);

 private:
  Hsm& hsm_;
};

// The SO's act of admission: imports both public keys of `member`'s identity blob
// (this member's own included, under its own id) as CKA_TRUSTED, non-modifiable token
// objects in one SO session (wrap key "cell/peer/<m>", verify key
// "cell/peer/<m>/sign"), after checking that the blob is two canonical RSA keys of
// 2048 to 4096 bits whose fingerprint (computed in the HSM) is
// `expected_fingerprint` (what was compared out of band). SoftHSM 2.6 lets
// CKA_TRUSTED be set only when an object is made in an SO session, never by
// C_SetAttributeValue, so admission creates the objects. Needs the SO PIN, so it runs
// in a process where no user is logged in to that token (PKCS#11 allows one user
// type per application): edge-hsm cell trust. CellKeyError on a mismatch, a malformed
// blob or a member admitted already.
void admit_member(const Module& module, const TokenSelector& token, const SecretString& so_pin,
                  std::string_view member, std::span<const std::uint8_t> identity,
                  std::string_view expected_fingerprint);

// DER SubjectPublicKeyInfo of an RSA key from its modulus and exponent (big-endian
// unsigned), and back; exposed for tests. parse throws CellKeyError.
std::vector<std::uint8_t> encode_rsa_spki(std::span<const std::uint8_t> modulus,
                                          std::span<const std::uint8_t> exponent);
struct RsaPublicParts {
  std::vector<std::uint8_t> modulus, exponent;
};
RsaPublicParts parse_rsa_spki(std::span<const std::uint8_t> spki);

}  // namespace edge::hsm
