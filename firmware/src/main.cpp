// edged: the SIP outbound edge daemon (composition root; nothing includes firmware/).
#include "daemon.h"

#include <edge/hsm/lab.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

constexpr const char* kUsage = R"(usage: edged [--state-dir DIR] [--config FILE] [--production]

  --state-dir DIR   state directory (default: $EDGE_STATE_DIR, else ./var)
  --config FILE     first boot only: the edged.conf to import as generation 1
                    of the config store (lab mode default: the embedded one);
                    later starts use the newest committed generation
  --production      provision nothing: refuse to start when the HSM token, the
                    key set or the configuration is missing
  --version, -h/--help

Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP restarts the SIP front end
in the committed generation (controlled restart, flows kept); SIGUSR1 logs a
status line. Manage a running edged with edgectl (<state>/mgmt.sock).
Exit status: 0 ok, 2 usage, 3 configuration, 4 HSM, 5 listeners/TLS, 1 other.
)";

}  // namespace

int main(int argc, char** argv) {
  edge::firmware::DaemonOptions o;
  o.state_dir = edge::hsm::default_state_dir();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "edged: %s needs a value\n", name);
        std::exit(edge::firmware::kExitUsage);  // NOLINT(concurrency-mt-unsafe): no thread runs yet
      }
      return argv[++i];
    };
    if (a == "--state-dir") {
      o.state_dir = value("--state-dir");
    } else if (a == "--config") {
      o.config_file = value("--config");
    } else if (a == "--production") {
      o.production = true;
    } else if (a == "--version") {
      std::printf("edged %s\n", EDGE_VERSION);
      return 0;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "edged: unknown argument '%s' (see --help)\n", a.c_str());
      return edge::firmware::kExitUsage;
    }
  }
  o.state_dir = std::filesystem::absolute(o.state_dir);
  return edge::firmware::run_daemon(o);
}
