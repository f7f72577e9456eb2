// Key sets: versions stored as HSM secret keys (label, binary CKA_ID, sign/verify flags) and their
// management.
#include "hsm_impl.h"
#include "keyset_store.h"

#include <edge/hsm/object.h>
#include <edge/hsm/session.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <limits>

namespace edge::hsm {

const char* const kNotLocal =
    "CKA_LOCAL is not true: the key was not generated inside this HSM (created from a value someone "
    "knows, or imported)";

namespace {

constexpr std::uint8_t kMagic[4] = {'E', 'K', 'S', '1'};

void put_be(std::uint8_t* out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) out[i] = static_cast<std::uint8_t>(v & 0xFF);
}

std::uint64_t get_be(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (out.size() > 80) {
    out.resize(80);
    out += "...";
  }
  return out;
}

void check_name(std::string_view name) {
  if (!valid_key_set_name(name)) {
    throw HsmError("invalid key set name '" + printable(name) +
                   "': use 1..64 characters of A-Z a-z 0-9 . _ -");
  }
}

// One C_GetAttributeValue for the attributes a listing needs; nullopt when
// something did not fit (then read them one by one).
struct Attributes {
  std::vector<std::uint8_t> id;
  std::string label;
  bool sign = false, verify = false;
};

std::optional<Attributes> read_batched(Session& s, CK_OBJECT_HANDLE h) {
  std::uint8_t id[128], label[160];
  CK_BBOOL sign = CK_FALSE, verify = CK_FALSE;
  CK_ATTRIBUTE a[] = {
      {CKA_ID, id, sizeof id},
      {CKA_LABEL, label, sizeof label},
      {CKA_SIGN, &sign, sizeof sign},
      {CKA_VERIFY, &verify, sizeof verify},
  };
  CK_RV rv = s.functions()->C_GetAttributeValue(s.handle(), h, a, 4);
  if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) {
    return std::nullopt;
  }
  if (rv != CKR_OK) throw Pkcs11Error("C_GetAttributeValue", rv);
  Attributes out;
  out.id.assign(id, id + a[0].ulValueLen);
  out.label.assign(reinterpret_cast<const char*>(label), a[1].ulValueLen);
  out.sign = sign != CK_FALSE;
  out.verify = verify != CK_FALSE;
  return out;
}

// CKA_END_DATE, best effort and in a call of its own: SoftHSM 2.6.1 stores
// the date attributes of private objects in clear but decrypts them on
// reading, so reading a set date fails with CKR_GENERAL_ERROR
// (SoftHSMv2 issues #655, #804). The date is informational; the retired state
// is CKA_SIGN / CKA_VERIFY, so a failure here must not look like a device fault.
std::string read_end_date(Session& s, CK_OBJECT_HANDLE h) {
  CK_DATE d{};
  CK_ATTRIBUTE a{CKA_END_DATE, &d, sizeof d};
  if (s.functions()->C_GetAttributeValue(s.handle(), h, &a, 1) != CKR_OK || a.ulValueLen != sizeof d)
    return {};
  return to_string(d);
}

Attributes read_one_by_one(Session& s, CK_OBJECT_HANDLE h) {
  Object o(s, h);
  Attributes out;
  if (auto v = o.get_bytes(CKA_ID)) out.id = std::move(*v);
  if (auto v = o.get_bytes(CKA_LABEL)) out.label.assign(v->begin(), v->end());
  out.sign = o.get_bool(CKA_SIGN).value_or(false);
  out.verify = o.get_bool(CKA_VERIFY).value_or(false);
  return out;
}

std::size_t count_version(const std::vector<StoredKey>& keys, std::uint32_t version) {
  return static_cast<std::size_t>(
      std::count_if(keys.begin(), keys.end(), [&](const StoredKey& k) { return k.id.version == version; }));
}

void destroy_tolerant(Session& s, CK_OBJECT_HANDLE h) {
  CK_RV rv = s.functions()->C_DestroyObject(s.handle(), h);
  // Already gone (a retry after a partly done destroy, or a concurrent one).
  if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) throw Pkcs11Error("C_DestroyObject", rv);
}

