// CellKeys: the HSM half of a cell's key transfer (issue 15). Each member has an RSA
// transport key pair in its HSM; a key-set version travels from HSM to HSM only
// wrapped (RSA-OAEP) under the transport public key of a member the SO of the
// sending HSM has marked CKA_TRUSTED, and never exists in clear outside an HSM.
//
// Objects (all token objects):
//   transport pair   label "cell/transport", CKA_ID "ECT1". Private key: sensitive,
//                    never extractable, unwrap only, not modifiable, with a
//                    CKA_UNWRAP_TEMPLATE that makes every key it unwraps a sensitive
//                    generic secret that can be wrapped again only under trusted keys.
//                    Its public key is what the member publishes.
//   member keys      label "cell/peer/<member>", CKA_ID "ECP1" + member: a member's
//                    transport public key (this member's own too), created by the SO
//                    after comparing its fingerprint, CKA_TRUSTED, wrap only, not
//                    modifiable (admit_member).
//   verify copy      label "<set>/v<N>", the key-set version's usual CKA_ID: what mints
//                    and verifies. Sensitive, never extractable, sign/verify only.
//   escrow copy      label "<set>/v<N>/escrow", CKA_ID "EKE1" + the rest of the
//                    version's ID: the same value, extractable but only under a trusted
//                    key (CKA_WRAP_WITH_TRUSTED), no usage at all, not modifiable. It is
//                    what is wrapped for a member admitted later, so every retained
//                    version can still reach it.
// A version's two copies come out of one wrapped blob (the originating member wraps
// its freshly generated escrow copy under its own trusted transport key and unwraps
// it twice), so every member, the originator included, holds the same two objects.
//
// Methods are management-path calls: they may block on the HSM and throw
// HsmError / Pkcs11Error / CellKeyError with a reason. No method ever returns,
// logs or stores key material: only public keys, wrapped blobs and check values.
#pragma once

#include <edge/hsm/error.h>
#include <edge/hsm/secret.h>

#include <cstdint>
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
inline constexpr std::string_view kPeerKeyLabelPrefix = "cell/peer/";
inline constexpr std::size_t kTransportKeyBits = 2048;

// A member's transport public key as it is published: DER SubjectPublicKeyInfo
// (rsaEncryption) and its fingerprint "sha256:<64 lowercase hex>" (SHA-256 of the
// DER, computed in the HSM), which operators compare out of band.
struct TransportPublicKey {
  std::vector<std::uint8_t> spki;
  std::string fingerprint;
};

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
  // Generates the transport pair (C_GenerateKeyPair, RSA 2048, e = 65537).
  // CellKeyError when one exists.
  TransportPublicKey create_transport_key();
  TransportPublicKey transport_public_key();

  // The member keys in this HSM (trusted: imported by the SO with admit_member;
  // an untrusted one is ignored by every wrap).
  std::vector<PeerKey> peers();
  // Destroys the peer's public key (found again in this session). False when absent.
  bool remove_peer(std::string_view member);

  // A new version of a cell key set: generates the escrow copy, wraps it under this
  // member's own transport key as the SO admitted it (member id `self`) and unwraps
  // the verify and escrow copies from that blob. Returns the version's check value.
  std::string generate_version(std::string_view self, std::string_view set, std::uint32_t version,
                               std::int64_t created, std::uint32_t retain);

  // The escrow copy of (set, version) wrapped under `member`'s transport key
  // (RSA-OAEP, SHA-1/MGF1-SHA1, the only OAEP SoftHSM 2.6 offers). The HSM refuses
  // (CellKeyError naming it) unless the SO has trusted that peer's key.
  std::vector<std::uint8_t> wrap_version_for(std::string_view set, std::uint32_t version,
                                             std::string_view member);

  // Unwraps a blob made for this member into the verify and escrow copies of
  // (set, version) and checks the result against `expected_check_value` (what the
  // sender published); on a mismatch both copies are destroyed again. CellKeyError
  // when the version exists already.
  void import_version(std::string_view set, std::uint32_t version, std::int64_t created, std::uint32_t retain,
                      std::span<const std::uint8_t> wrapped, std::string_view expected_check_value);

  // The check value of the verify copy of (set, version).
  std::string check_value(std::string_view set, std::uint32_t version);

 private:
  Hsm& hsm_;
};

// The SO's act of admission: imports `member`'s transport public key (this
// member's own included, under its own id) as a CKA_TRUSTED, non-modifiable token
// object, after checking that `spki` is a canonical RSA key of 2048 to 4096 bits
// whose fingerprint is `expected_fingerprint` (what was compared out of band).
// SoftHSM 2.6 lets CKA_TRUSTED be set only when an object is made in an SO session,
// never by C_SetAttributeValue, so admission creates the object. Needs the SO PIN, so
// it runs in a process where no user is logged in to that token (PKCS#11 allows one
// user type per application): edge-hsm cell trust. CellKeyError on a mismatch, a
// malformed key or a member admitted already.
void admit_member(const Module& module, const TokenSelector& token, const SecretString& so_pin,
                  std::string_view member, std::span<const std::uint8_t> spki,
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
