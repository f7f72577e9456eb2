// Module: a loaded PKCS#11 library (dlopen + C_GetFunctionList + C_Initialize), RAII and move-only.
#pragma once

#include <p11-kit/pkcs11.h>

#include <memory>
#include <string>

namespace edge::hsm {

struct ModuleInfo {
  std::string manufacturer;  // C_GetInfo manufacturerID, blanks trimmed
  std::string description;   // libraryDescription, blanks trimmed
  CK_VERSION cryptoki_version{};
  CK_VERSION library_version{};
};

namespace detail {
struct LoadedModule;
}

// Loads a PKCS#11 module and initializes it with CKF_OS_LOCKING_OK (SoftHSM
// turns its internal locking off without it).
//
// PKCS#11 initialization is per process, not per caller, so all Module objects
// of the same library file share one loaded-and-initialized instance: the last
// one to go away calls C_Finalize, and only when we were the ones whose
// C_Initialize succeeded. If somebody else in the process initialized it first
// (C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED), we never finalize it.
// The library stays mapped after the last Module (RTLD_NODELETE): modules that
// register atexit handlers or thread-local destructors crash when unmapped.
class Module {
 public:
  // Throws HsmError when the file cannot be loaded or has no C_GetFunctionList,
  // Pkcs11Error("C_Initialize", rv) when initialization fails.
  explicit Module(const std::string& path);
  ~Module();
  Module(Module&&) noexcept;
  Module& operator=(Module&&) noexcept;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* functions() const noexcept { return fn_; }
  CK_FUNCTION_LIST* operator->() const noexcept { return fn_; }
  const std::string& path() const noexcept;

  // Calls C_GetInfo.
  ModuleInfo info() const;

  // True when our C_Initialize succeeded (so we will C_Finalize).
  bool initialized_by_us() const noexcept;

  // Calls C_Initialize again after another part of the process finalized the
  // library (calls then fail with CKR_CRYPTOKI_NOT_INITIALIZED). Tolerates
  // CKR_CRYPTOKI_ALREADY_INITIALIZED.
  void reinitialize();

  // Calls C_Finalize (errors ignored) and C_Initialize: the module forgets all
  // sessions and handles and re-reads its configuration and token store.
  // SoftHSM needs this after its token directory vanished: the token stays
  // broken (CKR_GENERAL_ERROR) in the running instance even when the files
  // come back. Affects every user of this module in the process, so it is
  // refused (HsmError) when somebody else initialized the module.
  void restart();

  // True when a Module for this library file is alive in the process (used to
  // warn that SOFTHSM2_CONF can no longer take effect).
  static bool loaded(const std::string& path);

 private:
  std::shared_ptr<detail::LoadedModule> shared_;
  CK_FUNCTION_LIST* fn_ = nullptr;
};

// Fixed-width blank-padded PKCS#11 text field -> std::string without the padding.
std::string trim_padded(const unsigned char* field, std::size_t size);

}  // namespace edge::hsm