// Destroys the version `id` that this process generated, found again by its
// CKA_ID and label in `s` (the session it is destroyed in): the handle
// C_GenerateKey returned belongs to an earlier session, and a module restart
// in between may have given that number to another object. A racing creator
// that made a byte-identical CKA_ID (same version, second and retain) is
// removed too; it sees the duplicate as well and reports a retry.
void destroy_generated(Session& s, OpCounters& counters, const KeyId& id) {
  AttributeTemplate t;
  t.add_class(CKO_SECRET_KEY)
      .add_key_type(CKK_GENERIC_SECRET)
      .add_string(CKA_LABEL, version_label(id.set, id.version))
      .add_bytes(CKA_ID, encode_key_id(id));
  counters.find.fetch_add(1, std::memory_order_relaxed);
  for (CK_OBJECT_HANDLE h : find_objects(s, t)) destroy_tolerant(s, h);
}

}  // namespace

// ------------------------------------------------------------ storage codec

std::vector<std::uint8_t> encode_key_id(const KeyId& id) {
  // Sized once and filled in place (GCC 12 warns falsely on vector::insert growth here).
  std::vector<std::uint8_t> out(kKeyIdHeader + id.set.size());
  std::memcpy(out.data(), kMagic, 4);
  put_be(out.data() + 4, id.version, 4);
  put_be(out.data() + 8, static_cast<std::uint64_t>(id.created), 8);
  put_be(out.data() + 16, id.retain, 4);
  if (!id.set.empty()) std::memcpy(out.data() + kKeyIdHeader, id.set.data(), id.set.size());
  return out;
}

std::optional<KeyId> decode_key_id(std::span<const std::uint8_t> raw) {
  if (raw.size() <= kKeyIdHeader || std::memcmp(raw.data(), kMagic, 4) != 0) return std::nullopt;
  KeyId id;
  id.version = static_cast<std::uint32_t>(get_be(raw.data() + 4, 4));
  id.created = static_cast<std::int64_t>(get_be(raw.data() + 8, 8));
  id.retain = static_cast<std::uint32_t>(get_be(raw.data() + 16, 4));
  id.set.assign(reinterpret_cast<const char*>(raw.data() + kKeyIdHeader), raw.size() - kKeyIdHeader);
  if (id.version == 0 || !valid_key_set_name(id.set)) return std::nullopt;
  return id;
}

CK_RV check_provenance(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                       const char*& refusal) noexcept {
  refusal = nullptr;
  CK_BBOOL local = CK_FALSE, never_extractable = CK_FALSE, always_sensitive = CK_FALSE;
  CK_ATTRIBUTE a[] = {
      {CKA_LOCAL, &local, sizeof local},
      {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof never_extractable},
      {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof always_sensitive},
  };
  // An attribute the token will not report (ulValueLen = CK_UNAVAILABLE_INFORMATION)
  // counts as not true: provenance must be shown, not assumed.
  const CK_RV rv = f->C_GetAttributeValue(session, key, a, 3);
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) return rv;
  const auto is_true = [](const CK_ATTRIBUTE& x) {
    return x.ulValueLen == sizeof(CK_BBOOL) && *static_cast<const CK_BBOOL*>(x.pValue) != CK_FALSE;
  };
  if (!is_true(a[0])) {
    refusal = kNotLocal;
  } else if (!is_true(a[1])) {
    refusal = "CKA_NEVER_EXTRACTABLE is not true: the key was extractable at some time";
  } else if (!is_true(a[2])) {
    refusal = "CKA_ALWAYS_SENSITIVE is not true: the key was not sensitive at some time";
  }
  return CKR_OK;
}

