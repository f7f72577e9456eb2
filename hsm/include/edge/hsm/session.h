// Session: one PKCS#11 session (C_OpenSession / C_CloseSession), RAII and move-only; login.
#pragma once

#include <p11-kit/pkcs11.h>

#include <string>

namespace edge::hsm {

class SecretString;
class Slot;

// One session. PKCS#11 forbids using a session from two threads at once; the
// session pool hands each one to one thread at a time.
class Session {
 public:
  Session() noexcept = default;  // empty: owns nothing
  // Calls C_OpenSession (serial; read-write unless asked otherwise).
  explicit Session(const Slot& slot, bool read_write = true);
  // Takes ownership of an already open session handle.
  Session(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE handle) noexcept : fn_(functions), handle_(handle) {}
  ~Session();  // Calls C_CloseSession; errors are ignored (the session may already be gone).
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Calls C_OpenSession without throwing; on success `out` owns the session.
  static CK_RV open(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot, bool read_write, Session& out) noexcept;

  explicit operator bool() const noexcept { return handle_ != CK_INVALID_HANDLE; }
  CK_SESSION_HANDLE handle() const noexcept { return handle_; }
  CK_FUNCTION_LIST* functions() const noexcept { return fn_; }

  // Calls C_Login. CKR_USER_ALREADY_LOGGED_IN counts as success: login state
  // belongs to the application and token, not to this session.
  void login(CK_USER_TYPE user, const SecretString& pin);
  CK_RV try_login(CK_USER_TYPE user, const SecretString& pin) noexcept;
  // Reads the token flags (C_GetSessionInfo, C_GetTokenInfo) before a login:
  // empty when a C_Login may be tried, else why not (a PIN-count-low,
  // final-try or locked flag of that user type is set, or the flags cannot be
  // read). login / try_login call it and do not call C_Login when it refuses
  // (try_login answers CKR_PIN_LOCKED then): no attempt is ever spent on a
  // token that is one wrong PIN away from locking. When the flags cannot be
  // read, `unreadable` (if given) gets that call's CK_RV: a device fault, not a
  // PIN refusal (try_login answers it as such).
  std::string login_refusal(CK_USER_TYPE user, CK_RV* unreadable = nullptr) const;
  // Calls C_Logout; CKR_USER_NOT_LOGGED_IN counts as success.
  void logout();

  CK_SESSION_INFO info() const;  // C_GetSessionInfo
  CK_RV try_info(CK_SESSION_INFO& out) const noexcept;
  // True when the session is in a user (or SO) state, i.e. private objects are visible.
  bool logged_in() const;

  // Calls C_InitPIN (needs an SO session): sets the user PIN.
  void init_pin(const SecretString& pin);

  // Calls C_CloseSession now; throws on failure. The object is empty afterwards.
  void close();
  // Gives up ownership without closing.
  CK_SESSION_HANDLE release() noexcept;

 private:
  CK_FUNCTION_LIST* fn_ = nullptr;
  CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
};

}  // namespace edge::hsm
