// Objects: templates, searches, attribute access (never the secret value), key generation.
#include <edge/hsm/error.h>
#include <edge/hsm/object.h>
#include <edge/hsm/session.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <utility>

namespace edge::hsm {

namespace {
// PKCS#11 type of a key's secret value; see is_secret_attribute.
constexpr CK_ATTRIBUTE_TYPE kSecretValueType = 0x11UL;
}  // namespace

bool is_secret_attribute(CK_ATTRIBUTE_TYPE type) noexcept { return type == kSecretValueType; }

AttributeTemplate& AttributeTemplate::add_bytes(CK_ATTRIBUTE_TYPE type,
                                                std::span<const std::uint8_t> value) {
  types_.push_back(type);
  values_.emplace_back(value.begin(), value.end());
  return *this;
}

AttributeTemplate& AttributeTemplate::add_bool(CK_ATTRIBUTE_TYPE type, bool value) {
  CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
  return add_bytes(type, std::span(reinterpret_cast<const std::uint8_t*>(&b), sizeof b));
}

AttributeTemplate& AttributeTemplate::add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  return add_bytes(type, std::span(reinterpret_cast<const std::uint8_t*>(&value), sizeof value));
}

AttributeTemplate& AttributeTemplate::add_string(CK_ATTRIBUTE_TYPE type, std::string_view value) {
  return add_bytes(type,
                   std::span(reinterpret_cast<const std::uint8_t*>(value.data()), value.size()));
}

AttributeTemplate& AttributeTemplate::add_date(CK_ATTRIBUTE_TYPE type, const CK_DATE& value) {
  return add_bytes(type, std::span(reinterpret_cast<const std::uint8_t*>(&value), sizeof value));
}

CK_ATTRIBUTE* AttributeTemplate::data() {
  attrs_.resize(types_.size());
  for (std::size_t i = 0; i < types_.size(); ++i) {
    attrs_[i].type = types_[i];
    attrs_[i].pValue = values_[i].empty() ? nullptr : values_[i].data();
    attrs_[i].ulValueLen = static_cast<CK_ULONG>(values_[i].size());
  }
  return attrs_.data();
}

CK_RV find_objects_into(Session& session, CK_ATTRIBUTE* tmpl, CK_ULONG count,
                        std::span<CK_OBJECT_HANDLE> out, CK_ULONG& found,
                        const char*& fn) noexcept {
  CK_FUNCTION_LIST* f = session.functions();
  found = 0;
  fn = "C_FindObjectsInit";
  CK_RV rv = f->C_FindObjectsInit(session.handle(), tmpl, count);
  if (rv != CKR_OK) return rv;
  fn = "C_FindObjects";
  rv = f->C_FindObjects(session.handle(), out.data(), static_cast<CK_ULONG>(out.size()), &found);
  CK_RV rv_final = f->C_FindObjectsFinal(session.handle());
  if (rv != CKR_OK) return rv;
  fn = "C_FindObjectsFinal";
  return rv_final;
}

std::vector<CK_OBJECT_HANDLE> find_objects(Session& session, AttributeTemplate& tmpl,
                                           std::size_t max) {
  CK_FUNCTION_LIST* f = session.functions();
  if (CK_RV rv = f->C_FindObjectsInit(session.handle(), tmpl.data(), tmpl.size()); rv != CKR_OK) {
    throw Pkcs11Error("C_FindObjectsInit", rv);
  }
  std::vector<CK_OBJECT_HANDLE> out;
  CK_OBJECT_HANDLE batch[64];
  for (;;) {
    CK_ULONG want = 64;
    if (max != 0 && max - out.size() < want) want = static_cast<CK_ULONG>(max - out.size());
    CK_ULONG got = 0;
    CK_RV rv = f->C_FindObjects(session.handle(), batch, want, &got);
    if (rv != CKR_OK) {
      f->C_FindObjectsFinal(session.handle());
      throw Pkcs11Error("C_FindObjects", rv);
    }
    out.insert(out.end(), batch, batch + got);
    if (got < want || (max != 0 && out.size() >= max)) break;
  }
  if (CK_RV rv = f->C_FindObjectsFinal(session.handle()); rv != CKR_OK)
    throw Pkcs11Error("C_FindObjectsFinal", rv);
  return out;
}

CK_DATE to_ck_date(std::int64_t unix_seconds) noexcept {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y%m%d", &tm);
  CK_DATE d{};
  std::memcpy(d.year, buf, 4);
  std::memcpy(d.month, buf + 4, 2);
  std::memcpy(d.day, buf + 6, 2);
  return d;
}

