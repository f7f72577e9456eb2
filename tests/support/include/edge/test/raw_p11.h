// Plain PKCS#11 access for tests and benchmarks: independent of edge_hsm, to check what it did.
#pragma once

#include <p11-kit/pkcs11.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edge::test {

// Throws std::runtime_error("C_Xxx failed: CKR_...") unless rv == CKR_OK.
void p11_check(CK_RV rv, const char* function);
std::string p11_rv_name(CK_RV rv);

// Loads a module and initialises it (CKF_OS_LOCKING_OK). A module that is already
// initialised in this process (CKR_CRYPTOKI_ALREADY_INITIALIZED: an edge::hsm::Hsm is
// alive) is used as it is and not finalised on destruction.
class RawP11 {
 public:
  explicit RawP11(const std::string& module_path);
  ~RawP11();
  RawP11(const RawP11&) = delete;
  RawP11& operator=(const RawP11&) = delete;

  CK_FUNCTION_LIST& f() const noexcept { return *list_; }
  bool owns_initialize() const noexcept { return initialized_; }

  // The slot whose token carries `label`; throws when there is none.
  CK_SLOT_ID slot_by_label(std::string_view label) const;
  CK_SESSION_HANDLE open_session(CK_SLOT_ID slot, bool read_write) const;
  // C_Login as CKU_USER; CKR_USER_ALREADY_LOGGED_IN counts as success.
  void login(CK_SESSION_HANDLE session, std::string_view pin) const;
  std::vector<CK_OBJECT_HANDLE> find(CK_SESSION_HANDLE session, const std::vector<CK_ATTRIBUTE>& tmpl) const;
  std::vector<CK_OBJECT_HANDLE> find_by_label(CK_SESSION_HANDLE session, std::string_view label) const;
  // A 32-byte CKK_GENERIC_SECRET token key for HMAC, as the design asks for key-set keys.
  CK_OBJECT_HANDLE generate_hmac_key(CK_SESSION_HANDLE session, std::string_view label) const;
  // A CKK_GENERIC_SECRET token key made with C_CreateObject from a value the caller knows,
  // otherwise as private, sensitive, non-extractable and sign/verify as edge_hsm's keys:
  // what a PIN holder could plant to forge MACs offline. The token marks it CKA_LOCAL false.
  CK_OBJECT_HANDLE create_known_hmac_key(CK_SESSION_HANDLE session, std::string_view label,
                                         const std::vector<unsigned char>& id,
                                         const std::vector<unsigned char>& value) const;

 private:
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* list_ = nullptr;
  bool initialized_ = false;
};

// Attributes of a secret key as the token reports them.
struct SecretKeyAttributes {
  CK_OBJECT_CLASS object_class = 0;
  CK_KEY_TYPE key_type = 0;
  CK_ULONG value_len = 0;
  bool token = false, is_private = false, sensitive = false, extractable = true, always_sensitive = false,
       never_extractable = false, local = false, sign = false, verify = false, encrypt = true, decrypt = true,
       wrap = true, unwrap = true, derive = true, modifiable = true;
  std::string label;
  std::vector<unsigned char> id;
  CK_RV value_rv = CKR_OK;  // what C_GetAttributeValue(CKA_VALUE) returned
};

SecretKeyAttributes read_secret_key(const RawP11& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key);

// One HMAC-SHA256 of `data` with `key` through C_SignInit + C_Sign.
std::vector<unsigned char> raw_hmac_sha256(const RawP11& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                                           std::string_view data);

}  // namespace edge::test
