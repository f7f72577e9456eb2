// The edged daemon: composes the HSM, the flow-token codec, the proxy rules and the transports.
#pragma once

#include "config_file.h"

#include <filesystem>
#include <memory>
#include <string>

namespace edge::firmware {

struct DaemonOptions {
  std::filesystem::path state_dir;
  std::filesystem::path config_file;  // empty: <state>/edged.conf
  bool production = false;            // provision nothing; refuse to start when anything is missing
};

// Exit codes an operator can act on (also in docs/operations.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitConfig = 3,   // configuration file missing or invalid
  kExitHsm = 4,      // HSM module / token / PIN / key set problem
  kExitListen = 5,   // a listener could not bind, TLS material did not load
};

// Runs until SIGTERM or SIGINT (then drains and returns kExitOk). SIGHUP
// re-reads the configuration and swaps the proxy rules and TLS material
// without closing listening sockets or client flows; SIGUSR1 logs a status line.
int run_daemon(const DaemonOptions& options);

}  // namespace edge::firmware
