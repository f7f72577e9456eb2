// Exporting SOFTHSM2_CONF before SoftHSM is initialized (private).
#pragma once

#include <edge/hsm/error.h>
#include <edge/hsm/module.h>

#include <stdlib.h>

#include <string>

namespace edge::hsm::detail {

// SoftHSM reads SOFTHSM2_CONF once, at C_Initialize: setting it later would
// silently point at the wrong token store, so that is refused instead.
inline void export_softhsm2_conf(const std::string& module_path, const std::string& conf) {
  const char* current = ::getenv("SOFTHSM2_CONF");
  if (Module::loaded(module_path) && (current == nullptr || conf != current)) {
    throw HsmError("SoftHSM is already initialized in this process with SOFTHSM2_CONF=" +
                   std::string(current ? current : "(unset)") + "; cannot switch to " + conf);
  }
  // Racy only against another thread reading the environment; this runs before the module is
  // initialized, while the process (tool or daemon start-up, test set-up) loads its HSM.
  ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
}

}  // namespace edge::hsm::detail
