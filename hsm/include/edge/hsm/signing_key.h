// Signing keys: named ECDSA P-256 key pairs whose private half never leaves the HSM (firmware bundles).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edge::hsm {

class Hsm;

// A signing key as the token holds it. The public half is a token object too,
// so the PEM for verifiers can be exported again at any time.
struct SigningKeyInfo {
  std::string name;
  std::int64_t created_unix = 0;  // seconds since the epoch, from CKA_ID
  // DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, uncompressed point).
  std::vector<std::uint8_t> public_key_der;
};

// Signing-key names: the key-set alphabet, 1..64 chars of [A-Za-z0-9._-].
bool valid_signing_key_name(std::string_view name) noexcept;

// CKA_LABEL of both halves: "sign/<name>" (names cannot contain '/', so a key
// set label "<set>/v<N>" never collides with it).
std::string signing_key_label(std::string_view name);

// RFC 7468 "PUBLIC KEY" PEM of a DER SubjectPublicKeyInfo, 64 columns.
std::string public_key_pem(std::span<const std::uint8_t> spki_der);

// Where verifiers find the public keys of a state directory: <state>/keys.
std::filesystem::path public_key_dir(const std::filesystem::path& state_dir);

// Writes <dir>/<name>.pub.pem (mode 0644, directory created) atomically:
// temp file, fsync, rename, fsync of the directory. Returns the path.
std::filesystem::path write_public_key_pem(const std::filesystem::path& dir, const SigningKeyInfo& key);

// Raw ECDSA signature as PKCS#11 CKM_ECDSA returns it: r || s, 32 bytes each.
using EcdsaSignature = std::array<std::uint8_t, 64>;
using Sha256Digest = std::array<std::uint8_t, 32>;

// ECDSA P-256 key pairs generated inside the token (CKM_EC_KEY_PAIR_GEN).
// Private key: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false,
// CKA_SIGN only (decrypt / unwrap / derive / sign-recover false), not
// modifiable and not copyable, so nobody holding the PIN can widen its use.
// Public key: token object, public, CKA_VERIFY only.
// CKA_ID of both (binary, big-endian): "ESK1" | i64 created (unix s) | name.
// Methods throw HsmError / Pkcs11Error with a reason.
class SigningKeys {
 public:
  explicit SigningKeys(Hsm& hsm) : hsm_(hsm) {}

  // Throws HsmError when a key of that name exists.
  SigningKeyInfo create(std::string_view name);
  std::vector<SigningKeyInfo> list();         // sorted by name
  SigningKeyInfo get(std::string_view name);  // throws HsmError when missing
  bool exists(std::string_view name);
  void destroy(std::string_view name);

  // C_SignInit(CKM_ECDSA) + C_Sign over a SHA-256 digest computed by the
  // caller: the HSM signs the digest as given (CKM_ECDSA does no hashing).
  EcdsaSignature sign_digest(std::string_view name, const Sha256Digest& digest);

 private:
  Hsm& hsm_;
};

}  // namespace edge::hsm
