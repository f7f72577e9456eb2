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

// Every version of one set (or of all sets when `set` is empty), sorted by
// (set, version). Objects whose CKA_ID is not ours are ignored.
std::vector<StoredKey> scan_keys(Session& session, OpCounters& counters, std::string_view set);

// The attribute policy of every MAC key we generate (key-set versions and the
// selftest's session key alike): 32-byte CKK_GENERIC_SECRET, private, sensitive,
// never extractable, sign/verify only. One definition so the two cannot drift.
AttributeTemplate mac_key_template(bool on_token);

// C_GenerateKey of one version with the full attribute policy.
CK_OBJECT_HANDLE generate_version(Session& session, OpCounters& counters, const KeyId& id);

// The set's versions as management reports them (minting = newest active).
KeySetInfo to_info(std::string_view set, const std::vector<StoredKey>& keys);

}  // namespace edge::hsm
