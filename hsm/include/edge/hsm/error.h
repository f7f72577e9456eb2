// Error types of edge_hsm: every PKCS#11 failure carries the function and the CKR_ name.
#pragma once

#include <p11-kit/pkcs11.h>

#include <stdexcept>
#include <string>

namespace edge::hsm {

// Symbolic name of a CK_RV ("CKR_PIN_INCORRECT"); "CKR_0x..." for vendor codes.
const char* ckr_name(CK_RV rv) noexcept;

// A return code that says the PIN is the problem (incorrect, locked, expired,
// invalid, wrong length, not initialized): retrying with the same PIN spends an
// attempt on the token's counter, so nothing retries it without an operator.
bool is_pin_error(CK_RV rv) noexcept;

// Thrown for configuration / start-up / management failures of a PKCS#11 call.
// what() reads "C_Login failed: CKR_PIN_INCORRECT".
class Pkcs11Error : public std::runtime_error {
 public:
  Pkcs11Error(const char* function, CK_RV rv);
  Pkcs11Error(const char* function, CK_RV rv, const std::string& detail);
  CK_RV rv() const noexcept { return rv_; }
  const std::string& function() const noexcept { return function_; }

 private:
  std::string function_;
  CK_RV rv_;
};

// Thrown for failures that are not a PKCS#11 return code (token not found,
// key set missing, bad argument, HSM unavailable).
class HsmError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace edge::hsm