std::string to_string(const CK_DATE& date) {
  auto blank = [](const unsigned char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      if (p[i] != ' ' && p[i] != '\0') return false;
    return true;
  };
  if (blank(date.year, 4) && blank(date.month, 2) && blank(date.day, 2)) return {};
  std::string s;
  s.append(reinterpret_cast<const char*>(date.year), 4);
  s += '-';
  s.append(reinterpret_cast<const char*>(date.month), 2);
  s += '-';
  s.append(reinterpret_cast<const char*>(date.day), 2);
  return s;
}

std::optional<std::vector<std::uint8_t>> Object::get_bytes(CK_ATTRIBUTE_TYPE type) const {
  if (is_secret_attribute(type)) throw HsmError("refusing to read a key's secret value");
  CK_FUNCTION_LIST* f = session_->functions();
  CK_ATTRIBUTE a{type, nullptr, 0};
  CK_RV rv = f->C_GetAttributeValue(session_->handle(), handle_, &a, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) return std::nullopt;
  if (rv != CKR_OK) throw Pkcs11Error("C_GetAttributeValue", rv);
  if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return std::nullopt;
  std::vector<std::uint8_t> v(a.ulValueLen);
  a.pValue = v.empty() ? nullptr : v.data();
  if (v.empty()) return v;
  rv = f->C_GetAttributeValue(session_->handle(), handle_, &a, 1);
  if (rv != CKR_OK) throw Pkcs11Error("C_GetAttributeValue", rv);
  v.resize(a.ulValueLen);
  return v;
}

std::optional<bool> Object::get_bool(CK_ATTRIBUTE_TYPE type) const {
  auto v = get_bytes(type);
  if (!v || v->size() != sizeof(CK_BBOOL)) return std::nullopt;
  return (*v)[0] != CK_FALSE;
}

std::optional<CK_ULONG> Object::get_ulong(CK_ATTRIBUTE_TYPE type) const {
  auto v = get_bytes(type);
  if (!v || v->size() != sizeof(CK_ULONG)) return std::nullopt;
  CK_ULONG u;
  std::memcpy(&u, v->data(), sizeof u);
  return u;
}

std::optional<CK_DATE> Object::get_date(CK_ATTRIBUTE_TYPE type) const {
  auto v = get_bytes(type);
  if (!v || v->size() != sizeof(CK_DATE)) return std::nullopt;
  CK_DATE d;
  std::memcpy(&d, v->data(), sizeof d);
  return d;
}

void Object::set_attributes(AttributeTemplate& tmpl) {
  CK_RV rv = session_->functions()->C_SetAttributeValue(session_->handle(), handle_, tmpl.data(),
                                                        tmpl.size());
  if (rv != CKR_OK) throw Pkcs11Error("C_SetAttributeValue", rv);
}

void Object::destroy() {
  CK_RV rv = session_->functions()->C_DestroyObject(session_->handle(), handle_);
  if (rv != CKR_OK) throw Pkcs11Error("C_DestroyObject", rv);
}

UniqueObject::~UniqueObject() {
  if (session_ != nullptr && handle_ != CK_INVALID_HANDLE) {
    session_->functions()->C_DestroyObject(session_->handle(), handle_);
  }
}

UniqueObject::UniqueObject(UniqueObject&& other) noexcept
    : session_(other.session_), handle_(std::exchange(other.handle_, CK_INVALID_HANDLE)) {}

UniqueObject& UniqueObject::operator=(UniqueObject&& other) noexcept {
  if (this != &other) {
    if (session_ != nullptr && handle_ != CK_INVALID_HANDLE) {
      session_->functions()->C_DestroyObject(session_->handle(), handle_);
    }
    session_ = other.session_;
    handle_ = std::exchange(other.handle_, CK_INVALID_HANDLE);
  }
  return *this;
}

void UniqueObject::destroy() {
  if (session_ == nullptr || handle_ == CK_INVALID_HANDLE) return;
  Object(*session_, std::exchange(handle_, CK_INVALID_HANDLE)).destroy();
}

CK_OBJECT_HANDLE UniqueObject::release() noexcept {
  return std::exchange(handle_, CK_INVALID_HANDLE);
}

CK_OBJECT_HANDLE generate_key(Session& session, CK_MECHANISM_TYPE mechanism,
                              AttributeTemplate& tmpl) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv =
      session.functions()->C_GenerateKey(session.handle(), &mech, tmpl.data(), tmpl.size(), &h);
  if (rv != CKR_OK) throw Pkcs11Error("C_GenerateKey", rv);
  return h;
}

}  // namespace edge::hsm
