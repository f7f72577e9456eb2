// Objects: attribute templates, C_FindObjects, attribute reads/writes, key generation, destruction.
#pragma once

#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edge::hsm {

class Session;

// Attribute types this library refuses to read, whatever the caller asks:
// the secret value of a key (type 0x11 in PKCS#11). Our keys are
// non-extractable and sensitive, so the HSM refuses too; the check here makes
// sure no code path of ours even tries.
bool is_secret_attribute(CK_ATTRIBUTE_TYPE type) noexcept;

// The key-length attribute (PKCS#11 type 0x161) used in key generation
// templates; spelled as a number so that the identifier of the secret value
// attribute, which it shares a prefix with, never appears in this library.
inline constexpr CK_ATTRIBUTE_TYPE kKeyLengthAttribute = 0x161UL;

// A template that owns its values, e.g.
//   AttributeTemplate t; t.add_class(CKO_SECRET_KEY).add_bool(CKA_SIGN, true).add_string(CKA_LABEL,
//   "x/v1");
class AttributeTemplate {
 public:
  AttributeTemplate& add_bool(CK_ATTRIBUTE_TYPE type, bool value);
  AttributeTemplate& add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  AttributeTemplate& add_class(CK_OBJECT_CLASS value) { return add_ulong(CKA_CLASS, value); }
  AttributeTemplate& add_key_type(CK_KEY_TYPE value) { return add_ulong(CKA_KEY_TYPE, value); }
  AttributeTemplate& add_bytes(CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> value);
  AttributeTemplate& add_string(CK_ATTRIBUTE_TYPE type, std::string_view value);
  AttributeTemplate& add_date(CK_ATTRIBUTE_TYPE type, const CK_DATE& value);

  // Pointers stay valid until the template is changed or destroyed.
  CK_ATTRIBUTE* data();
  CK_ULONG size() const noexcept { return static_cast<CK_ULONG>(types_.size()); }

 private:
  std::vector<CK_ATTRIBUTE_TYPE> types_;
  std::vector<std::vector<std::uint8_t>> values_;
  std::vector<CK_ATTRIBUTE> attrs_;
};

// Calls C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal; at most `max`
// handles (0 = all).
std::vector<CK_OBJECT_HANDLE> find_objects(Session& session, AttributeTemplate& tmpl,
                                           std::size_t max = 0);

// Allocation-free variant for the per-message path: fills `out` and returns the
// CK_RV of the first failing call (C_FindObjectsFinal is always called once
// C_FindObjectsInit succeeded). `fn` names the failing function.
CK_RV find_objects_into(Session& session, CK_ATTRIBUTE* tmpl, CK_ULONG count,
                        std::span<CK_OBJECT_HANDLE> out, CK_ULONG& found, const char*& fn) noexcept;

// CK_DATE for a unix time (UTC).
CK_DATE to_ck_date(std::int64_t unix_seconds) noexcept;
// "YYYY-MM-DD", or "" for an empty date.
std::string to_string(const CK_DATE& date);

// A non-owning view of one object through one session (Botan's Object).
class Object {
 public:
  Object(Session& session, CK_OBJECT_HANDLE handle) noexcept
      : session_(&session), handle_(handle) {}

  CK_OBJECT_HANDLE handle() const noexcept { return handle_; }

  // Calls C_GetAttributeValue. Throws HsmError for the secret value attribute.
  // std::nullopt when the object does not have the attribute
  // (CKR_ATTRIBUTE_TYPE_INVALID) or it is sensitive.
  std::optional<std::vector<std::uint8_t>> get_bytes(CK_ATTRIBUTE_TYPE type) const;
  std::optional<bool> get_bool(CK_ATTRIBUTE_TYPE type) const;
  std::optional<CK_ULONG> get_ulong(CK_ATTRIBUTE_TYPE type) const;
  std::optional<CK_DATE> get_date(CK_ATTRIBUTE_TYPE type) const;

  // Calls C_SetAttributeValue.
  void set_attributes(AttributeTemplate& tmpl);
  // Calls C_DestroyObject.
  void destroy();

 private:
  Session* session_;
  CK_OBJECT_HANDLE handle_;
};

// An object this code created and must destroy (a session key for a self test):
// C_DestroyObject in the destructor. Move-only.
class UniqueObject {
 public:
  UniqueObject() noexcept = default;
  UniqueObject(Session& session, CK_OBJECT_HANDLE handle) noexcept
      : session_(&session), handle_(handle) {}
  ~UniqueObject();
  UniqueObject(UniqueObject&& other) noexcept;
  UniqueObject& operator=(UniqueObject&& other) noexcept;
  UniqueObject(const UniqueObject&) = delete;
  UniqueObject& operator=(const UniqueObject&) = delete;

  CK_OBJECT_HANDLE handle() const noexcept { return handle_; }
  // Destroys now; throws Pkcs11Error on failure.
  void destroy();
  CK_OBJECT_HANDLE release() noexcept;

 private:
  Session* session_ = nullptr;
  CK_OBJECT_HANDLE handle_ = CK_INVALID_HANDLE;
};

// Calls C_GenerateKey with a mechanism that takes no parameter.
CK_OBJECT_HANDLE generate_key(Session& session, CK_MECHANISM_TYPE mechanism,
                              AttributeTemplate& tmpl);

}  // namespace edge::hsm
