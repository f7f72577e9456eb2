// StoreKey: the HMAC key in the HSM that seals the management agent's configuration store.
#pragma once

#include <edge/hsm/error.h>
#include <edge/hsm/mac.h>

#include <span>
#include <string_view>

namespace edge::hsm {

class Hsm;

// CKA_LABEL of the store key. Key-set versions are "<set>/v<N>" and signing
// keys "sign/<name>": "config-store" is neither a version ("v" and digits) nor
// a valid name after "sign/", so no other object of ours can carry it.
inline constexpr std::string_view kStoreKeyLabel = "mgmt/config-store";

// The token holds no usable store key, a refused one (planted), or more than
// one; or create() found one. Unlike an HsmError for an HSM that cannot answer
// now, this stays so until someone changes the token.
class StoreKeyRefused : public HsmError {
 public:
  using HsmError::HsmError;
};

// One 32-byte CKK_GENERIC_SECRET per token, generated inside it with the MAC
// key policy of the key sets (private, sensitive, never extractable, sign and
// verify only, not copyable) and, unlike key-set versions, not modifiable:
// nothing ever retires it. CKA_ID "ECS1". It is adopted only when the HSM says
// it generated the key itself (CKA_LOCAL, CKA_NEVER_EXTRACTABLE and
// CKA_ALWAYS_SENSITIVE true), like a key-set version: a key created from a
// value someone knows would let them seal an edited configuration offline.
//
// It is a separate key from every key set on purpose: a flow-token MAC of
// chosen input (anyone can make the edge mint over a message they send) can
// never be a valid seal, and rotating or destroying a key set leaves the store
// readable. Methods are management-path calls: they may block on the HSM and
// throw HsmError / Pkcs11Error with a reason.
class StoreKey {
 public:
  explicit StoreKey(Hsm& hsm) : hsm_(hsm) {}

  // Whether the token holds a genuine store key. Throws StoreKeyRefused when
  // objects with the label exist but none passes the provenance check
  // (planted), or when there is more than one genuine key.
  bool exists();

  // Generates the key. Throws StoreKeyRefused when one exists already (also
  // when it was created concurrently: ours is then destroyed again).
  void create();

  // HMAC-SHA256 over `data` (C_Sign, CKM_SHA256_HMAC). StoreKeyRefused when
  // there is no genuine key to sign with.
  MacTag mac(std::span<const std::uint8_t> data);

  // Recomputes the MAC and compares it in constant time with `tag` (32 bytes).
  bool verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> tag);

 private:
  Hsm& hsm_;
};

}  // namespace edge::hsm
