// RawP11: direct PKCS#11 calls used by tests to check edge_hsm from the outside.
#include <edge/test/raw_p11.h>

#include "../shim/shim_rules.h"

#include <dlfcn.h>

#include <cstring>
#include <stdexcept>

namespace edge::test {

std::string p11_rv_name(CK_RV rv) { return shim::ckr_to_name(rv); }

void p11_check(CK_RV rv, const char* function) {
  if (rv != CKR_OK) throw std::runtime_error(std::string(function) + " failed: " + p11_rv_name(rv));
}

RawP11::RawP11(const std::string& module_path) {
  handle_ = ::dlopen(module_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) throw std::runtime_error("dlopen " + module_path + ": " + ::dlerror());
  auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle_, "C_GetFunctionList"));
  if (!get) throw std::runtime_error(module_path + " has no C_GetFunctionList");
  p11_check(get(&list_), "C_GetFunctionList");
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = list_->C_Initialize(&args);
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) return;
  p11_check(rv, "C_Initialize");
  initialized_ = true;
}

RawP11::~RawP11() {
  if (initialized_) list_->C_Finalize(nullptr);
  // The module stays mapped: SoftHSM and the shim keep process-wide state that a later
  // load in the same test must find intact.
}

CK_SLOT_ID RawP11::slot_by_label(std::string_view label) const {
  CK_ULONG n = 0;
  p11_check(list_->C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(n);
  p11_check(list_->C_GetSlotList(CK_TRUE, slots.data(), &n), "C_GetSlotList");
  slots.resize(n);
  for (auto s : slots) {
    CK_TOKEN_INFO info{};
    if (list_->C_GetTokenInfo(s, &info) != CKR_OK) continue;
    std::string l(reinterpret_cast<const char*>(info.label), sizeof info.label);
    l.erase(l.find_last_not_of(' ') + 1);
    if (l == label) return s;
  }
  throw std::runtime_error("no token labelled " + std::string(label));
}

CK_SESSION_HANDLE RawP11::open_session(CK_SLOT_ID slot, bool read_write) const {
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
  p11_check(list_->C_OpenSession(slot, flags, nullptr, nullptr, &s), "C_OpenSession");
  return s;
}

void RawP11::login(CK_SESSION_HANDLE session, std::string_view pin) const {
  std::string p(pin);
  CK_RV rv = list_->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(p.data()), p.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) return;
  p11_check(rv, "C_Login");
}

std::vector<CK_OBJECT_HANDLE> RawP11::find(CK_SESSION_HANDLE session,
                                           const std::vector<CK_ATTRIBUTE>& tmpl) const {
  auto t = tmpl;
  p11_check(list_->C_FindObjectsInit(session, t.data(), t.size()), "C_FindObjectsInit");
  std::vector<CK_OBJECT_HANDLE> out;
  CK_RV rv = CKR_OK;
  while (true) {
    CK_OBJECT_HANDLE batch[32];
    CK_ULONG got = 0;
    rv = list_->C_FindObjects(session, batch, 32, &got);
    if (rv != CKR_OK || got == 0) break;
    out.insert(out.end(), batch, batch + got);
  }
  list_->C_FindObjectsFinal(session);
  p11_check(rv, "C_FindObjects");
  return out;
}

std::vector<CK_OBJECT_HANDLE> RawP11::find_by_label(CK_SESSION_HANDLE session, std::string_view label) const {
  std::string l(label);
  return find(session, {{CKA_LABEL, l.data(), l.size()}});
}

