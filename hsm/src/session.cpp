// Session: C_OpenSession / C_CloseSession ownership, login and session state.
#include <edge/hsm/error.h>
#include <edge/hsm/secret.h>
#include <edge/hsm/session.h>
#include <edge/hsm/slot.h>

#include <string>
#include <utility>

namespace edge::hsm {

namespace {
CK_UTF8CHAR_PTR pin_ptr(const SecretString& pin) {
  // PKCS#11 takes a non-const pointer but does not write through it.
  return reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.expose().data()));
}
}  // namespace

Session::Session(const Slot& slot, bool read_write) {
  if (CK_RV rv = open(slot.functions(), slot.id(), read_write, *this); rv != CKR_OK) {
    throw Pkcs11Error("C_OpenSession", rv);
  }
}

CK_RV Session::open(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot, bool read_write, Session& out) noexcept {
  CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = functions->C_OpenSession(slot, flags, nullptr, nullptr, &h);
  if (rv == CKR_OK) out = Session(functions, h);
  return rv;
}

Session::~Session() {
  if (handle_ != CK_INVALID_HANDLE && fn_ != nullptr) fn_->C_CloseSession(handle_);
}

Session::Session(Session&& other) noexcept
    : fn_(other.fn_), handle_(std::exchange(other.handle_, CK_INVALID_HANDLE)) {}

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    if (handle_ != CK_INVALID_HANDLE && fn_ != nullptr) fn_->C_CloseSession(handle_);
    fn_ = other.fn_;
    handle_ = std::exchange(other.handle_, CK_INVALID_HANDLE);
  }
  return *this;
}

std::string Session::login_refusal(CK_USER_TYPE user, CK_RV* unreadable) const {
  if (unreadable != nullptr) *unreadable = CKR_OK;
  CK_SESSION_INFO si{};
  if (CK_RV rv = fn_->C_GetSessionInfo(handle_, &si); rv != CKR_OK) {
    if (unreadable != nullptr) *unreadable = rv;
    return std::string("cannot read the token flags before C_Login (C_GetSessionInfo: ") + ckr_name(rv) + ")";
  }
  CK_TOKEN_INFO ti{};
  if (CK_RV rv = fn_->C_GetTokenInfo(si.slotID, &ti); rv != CKR_OK) {
    if (unreadable != nullptr) *unreadable = rv;
    return std::string("cannot read the token flags before C_Login (C_GetTokenInfo: ") + ckr_name(rv) + ")";
  }
  const bool so = user == CKU_SO;
  const CK_FLAGS locked = so ? CKF_SO_PIN_LOCKED : CKF_USER_PIN_LOCKED;
  const CK_FLAGS final_try = so ? CKF_SO_PIN_FINAL_TRY : CKF_USER_PIN_FINAL_TRY;
  const CK_FLAGS count_low = so ? CKF_SO_PIN_COUNT_LOW : CKF_USER_PIN_COUNT_LOW;
  const char* who = so ? "SO" : "user";
  const char* flag = (ti.flags & locked) != 0      ? "PIN_LOCKED"
                     : (ti.flags & final_try) != 0 ? "PIN_FINAL_TRY"
                     : (ti.flags & count_low) != 0 ? "PIN_COUNT_LOW"
                                                   : nullptr;
  if (flag == nullptr) return {};
  return std::string("C_Login not attempted: the token reports CKF_") + (so ? "SO_" : "USER_") + flag +
         " (a wrong " + who +
         " PIN has been tried before; one more could lock the token). Check the PIN, log in once "
         "by hand with the token's own tools to reset the counter, then restart";
}

CK_RV Session::try_login(CK_USER_TYPE user, const SecretString& pin) noexcept {
  try {
    CK_RV unreadable = CKR_OK;
    if (!login_refusal(user, &unreadable).empty()) return unreadable != CKR_OK ? unreadable : CKR_PIN_LOCKED;
  } catch (...) {
    return CKR_HOST_MEMORY;
  }
  CK_RV rv = fn_->C_Login(handle_, user, pin_ptr(pin), pin.size());
  return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

void Session::login(CK_USER_TYPE user, const SecretString& pin) {
  CK_RV unreadable = CKR_OK;
  if (std::string why = login_refusal(user, &unreadable); !why.empty()) {
    if (unreadable != CKR_OK) throw Pkcs11Error("C_GetTokenInfo", unreadable, why);
    throw Pkcs11Error("C_Login", CKR_PIN_LOCKED, why);
  }
  if (CK_RV rv = try_login(user, pin); rv != CKR_OK) throw Pkcs11Error("C_Login", rv);
}

void Session::logout() {
  CK_RV rv = fn_->C_Logout(handle_);
  if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN) throw Pkcs11Error("C_Logout", rv);
}

CK_RV Session::try_info(CK_SESSION_INFO& out) const noexcept { return fn_->C_GetSessionInfo(handle_, &out); }

CK_SESSION_INFO Session::info() const {
  CK_SESSION_INFO i{};
  if (CK_RV rv = try_info(i); rv != CKR_OK) throw Pkcs11Error("C_GetSessionInfo", rv);
  return i;
}

bool Session::logged_in() const {
  CK_STATE s = info().state;
  return s == CKS_RO_USER_FUNCTIONS || s == CKS_RW_USER_FUNCTIONS || s == CKS_RW_SO_FUNCTIONS;
}

void Session::init_pin(const SecretString& pin) {
  if (CK_RV rv = fn_->C_InitPIN(handle_, pin_ptr(pin), pin.size()); rv != CKR_OK)
    throw Pkcs11Error("C_InitPIN", rv);
}

void Session::close() {
  if (handle_ == CK_INVALID_HANDLE) return;
  CK_RV rv = fn_->C_CloseSession(std::exchange(handle_, CK_INVALID_HANDLE));
  if (rv != CKR_OK) throw Pkcs11Error("C_CloseSession", rv);
}

CK_SESSION_HANDLE Session::release() noexcept { return std::exchange(handle_, CK_INVALID_HANDLE); }

}  // namespace edge::hsm
