// Module: dlopen, C_GetFunctionList, a process-wide shared C_Initialize / C_Finalize.
#include <edge/hsm/error.h>
#include <edge/hsm/module.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <map>
#include <mutex>

namespace edge::hsm {

namespace detail {

struct LoadedModule {
  std::string path;
  void* dl = nullptr;
  CK_FUNCTION_LIST* fn = nullptr;
  bool we_initialized = false;
  std::mutex init_mu;

  ~LoadedModule() {
    if (we_initialized && fn != nullptr) fn->C_Finalize(nullptr);
    if (dl != nullptr) ::dlclose(dl);  // RTLD_NODELETE: stays mapped
  }
};

}  // namespace detail

namespace {

// Library file -> the live shared instance. Keyed by canonical path so two
// spellings of one file share one initialization.
std::mutex g_registry_mu;
std::map<std::string, std::weak_ptr<detail::LoadedModule>>& registry() {
  static std::map<std::string, std::weak_ptr<detail::LoadedModule>> r;
  return r;
}

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) != nullptr) return buf;
  return path;
}

CK_RV initialize(CK_FUNCTION_LIST* fn) {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  return fn->C_Initialize(&args);
}

}  // namespace

Module::Module(const std::string& path) {
  const std::string key = canonical(path);
  std::lock_guard lock(g_registry_mu);
  auto& reg = registry();
  if (auto it = reg.find(key); it != reg.end()) {
    if (auto live = it->second.lock()) {
      shared_ = std::move(live);
      fn_ = shared_->fn;
      return;
    }
  }

  auto m = std::make_shared<detail::LoadedModule>();
  m->path = path;
  ::dlerror();
  m->dl = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (m->dl == nullptr) {
    const char* why = ::dlerror();
    throw HsmError("cannot load PKCS#11 module " + path + ": " + (why ? why : "dlopen failed"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(m->dl, "C_GetFunctionList"));
  if (get_list == nullptr) throw HsmError("PKCS#11 module " + path + " has no C_GetFunctionList");
  CK_FUNCTION_LIST* fn = nullptr;
  if (CK_RV rv = get_list(&fn); rv != CKR_OK) throw Pkcs11Error("C_GetFunctionList", rv, path);
  if (fn == nullptr) throw Pkcs11Error("C_GetFunctionList", CKR_GENERAL_ERROR, path);
  m->fn = fn;

  CK_RV rv = initialize(fn);
  if (rv == CKR_OK) {
    m->we_initialized = true;
  } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    throw Pkcs11Error("C_Initialize", rv, path);
  }
  reg[key] = m;
  shared_ = std::move(m);
  fn_ = fn;
}

Module::~Module() {
  // The registry lock orders our release against a concurrent constructor
  // that might otherwise pick up an instance that is finalizing.
  std::lock_guard lock(g_registry_mu);
  shared_.reset();
}

Module::Module(Module&& other) noexcept : shared_(std::move(other.shared_)), fn_(other.fn_) {
  other.fn_ = nullptr;
}

Module& Module::operator=(Module&& other) noexcept {
  if (this != &other) {
    {
      std::lock_guard lock(g_registry_mu);
      shared_ = std::move(other.shared_);
    }
    fn_ = other.fn_;
    other.fn_ = nullptr;
  }
  return *this;
}

const std::string& Module::path() const noexcept {
  static const std::string empty;
  return shared_ ? shared_->path : empty;
}

bool Module::initialized_by_us() const noexcept { return shared_ && shared_->we_initialized; }

void Module::reinitialize() {
  if (!shared_) throw HsmError("module: moved-from");
  std::lock_guard lock(shared_->init_mu);
  CK_RV rv = initialize(fn_);
  if (rv == CKR_OK) {
    shared_->we_initialized = true;
  } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    throw Pkcs11Error("C_Initialize", rv, shared_->path);
  }
}

void Module::restart() {
  if (!shared_) throw HsmError("module: moved-from");
  std::lock_guard lock(shared_->init_mu);
  if (!shared_->we_initialized) {
    throw HsmError("not restarting " + shared_->path +
                   ": it was initialized by somebody else in this process");
  }
  fn_->C_Finalize(nullptr);
  shared_->we_initialized = false;
  CK_RV rv = initialize(fn_);
  if (rv == CKR_OK) {
    shared_->we_initialized = true;
  } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    throw Pkcs11Error("C_Initialize", rv, shared_->path);
  }
}

bool Module::loaded(const std::string& path) {
  std::lock_guard lock(g_registry_mu);
  auto& reg = registry();
  auto it = reg.find(canonical(path));
  return it != reg.end() && !it->second.expired();
}

ModuleInfo Module::info() const {
  CK_INFO i{};
  if (CK_RV rv = fn_->C_GetInfo(&i); rv != CKR_OK) throw Pkcs11Error("C_GetInfo", rv);
  ModuleInfo out;
  out.manufacturer = trim_padded(i.manufacturerID, sizeof i.manufacturerID);
  out.description = trim_padded(i.libraryDescription, sizeof i.libraryDescription);
  out.cryptoki_version = i.cryptokiVersion;
  out.library_version = i.libraryVersion;
  return out;
}

std::string trim_padded(const unsigned char* field, std::size_t size) {
  std::size_t n = size;
  while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\0')) --n;
  return std::string(reinterpret_cast<const char*>(field), n);
}

}  // namespace edge::hsm