std::vector<StoredKey> scan_keys(Session& session, Hsm::Impl& im, std::string_view set,
                                 std::vector<std::pair<std::string, RefusedKey>>* refused) {
  OpCounters& counters = im.counters;
  AttributeTemplate t;
  t.add_class(CKO_SECRET_KEY).add_key_type(CKK_GENERIC_SECRET);
  counters.find.fetch_add(1, std::memory_order_relaxed);
  std::vector<StoredKey> out;
  for (CK_OBJECT_HANDLE h : find_objects(session, t)) {
    std::optional<Attributes> batched = read_batched(session, h);
    Attributes a = batched ? std::move(*batched) : read_one_by_one(session, h);
    std::optional<KeyId> id = decode_key_id(a.id);
    if (!id) continue;  // not one of ours
    if (!set.empty() && id->set != set) continue;
    // The label must agree with the ID: the per-message path finds a version
    // by both, so a key whose label was changed would be invisible there.
    if (a.label != version_label(id->set, id->version)) continue;
    const char* refusal = nullptr;
    if (CK_RV rv = check_provenance(session.functions(), session.handle(), h, refusal); rv != CKR_OK)
      throw Pkcs11Error("C_GetAttributeValue", rv);
    const bool retired = !a.sign || !a.verify;
    StoredKey k;
    if (refusal != nullptr) {
      // Only a key that was not generated here can be an imported cell version (it was
      // unwrapped); a local key that was ever extractable stays refused.
      std::string why;
      std::optional<std::string> origin;
      if (refusal == kNotLocal) origin = accept_imported(session, im, h, *id, retired, k.check_mac, why);
      if (!origin) {
        if (refused != nullptr) {
          std::string reason = refusal;
          if (!why.empty()) reason += "; not an accepted cell import: " + why;
          refused->emplace_back(id->set, RefusedKey{id->version, a.label, std::move(reason)});
        }
        continue;
      }
      k.origin = std::move(*origin);
    }
    k.handle = h;
    k.id = std::move(*id);
    k.raw_id = std::move(a.id);
    k.label = std::move(a.label);
    k.retired = retired;
    if (k.retired) k.end_date = read_end_date(session, h);
    out.push_back(std::move(k));
  }
  std::sort(out.begin(), out.end(), [](const StoredKey& x, const StoredKey& y) {
    if (x.id.set != y.id.set) return x.id.set < y.id.set;
    if (x.id.version != y.id.version) return x.id.version < y.id.version;
    if (x.id.created != y.id.created) return x.id.created < y.id.created;
    // An active key first: a retired look-alike next to it must not hide it.
    return !x.retired && y.retired;
  });
  if (refused != nullptr) {
    std::stable_sort(refused->begin(), refused->end(), [](const auto& x, const auto& y) {
      return x.first != y.first ? x.first < y.first : x.second.version < y.second.version;
    });
  }
  return out;
}

AttributeTemplate mac_key_template(bool on_token, bool modifiable, bool generated) {
  AttributeTemplate t;
  t.add_class(CKO_SECRET_KEY).add_key_type(CKK_GENERIC_SECRET);
  if (generated) t.add_ulong(kKeyLengthAttribute, kKeyBytes);
  t.add_bool(CKA_TOKEN, on_token)
      .add_bool(CKA_PRIVATE, true)
      .add_bool(CKA_SENSITIVE, true)
      .add_bool(CKA_EXTRACTABLE, false)
      .add_bool(CKA_SIGN, true)
      .add_bool(CKA_VERIFY, true)
      .add_bool(CKA_ENCRYPT, false)
      .add_bool(CKA_DECRYPT, false)
      .add_bool(CKA_WRAP, false)
      .add_bool(CKA_UNWRAP, false)
      .add_bool(CKA_DERIVE, false)
      // Modifiable only for key-set versions, whose retirement switches CKA_SIGN /
      // CKA_VERIFY off; the token refuses every C_SetAttributeValue on any other key.
      .add_bool(CKA_MODIFIABLE, modifiable)
      // No C_CopyObject: a copy could carry different usage flags.
      .add_bool(CKA_COPYABLE, false);
  return t;
}

CK_OBJECT_HANDLE generate_version(Session& session, OpCounters& counters, const KeyId& id) {
  const std::vector<std::uint8_t> raw = encode_key_id(id);
  // Modifiable so that retirement can switch CKA_SIGN / CKA_VERIFY off (and set
  // CKA_END_DATE): PKCS#11 has no per-attribute modifiability. What a PIN holder can
  // do with that is in docs/security.md ("What a holder of the user PIN can still do").
  AttributeTemplate t = mac_key_template(true, /*modifiable=*/true);
  t.add_string(CKA_LABEL, version_label(id.set, id.version)).add_bytes(CKA_ID, raw);
  // No CKA_START_DATE: the creation time is in CKA_ID, and SoftHSM 2.6.1
  // cannot read a date back from a private object (see read_end_date), which
  // would break listings by other tools.
  counters.generate.fetch_add(1, std::memory_order_relaxed);
  return generate_key(session, CKM_GENERIC_SECRET_KEY_GEN, t);
}

