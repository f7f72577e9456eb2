// The edged daemon: composes the HSM, the flow-token codec, the proxy rules and the transports.
#pragma once

#include "config_file.h"

#include <exception>
#include <filesystem>
#include <memory>
#include <string>

namespace edge::firmware {

struct DaemonOptions {
  std::filesystem::path state_dir;
  std::filesystem::path config_file;  // first boot only: imported as generation 1
  bool production = false;            // provision nothing; refuse to start when anything is missing
};

// Exit codes an operator can act on (also in docs/operations.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitConfig = 3,  // configuration file missing or invalid
  kExitHsm = 4,     // HSM module / token / PIN file / key set problem (a refused PIN: kExitPin)
  kExitListen = 5,  // a listener (SIP or management API) could not bind, TLS material did not load
  kExitPin = 6,     // the token refused the PIN, or C_Login was not tried because its flags say a
                    // wrong PIN was tried before (COUNT_LOW / FINAL_TRY / LOCKED): a restart would
                    // spend another attempt, so the unit does not restart on it
};

// The exit code for an exception from opening or using the HSM at start-up:
// kExitPin for a PIN-class PKCS#11 error (hsm::is_pin_error), else kExitHsm.
int hsm_exit_code(const std::exception& e) noexcept;

// Runs until SIGTERM or SIGINT (then drains and returns kExitOk). Starts in
// the newest committed generation of the config store (<state>/config); on
// first boot it imports --config (or, in lab mode, the embedded default) as
// generation 1. SIGHUP runs the management agent's controlled restart of the
// SIP front end (committed generation, key-set view re-read; listening sockets
// and client flows kept); SIGUSR1 logs a status line. The management API
// listens on <state>/mgmt.sock (mgmt.socket) and, when configured, on TCP with mTLS.
int run_daemon(const DaemonOptions& options);

}  // namespace edge::firmware
