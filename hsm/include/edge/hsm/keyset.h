// Key sets: named, versioned families of non-extractable HMAC keys living in the HSM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edge::hsm {

class Hsm;

enum class KeyState : std::uint8_t { active, retired };
const char* to_string(KeyState s) noexcept;

struct KeyVersionInfo {
  std::uint32_t version = 0;
  KeyState state = KeyState::active;
  std::int64_t created_unix = 0;  // seconds since the epoch, from the key's CKA_ID
  bool minting = false;           // newest active version
  std::string retired_on;         // CKA_END_DATE "YYYY-MM-DD" once retired, else ""
  std::string origin;             // "" for a key this HSM generated; the cell member that made it otherwise
};

// An object on the token with the label and CKA_ID of a version that is not adopted:
// the HSM does not say it generated the key itself (see "Key provenance" in
// hsm/README.md). It is never used to mint or verify.
struct RefusedKey {
  std::uint32_t version = 0;
  std::string label;
  std::string reason;  // names the attribute, e.g. "CKA_LOCAL is false (...)"
};

struct KeySetInfo {
  std::string name;
  std::uint32_t retain = 0;               // versions kept before the oldest is destroyed
  std::vector<KeyVersionInfo> versions;   // ascending by version, adopted keys only
  std::vector<RefusedKey> refused;        // objects with this set's labels that were refused
  std::uint32_t minting_version() const;  // 0 when none is active
};

// "; object labelled 'x/v2' was refused: CKA_LOCAL is false (...)" for every refused
// object of `version` (all versions when 0), "" when there is none: appended to errors.
std::string refused_text(const std::vector<RefusedKey>& refused, std::uint32_t version = 0);

// Key-set names: 1..64 chars of [A-Za-z0-9._-].
bool valid_key_set_name(std::string_view name) noexcept;

inline constexpr std::uint32_t kDefaultRetain = 3;
inline constexpr std::uint32_t kMaxRetain = 64;

// CKA_LABEL of a version: "<set>/v<N>".
std::string version_label(std::string_view name, std::uint32_t version);

// Management of key sets. All state lives in the HSM objects:
//   CKA_LABEL "<set>/v<N>", CKA_ID binary (magic, version, created, retain, set name),
//   retired = CKA_SIGN and CKA_VERIFY switched off (so the HSM itself refuses it).
// Only keys the HSM generated itself (CKA_LOCAL, CKA_NEVER_EXTRACTABLE and
// CKA_ALWAYS_SENSITIVE true) are versions; other objects with a version's label and ID
// are reported in KeySetInfo::refused and otherwise left alone.
// Methods throw HsmError / Pkcs11Error with a reason.
class KeySetManager {
 public:
  explicit KeySetManager(Hsm& hsm) : hsm_(hsm) {}

  // Generates v1. retain: 1..kMaxRetain. Throws HsmError when the set exists.
  KeySetInfo create(std::string_view name, std::uint32_t retain = kDefaultRetain);
  // Generates version newest+1; destroys the oldest versions beyond `retain`.
  KeyVersionInfo rotate(std::string_view name);
  // Switches CKA_SIGN and CKA_VERIFY off and sets CKA_END_DATE to today;
  // idempotent. Throws HsmError when the version does not exist.
  void retire(std::string_view name, std::uint32_t version);
  std::vector<KeySetInfo> list();
  KeySetInfo get(std::string_view name);  // throws HsmError when missing
  bool exists(std::string_view name);
  void destroy(std::string_view name);

 private:
  Hsm& hsm_;
};

}  // namespace edge::hsm