KeySetInfo to_info(std::string_view set, const std::vector<StoredKey>& keys,
                   const std::vector<std::pair<std::string, RefusedKey>>& refused) {
  KeySetInfo info;
  info.name = std::string(set);
  for (const auto& [owner, r] : refused)
    if (owner == set) info.refused.push_back(r);
  for (const StoredKey& k : keys) {
    if (k.id.set != set) continue;
    if (!info.versions.empty() && info.versions.back().version == k.id.version)
      continue;  // duplicate: first wins
    KeyVersionInfo v;
    v.version = k.id.version;
    v.state = k.retired ? KeyState::retired : KeyState::active;
    v.created_unix = k.id.created;
    v.retired_on = k.retired ? k.end_date : std::string();
    v.origin = k.origin;
    info.versions.push_back(std::move(v));
    info.retain = k.id.retain;  // the newest version's policy wins
  }
  const std::uint32_t minting = info.minting_version();
  for (auto& v : info.versions) v.minting = v.version == minting;
  return info;
}

// ------------------------------------------------------------ public helpers

const char* to_string(KeyState s) noexcept {
  switch (s) {
    case KeyState::active:
      return "active";
    case KeyState::retired:
      return "retired";
  }
  return "?";
}

std::uint32_t KeySetInfo::minting_version() const {
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (it->state == KeyState::active) return it->version;
  }
  return 0;
}

bool valid_key_set_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string refused_text(const std::vector<RefusedKey>& refused, std::uint32_t version) {
  std::string out;
  for (const RefusedKey& r : refused) {
    if (version != 0 && r.version != version) continue;
    out += "; object labelled '" + r.label + "' was refused: " + r.reason;
  }
  return out;
}

std::string version_label(std::string_view name, std::uint32_t version) {
  std::string s(name);
  s += "/v";
  s += std::to_string(version);
  return s;
}

// ------------------------------------------------------------ KeySetManager

KeySetInfo KeySetManager::create(std::string_view name, std::uint32_t retain) {
  check_name(name);
  if (retain < 1 || retain > kMaxRetain) {
    throw HsmError("key set retain must be 1.." + std::to_string(kMaxRetain) + ", not " +
                   std::to_string(retain));
  }
  Hsm::Impl& im = hsm_.impl();
  auto scan = [&](Session& s) { return scan_keys(s, im, name); };
  if (!im.with_session(scan).empty()) throw HsmError("key set '" + std::string(name) + "' already exists");

  const KeyId id{1, unix_now(), retain, std::string(name)};
  im.with_session([&](Session& s) { generate_version(s, im.counters, id); });
  std::vector<StoredKey> keys = im.with_session(scan);
  if (count_version(keys, 1) > 1) {
    im.with_session([&](Session& s) { destroy_generated(s, im.counters, id); });
    throw HsmError("key set '" + std::string(name) +
                   "' was created concurrently by someone else; ours was removed");
  }
  return to_info(name, keys);
}

