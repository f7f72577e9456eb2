// Driving the PKCS#11 fault shim (build/lib/libedge_p11shim.so) from a test.
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/test/softhsm_fixture.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace edge::test {

// Path of the shim module built with the tests.
const char* shim_module_path() noexcept;

// Points the shim (through EDGE_P11SHIM_MODULE / _CONTROL / _STATS, restored on
// destruction) at the real SoftHSM module and at a control file in the token's
// directory, which starts empty (everything forwarded).
//
//   edge::test::SoftHsmToken token;
//   edge::test::FaultShim shim(token);
//   edge::hsm::Hsm hsm(shim.config());       // loads the shim instead of SoftHSM
//   shim.set("C_Sign CKR_DEVICE_ERROR count=3");
//   ... shim.injected("C_Sign") == 3 ...
//   shim.clear();
class FaultShim {
 public:
  explicit FaultShim(const SoftHsmToken& token);
  ~FaultShim();
  FaultShim(const FaultShim&) = delete;
  FaultShim& operator=(const FaultShim&) = delete;

  // token.config() with module_path = the shim.
  edge::hsm::HsmConfig config() const;

  // Replaces the rules (syntax: tests/support/README.md). Throws std::invalid_argument
  // when a line does not parse, so a typo cannot turn a fault test into a no-op.
  // The running shim picks the new rules up on its next call.
  void set(std::string_view rules);
  void clear() { set(""); }

  // In-process counters of the loaded shim (0 while it is not loaded).
  unsigned long long injected() const;
  unsigned long long injected(std::string_view fn) const;
  unsigned long long calls(std::string_view fn) const;
  // Sessions open in the real module right now, as seen through the shim.
  long long open_sessions() const;
  // C_Finalize calls made while another thread was inside a call of the module.
  unsigned long long finalize_while_busy() const;
  // C_DestroyObject calls on an object handle that the calling session had not got itself
  // (from C_FindObjects, C_GenerateKey, C_GenerateKeyPair or C_CreateObject): a handle kept
  // from an earlier session, which a module restart may have renumbered. Not reset by
  // reset_stats().
  unsigned long long destroy_unfound() const;
  void reset_stats();

  // The stats file the shim writes for other processes (after each injected fault, at
  // C_Finalize and at unload): {"injected_total": n, "calls C_Login": n, "injected C_Sign": n}.
  std::map<std::string, unsigned long long> read_stats_file() const;

  const std::filesystem::path& control_path() const noexcept { return control_; }
  const std::filesystem::path& stats_path() const noexcept { return stats_; }
  // Environment for a child process that loads the shim.
  std::vector<std::pair<std::string, std::string>> child_env() const;

 private:
  const SoftHsmToken& token_;
  std::filesystem::path control_, stats_, history_;
  unsigned generation_ = 0;
  std::unique_ptr<ScopedEnv> env_module_, env_control_, env_stats_;
};

}  // namespace edge::test
