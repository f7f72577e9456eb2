// How key-set versions are stored as HSM objects: the CKA_ID codec, scanning and generation
// (private).
#pragma once

#include <edge/hsm/counters.h>
#include <edge/hsm/keyset.h>

#include <p11-kit/pkcs11.h>

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

// The hook for an audited import path. A key brought in by C_UnwrapKey (the cell's
// HSM-to-HSM transfer, not built yet) has CKA_LOCAL, CKA_NEVER_EXTRACTABLE and
// CKA_ALWAYS_SENSITIVE false, so check_provenance refuses it. hsm/ has no import or
// unwrap path today, so this accepts nothing. Whoever adds one must mark what it
// imported in a way a PIN holder cannot forge (a CKA_LABEL / CKA_ID convention can be
// written by anyone with the PIN, e.g. an audit record kept outside the token and
// matched here) and accept exactly those keys here.
inline constexpr bool accepted_as_imported(const KeyId& /*id*/) noexcept { return false; }

// Every version of one set (or of all sets when `set` is empty), sorted by
// (set, version). Objects whose CKA_ID is not ours are ignored; objects with our
// label and CKA_ID that fail check_provenance are left out and, when `refused` is
// given, appended to it (sorted by set, then version).
std::vector<StoredKey> scan_keys(Session& session, OpCounters& counters, std::string_view set,
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