KeyVersionInfo KeySetManager::rotate(std::string_view name) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  auto scan = [&](Session& s) { return scan_keys(s, im, name); };
  std::vector<StoredKey> keys = im.with_session(scan);
  if (keys.empty()) throw HsmError("key set '" + std::string(name) + "' does not exist");

  const KeyId& newest = keys.back().id;
  // Version numbers are 32-bit: wrapping would make version 0, which no
  // listing shows (and which the view treats as "no such version").
  if (newest.version == std::numeric_limits<std::uint32_t>::max())
    throw HsmError("key set '" + std::string(name) + "': version numbers exhausted");
  const std::uint32_t retain = newest.retain == 0 ? kDefaultRetain : newest.retain;
  const KeyId id{newest.version + 1, unix_now(), retain, std::string(name)};
  im.with_session([&](Session& s) { generate_version(s, im.counters, id); });

  // Two rotations racing (daemon and tool) would both make newest+1: keep
  // none of ours and let the caller retry, rather than two keys for one version.
  keys = im.with_session(scan);
  if (count_version(keys, id.version) > 1) {
    im.with_session([&](Session& s) { destroy_generated(s, im.counters, id); });
    throw HsmError("key set '" + std::string(name) + "' was rotated concurrently; ours was removed, retry");
  }

  // Keep the newest `retain` versions; destroy the older ones. Re-scanned
  // inside the retried unit so a retry never acts on stale handles.
  im.with_session([&](Session& s) {
    std::vector<StoredKey> now = scan_keys(s, im, name);
    std::vector<std::uint32_t> versions;
    for (const auto& k : now)
      if (versions.empty() || versions.back() != k.id.version) versions.push_back(k.id.version);
    if (versions.size() <= retain) return;
    const std::uint32_t keep_from = versions[versions.size() - retain];
    for (const auto& k : now)
      if (k.id.version < keep_from) destroy_tolerant(s, k.handle);
  });

  KeyVersionInfo v;
  v.version = id.version;
  v.state = KeyState::active;
  v.created_unix = id.created;
  v.minting = true;
  return v;
}

void KeySetManager::retire(std::string_view name, std::uint32_t version) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  im.with_session([&](Session& s) {
    std::vector<std::pair<std::string, RefusedKey>> refused;
    std::vector<StoredKey> keys = scan_keys(s, im, name, &refused);
    const std::vector<RefusedKey> why = to_info(name, {}, refused).refused;
    if (keys.empty())
      throw HsmError("key set '" + std::string(name) + "' does not exist" + refused_text(why));
    bool found = false;
    for (const auto& k : keys) {
      if (k.id.version != version) continue;
      found = true;
      if (k.retired) continue;  // idempotent; keeps the first retirement date
      // The HSM itself then refuses C_SignInit / C_VerifyInit with
      // CKR_KEY_FUNCTION_NOT_PERMITTED; CKA_END_DATE records when.
      AttributeTemplate t;
      t.add_bool(CKA_SIGN, false).add_bool(CKA_VERIFY, false).add_date(CKA_END_DATE, to_ck_date(unix_now()));
      Object(s, k.handle).set_attributes(t);
    }
    if (!found) {
      throw HsmError("key set '" + std::string(name) + "' has no version " + std::to_string(version) +
                     refused_text(why, version));
    }
  });
}

std::vector<KeySetInfo> KeySetManager::list() {
  Hsm::Impl& im = hsm_.impl();
  std::vector<std::pair<std::string, RefusedKey>> refused;
  std::vector<StoredKey> keys = im.with_session([&](Session& s) {
    refused.clear();
    return scan_keys(s, im, {}, &refused);
  });
  // A set exists by its adopted versions; a set with refused objects only is not
  // listed (get() names them in its error).
  std::vector<KeySetInfo> out;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0 && keys[i].id.set == keys[i - 1].id.set) continue;
    out.push_back(to_info(keys[i].id.set, keys, refused));
  }
  return out;
}

KeySetInfo KeySetManager::get(std::string_view name) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  std::vector<std::pair<std::string, RefusedKey>> refused;
  std::vector<StoredKey> keys = im.with_session([&](Session& s) {
    refused.clear();
    return scan_keys(s, im, name, &refused);
  });
  KeySetInfo info = to_info(name, keys, refused);
  if (keys.empty())
    throw HsmError("key set '" + std::string(name) + "' does not exist" + refused_text(info.refused));
  return info;
}

bool KeySetManager::exists(std::string_view name) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  return !im.with_session([&](Session& s) { return scan_keys(s, im, name); }).empty();
}

void KeySetManager::destroy(std::string_view name) {
  check_name(name);
  if (!exists(name)) throw HsmError("key set '" + std::string(name) + "' does not exist");
  Hsm::Impl& im = hsm_.impl();
  im.with_session([&](Session& s) {
    for (const auto& k : scan_keys(s, im, name)) destroy_tolerant(s, k.handle);
  });
}

}  // namespace edge::hsm
