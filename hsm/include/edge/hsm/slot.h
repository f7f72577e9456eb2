// Slot: a PKCS#11 slot and its token, found by token label / serial / RFC 7512 URI, never by index.
#pragma once

#include <p11-kit/pkcs11.h>

#include <string>
#include <string_view>
#include <vector>

namespace edge::hsm {

class Module;
class SecretString;

// Which token: by label, optionally narrowed by serial, or by an RFC 7512
// PKCS#11 URI ("pkcs11:token=edge-lab;serial=..."). Never by slot index:
// slot ids are not stable (SoftHSM derives them from the token serial and
// reassigns them when a token is initialized).
struct TokenSelector {
  std::string label;
  std::string serial;  // empty = any
  std::string uri;     // when set, overrides label/serial
};

// The token-selecting part of an RFC 7512 PKCS#11 URI, percent-decoded.
// Empty fields match anything.
struct Pkcs11Uri {
  std::string token;         // CK_TOKEN_INFO label
  std::string serial;        // serialNumber
  std::string manufacturer;  // token manufacturerID
  std::string model;         // token model
  std::string library_manufacturer;
  std::string library_description;
};

// Parses "pkcs11:token=edge%2Dlab;serial=1234". Accepts the token and library
// attributes above; ignores object attributes (object, id, type) and the query
// part (after '?', e.g. pin-source: our PIN comes from PinSource, and pin-value
// is never honoured); refuses slot-id / slot-description / slot-manufacturer
// (we never select by slot) and unknown attributes. Throws HsmError.
Pkcs11Uri parse_pkcs11_uri(std::string_view uri);

// A selector in canonical form: the URI if one is given, else label/serial.
Pkcs11Uri to_uri(const TokenSelector& selector);

struct SlotInfo {
  std::string description, manufacturer;
  CK_FLAGS flags = 0;
  bool token_present() const noexcept { return (flags & CKF_TOKEN_PRESENT) != 0; }
};

struct TokenInfo {
  std::string label, manufacturer, model, serial;  // blanks trimmed
  CK_FLAGS flags = 0;
  CK_ULONG session_count = 0, max_session_count = 0, min_pin_len = 0, max_pin_len = 0;
  CK_VERSION hardware_version{}, firmware_version{};
  bool initialized() const noexcept { return (flags & CKF_TOKEN_INITIALIZED) != 0; }
  bool user_pin_initialized() const noexcept { return (flags & CKF_USER_PIN_INITIALIZED) != 0; }
};

// A slot of a module. Holds no PKCS#11 resource (just the id) but is
// move-only like the other wrappers so it is never mistaken for a value that
// stays valid across a token re-initialization.
class Slot {
 public:
  Slot(const Module& module, CK_SLOT_ID id);
  Slot(CK_FUNCTION_LIST* functions, CK_SLOT_ID id) noexcept : fn_(functions), id_(id) {}
  Slot(Slot&&) noexcept = default;
  Slot& operator=(Slot&&) noexcept = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  CK_SLOT_ID id() const noexcept { return id_; }
  CK_FUNCTION_LIST* functions() const noexcept { return fn_; }

  // Calls C_GetSlotList; ids of slots (with a token present when asked).
  static std::vector<CK_SLOT_ID> list(const Module& module, bool token_present);

  SlotInfo slot_info() const;                                 // C_GetSlotInfo
  TokenInfo token_info() const;                               // C_GetTokenInfo
  std::vector<CK_MECHANISM_TYPE> mechanisms() const;          // C_GetMechanismList
  CK_MECHANISM_INFO mechanism_info(CK_MECHANISM_TYPE) const;  // C_GetMechanismInfo

  // Calls C_InitToken: (re)initializes the token with an SO PIN and a label
  // (at most 32 bytes, blank-padded). Destroys every object on the token.
  void init_token(const SecretString& so_pin, std::string_view label) const;

 private:
  CK_FUNCTION_LIST* fn_ = nullptr;
  CK_SLOT_ID id_ = 0;
};

// The slot whose token matches the selector. Throws HsmError when none or more
// than one matches; the message lists the tokens seen (label, serial, model).
Slot find_token_slot(const Module& module, const TokenSelector& selector);

// A slot holding an uninitialized token (SoftHSM always offers one), or throws.
Slot find_uninitialized_slot(const Module& module);

// Name of a mechanism ("CKM_SHA256_HMAC"); "CKM_0x..." for unknown ones.
std::string mechanism_name(CK_MECHANISM_TYPE mechanism);

}  // namespace edge::hsm