CK_OBJECT_HANDLE RawP11::generate_hmac_key(CK_SESSION_HANDLE session, std::string_view label) const {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_GENERIC_SECRET;
  CK_ULONG len = 32;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  std::string l(label);
  std::vector<CK_ATTRIBUTE> tmpl = {
      {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},   {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no}, {CKA_SIGN, &yes, sizeof yes},
      {CKA_VERIFY, &yes, sizeof yes},    {CKA_LABEL, l.data(), l.size()},
  };
  CK_MECHANISM mech{CKM_GENERIC_SECRET_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  p11_check(list_->C_GenerateKey(session, &mech, tmpl.data(), tmpl.size(), &key), "C_GenerateKey");
  return key;
}

CK_OBJECT_HANDLE RawP11::create_known_hmac_key(CK_SESSION_HANDLE session, std::string_view label,
                                               const std::vector<unsigned char>& id,
                                               const std::vector<unsigned char>& value) const {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_GENERIC_SECRET;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  std::string l(label);
  std::vector<unsigned char> i(id), v(value);
  std::vector<CK_ATTRIBUTE> tmpl = {
      {CKA_CLASS, &cls, sizeof cls},   {CKA_KEY_TYPE, &type, sizeof type}, {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes}, {CKA_SENSITIVE, &yes, sizeof yes},  {CKA_EXTRACTABLE, &no, sizeof no},
      {CKA_SIGN, &yes, sizeof yes},    {CKA_VERIFY, &yes, sizeof yes},     {CKA_LABEL, l.data(), l.size()},
      {CKA_ID, i.data(), i.size()},    {CKA_VALUE, v.data(), v.size()},
  };
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  p11_check(list_->C_CreateObject(session, tmpl.data(), tmpl.size(), &key), "C_CreateObject");
  return key;
}

SecretKeyAttributes read_secret_key(const RawP11& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key) {
  SecretKeyAttributes a;
  CK_BBOOL b[15] = {};
  std::vector<CK_ATTRIBUTE> tmpl = {
      {CKA_CLASS, &a.object_class, sizeof a.object_class},
      {CKA_KEY_TYPE, &a.key_type, sizeof a.key_type},
      {CKA_VALUE_LEN, &a.value_len, sizeof a.value_len},
      {CKA_TOKEN, &b[0], 1},
      {CKA_PRIVATE, &b[1], 1},
      {CKA_SENSITIVE, &b[2], 1},
      {CKA_EXTRACTABLE, &b[3], 1},
      {CKA_ALWAYS_SENSITIVE, &b[4], 1},
      {CKA_NEVER_EXTRACTABLE, &b[5], 1},
      {CKA_LOCAL, &b[6], 1},
      {CKA_SIGN, &b[7], 1},
      {CKA_VERIFY, &b[8], 1},
      {CKA_ENCRYPT, &b[9], 1},
      {CKA_DECRYPT, &b[10], 1},
      {CKA_WRAP, &b[11], 1},
      {CKA_UNWRAP, &b[12], 1},
      {CKA_DERIVE, &b[13], 1},
      {CKA_MODIFIABLE, &b[14], 1},
  };
  p11_check(p11.f().C_GetAttributeValue(session, key, tmpl.data(), tmpl.size()), "C_GetAttributeValue");
  a.token = b[0];
  a.is_private = b[1];
  a.sensitive = b[2];
  a.extractable = b[3];
  a.always_sensitive = b[4];
  a.never_extractable = b[5];
  a.local = b[6];
  a.sign = b[7];
  a.verify = b[8];
  a.encrypt = b[9];
  a.decrypt = b[10];
  a.wrap = b[11];
  a.unwrap = b[12];
  a.derive = b[13];
  a.modifiable = b[14];

  // Variable-length attributes: ask for the size first.
  CK_ATTRIBUTE var[2] = {{CKA_LABEL, nullptr, 0}, {CKA_ID, nullptr, 0}};
  p11_check(p11.f().C_GetAttributeValue(session, key, var, 2), "C_GetAttributeValue(size)");
  a.label.resize(var[0].ulValueLen);
  a.id.resize(var[1].ulValueLen);
  var[0].pValue = a.label.data();
  var[1].pValue = a.id.data();
  p11_check(p11.f().C_GetAttributeValue(session, key, var, 2), "C_GetAttributeValue(label,id)");

  unsigned char value[512];
  CK_ATTRIBUTE v{CKA_VALUE, value, sizeof value};
  a.value_rv = p11.f().C_GetAttributeValue(session, key, &v, 1);
  std::memset(value, 0, sizeof value);
  return a;
}

std::vector<unsigned char> raw_hmac_sha256(const RawP11& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                                           std::string_view data) {
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  p11_check(p11.f().C_SignInit(session, &mech, key), "C_SignInit");
  std::vector<unsigned char> out(32);
  CK_ULONG len = out.size();
  std::string d(data);
  p11_check(p11.f().C_Sign(session, reinterpret_cast<CK_BYTE*>(d.data()), d.size(), out.data(), &len),
            "C_Sign");
  out.resize(len);
  return out;
}

}  // namespace edge::test
