// How key-set versions are stored as HSM objects: the CKA_ID codec, scanning and generation
// (private).
#pragma once

#include <edge/hsm/counters.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset.h>

#include <p11-kit/pkcs11.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edge::hsm {

class Session;
class AttributeTemplate;

// CKA_ID of a version, binary, big-endian:
//   "EKS1" | u32 version | i64 created (unix seconds) | u32 retain | set name bytes
struct KeyId {
  std::uint32_t version = 0;
  std::int64_t created = 0;
  std::uint32_t retain = 0;
  std::string set;
};
inline constexpr std::size_t kKeyIdHeader = 4 + 4 + 8 + 4;
inline constexpr std::size_t kKeyBytes = 32;  // HMAC-SHA256 key: SoftHSM wants 32..512

std::vector<std::uint8_t> encode_key_id(const KeyId& id);
std::optional<KeyId> decode_key_id(std::span<const std::uint8_t> raw);

// One version as found in the HSM.
struct StoredKey {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  KeyId id;
  std::vector<std::uint8_t> raw_id;
  std::string label;
  bool retired = false;  // CKA_SIGN or CKA_VERIFY is off
  std::string end_date;  // CKA_END_DATE, "YYYY-MM-DD" or ""
  // An imported cell version (adopted by accept_imported): the member that made it,
  // and the check MAC of its signed record. "" for a key this HSM generated.
  std::string origin;
  std::array<std::uint8_t, 32> check_mac{};
};

// Key provenance. A version is adopted only when the HSM says it generated the key
// itself and the key never left it: CKA_LOCAL, CKA_NEVER_EXTRACTABLE and
// CKA_ALWAYS_SENSITIVE all true (read-only attributes the token sets). Anyone with the
// user PIN can C_CreateObject a secret key with a value they know and our label and
// CKA_ID; adopting it would let them forge tokens offline. Such a key has CKA_LOCAL
// false. Returns CKR_OK with `refusal` null for a genuine key, CKR_OK with `refusal`
// naming the attribute otherwise, or the CK_RV of a failing C_GetAttributeValue.
// Allocation-free: the per-message re-find calls it.
CK_RV check_provenance(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                       const char*& refusal) noexcept;
// The refusal check_provenance reports for a key with CKA_LOCAL not true (compare the
// pointer): the only refusal an imported cell version can be accepted from.
extern const char* const kNotLocal;

// The audited import path (cell key transfer, hsm/README.md "Cell transport keys"). A
// key brought in by C_UnwrapKey has CKA_LOCAL, CKA_NEVER_EXTRACTABLE and
// CKA_ALWAYS_SENSITIVE false, so check_provenance refuses it. It is adopted iff a
// version record object "cell/record/<set>/v<N>" exists whose fields match the key's
// CKA_ID, whose signature verifies in the HSM under the CKA_TRUSTED verify key of its
// origin (only the SO makes those), and, unless the key is retired (then it is never
// used), C_Verify(CKM_SHA256_HMAC, kCheckValueInput, record.check_mac) succeeds with
// the key: a key a PIN holder created with a value they know has another MAC. Returns
// the origin and fills `check_mac`, or nullopt with `refusal` saying why. Accepted
// (key, record) pairs are cached per handle epoch in `im`. Implemented in
// cell_keys.cpp.
std::optional<std::string> accept_imported(Session& session, Hsm::Impl& im, CK_OBJECT_HANDLE key,
                                           const KeyId& id, bool retired,
                                           std::array<std::uint8_t, 32>& check_mac, std::string& refusal);

// The per-message re-find's check of an imported key (its record was verified when the
// version was adopted at refresh): C_Verify(CKM_SHA256_HMAC, kCheckValueInput,
// check_mac). CKR_OK: the same key; CKR_SIGNATURE_INVALID: another key; other CK_RV
// from the HSM (CKR_KEY_FUNCTION_NOT_PERMITTED: retired). Allocation-free.
CK_RV verify_imported_mac(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                          const std::uint8_t* check_mac) noexcept;

// Every version of one set (or of all sets when `set` is empty), sorted by
// (set, version), an active key before a retired one of the same version. Objects
// whose CKA_ID is not ours are ignored; objects with our label and CKA_ID that fail
// check_provenance and are not accepted by accept_imported are left out and, when
// `refused` is given, appended to it (sorted by set, then version).
std::vector<StoredKey> scan_keys(Session& session, Hsm::Impl& im, std::string_view set,
                                 std::vector<std::pair<std::string, RefusedKey>>* refused = nullptr);

// The attribute policy of every MAC key we generate (key-set versions and the
// selftest's session key alike): 32-byte CKK_GENERIC_SECRET, private, sensitive,
// never extractable, sign/verify only, not copyable. One definition so the two cannot
// drift. `modifiable`: only key-set versions, whose retirement switches CKA_SIGN /
// CKA_VERIFY off with C_SetAttributeValue, are modifiable. `generated`: the template
// of a C_GenerateKey, with the key length; false for a C_UnwrapKey (the cell's verify
// copy), where SoftHSM 2.6 refuses a length (CKR_ATTRIBUTE_READ_ONLY): the length is
// the wrapped value's.
AttributeTemplate mac_key_template(bool on_token, bool modifiable, bool generated = true);

// C_GenerateKey of one version with the full attribute policy.
CK_OBJECT_HANDLE generate_version(Session& session, OpCounters& counters, const KeyId& id);

// The set's versions as management reports them (minting = newest active), with the
// refused objects of that set.
KeySetInfo to_info(std::string_view set, const std::vector<StoredKey>& keys,
                   const std::vector<std::pair<std::string, RefusedKey>>& refused = {});

}  // namespace edge::hsm
