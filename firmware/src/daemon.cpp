// edged's composition and life cycle: configuration, first boot, HSM, SIP front end, management agent,
// signals.
#include "daemon.h"

#include "front_end.h"
#include "lab_tls.h"
#include "metrics.h"

#include <edge/hsm/error.h>
#include <edge/hsm/lab.h>
#include <edge/hsm/module.h>
#include <edge/hsm/slot.h>
#include <edge/mgmt/agent.h>
#include <edge/mgmt/config_store.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>
#include <edge/mgmt/server.h>

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "edged_default_conf.h"

namespace edge::firmware {
namespace {

// Lines the asynchronous log holds before it drops the oldest (about 2 MB).
constexpr std::size_t kLogQueueLines = 8192;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw StartError(kExitConfig, "cannot read configuration file " + path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The configuration edged starts with: the newest committed generation of the
// config store; on first boot the --config file, or in lab mode the embedded
// default (also written to <state>/edged.conf for the operator to read).
mgmt::v1::ApplianceConfig startup_config(const DaemonOptions& o) {
  mgmt::ConfigStore store(o.state_dir / "config");
  if (auto latest = store.latest()) {
    if (!o.config_file.empty()) {
      spdlog::warn(
          "event=config_file_ignored file={} generation={} reason=\"the config store holds committed "
          "generations; change them with edgectl\"",
          o.config_file.string(), latest->generation());
    }
    return latest->config();
  }
  std::string text, origin;
  if (!o.config_file.empty()) {
    text = read_file(o.config_file);
    origin = o.config_file.filename().string();
  } else if (o.production) {
    throw StartError(kExitConfig, "production mode: no committed configuration in " +
                                      (o.state_dir / "config").string() + " and no --config file to import");
  } else {
    text = kEdgedDefaultConfig;
    origin = "edged.conf";
    const auto copy = o.state_dir / "edged.conf";
    if (!std::filesystem::exists(copy)) std::ofstream(copy) << text;
    spdlog::info("event=first_boot source=embedded-default copy={}", copy.string());
  }
  try {
    return mgmt::import_conf_text(text, origin);
  } catch (const std::exception& e) {
    throw StartError(kExitConfig, e.what());
  }
}

bool contains_softhsm(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text.find("softhsm") != std::string::npos;
}

// Why `module_path` names a software token (SoftHSM), or "" when nothing in
// the path says so: a component of the path as written or of the file it
// resolves to (a symlink such as /usr/lib/pkcs11/vendor.so -> libsofthsm2.so).
std::string software_module_path(const std::string& module_path) {
  std::error_code ec;
  const std::filesystem::path written(module_path);
  const std::filesystem::path resolved = std::filesystem::weakly_canonical(written, ec);
  for (const auto& path : {written, ec ? written : resolved}) {
    for (const auto& part : path) {
      if (contains_softhsm(part.string())) return "module path " + path.string() + " is SoftHSM's";
    }
  }
  return {};
}

// Why the loaded module or the selected token is a software token, or "":
// what C_GetInfo and C_GetTokenInfo report (a copy of libsofthsm2.so under any
// name, or p11-kit's proxy in front of SoftHSM, still says SoftHSM there).
// Loads the module and reads the token information only: no session, no login.
std::string software_module_info(const hsm::HsmConfig& hc) {
  const hsm::Module probe(hc.module_path);
  const hsm::ModuleInfo mi = probe.info();
  if (contains_softhsm(mi.manufacturer) || contains_softhsm(mi.description)) {
    return "the module reports manufacturer '" + mi.manufacturer + "', library '" + mi.description + "'";
  }
  const hsm::TokenInfo ti = hsm::find_token_slot(probe, hc.token).token_info();
  if (contains_softhsm(ti.manufacturer) || contains_softhsm(ti.model)) {
    return "token '" + ti.label + "' reports manufacturer '" + ti.manufacturer + "', model '" + ti.model +
           "'";
  }
  return {};
}

// Production mode keeps the flow-token keys out of software tokens: SoftHSM
// keeps them in files that whoever can read the token directory (root, a
// backup) can copy. hsm.allow_software_token lets it through, loudly.
void check_software_token(const EdgedConfig& cfg, const hsm::HsmConfig& hc) {
  std::string why = software_module_path(hc.module_path);
  if (why.empty()) why = software_module_info(hc);
  if (why.empty()) return;
  if (!cfg.allow_software_token) {
    throw StartError(kExitHsm, "production mode refuses a software token (" + why +
                                   "): its keys are files on this host; set hsm.allow_software_token = "
                                   "true to accept it");
  }
  spdlog::warn(
      "event=software_token_allowed module={} reason=\"{}\" detail=\"hsm.allow_software_token is true: "
      "the flow-token keys are files on this host, not in a hardware HSM\"",
      hc.module_path, why);
}

// Lab mode provisions the SoftHSM token, the lab TLS certificate and the key
// set; production mode provisions nothing, refuses a lab HSM and (unless
// hsm.allow_software_token) any software token.
std::unique_ptr<hsm::Hsm> open_hsm(const DaemonOptions& o, const EdgedConfig& cfg,
                                   std::atomic<mgmt::Agent*>& agent) {
  try {
    if (cfg.lab_hsm) {
      if (o.production) {
        throw StartError(kExitHsm, "production mode needs a real HSM module (hsm.module), not softhsm-lab");
      }
      const auto lab = hsm::provision_lab_token(o.state_dir, cfg.hsm_token);
      if (lab.token_created) spdlog::info("event=lab_token_created label={}", lab.label);
    }
    hsm::HsmConfig hc = cfg.hsm_config();
    if (o.production) check_software_token(cfg, hc);
    // hsm/ has no logger (it depends on nothing above PKCS#11): its state
    // changes reach the operator and the agent's event stream through this hook.
    hc.on_state_change = [&agent](hsm::HsmState s, const std::string& reason) {
      spdlog::log(s == hsm::HsmState::available ? spdlog::level::info : spdlog::level::err,
                  "event=hsm_state state={} reason=\"{}\"", hsm::to_string(s), reason);
      if (auto* a = agent.load()) a->report_hsm_state(hsm::to_string(s), reason);
    };
    auto h = std::make_unique<hsm::Hsm>(std::move(hc));
    if (cfg.lab_hsm && !cfg.key_set.empty() && !h->keysets().exists(cfg.key_set)) {
      h->keysets().create(cfg.key_set);
      spdlog::info("event=key_set_created key_set={}", cfg.key_set);
    }
    return h;
  } catch (const StartError&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw StartError(kExitConfig, e.what());
  } catch (const std::exception& e) {
    throw StartError(hsm_exit_code(e), e.what());
  }
}

}  // namespace

int hsm_exit_code(const std::exception& e) noexcept {
  const auto* p11 = dynamic_cast<const hsm::Pkcs11Error*>(&e);
  return p11 != nullptr && hsm::is_pin_error(p11->rv()) ? kExitPin : kExitHsm;
}

int run_daemon(const DaemonOptions& o) {
  // Signals are taken synchronously by this thread; every thread started
  // below inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Asynchronous: SIP workers log (rate-limited) from the per-message path, and a
  // slow stderr (a journal under pressure, a full pipe) must not stall them. The
  // queue is bounded; when it is full the oldest line is dropped, never the
  // caller blocked (counted as log_dropped in the status line). Every line is
  // written out before run_daemon returns.
  spdlog::init_thread_pool(kLogQueueLines, 1);
  struct FlushLogOnReturn {
    ~FlushLogOnReturn() { spdlog::shutdown(); }
  } flush_log_on_return;
  auto logger = spdlog::create_async_nb<spdlog::sinks::stderr_sink_mt>("edged");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);

  std::atomic<mgmt::Agent*> agent_ptr{nullptr};
  std::unique_ptr<hsm::Hsm> hsm;
  std::unique_ptr<mgmt::Agent> agent;
  std::unique_ptr<SipFrontEnd> front_end;
  std::unique_ptr<mgmt::MgmtServer> server;
  // Reads the front end and the agent at every scrape: goes before either.
  std::unique_ptr<MetricsServer> metrics;
  try {
    std::filesystem::create_directories(o.state_dir);
    mgmt::v1::ApplianceConfig config = startup_config(o);
    // Parsed and checked before the HSM is reached, and again if the config
    // store's seal makes the edge start from another generation.
    const auto checked = [&o](const mgmt::v1::ApplianceConfig& c) {
      EdgedConfig parsed;
      try {
        parsed = parse_config_text(mgmt::export_conf_text(c), "configuration", o.state_dir);
      } catch (const std::exception& e) {
        throw StartError(kExitConfig, e.what());
      }
      // A core link that does not authenticate the core would let anyone on the path be the core.
      if (const std::string why = parsed.unverified_core_link(); o.production && !why.empty()) {
        throw StartError(kExitConfig, "production mode: " + why);
      }
      const bool tls = std::any_of(parsed.listeners.begin(), parsed.listeners.end(), [](const auto& l) {
        return l.transport == flow::Transport::tls || l.transport == flow::Transport::wss;
      });
      if (tls && !o.production &&
          ensure_lab_certificate(parsed.tls.certificate_chain_file, parsed.tls.private_key_file)) {
        spdlog::info("event=lab_certificate_created cert={}", parsed.tls.certificate_chain_file);
      }
      return parsed;
    };
    const EdgedConfig cfg = checked(config);
    hsm = open_hsm(o, cfg, agent_ptr);

    mgmt::AgentOptions ao;
    ao.state_dir = o.state_dir;
    ao.version = EDGE_VERSION;
    // The cell's admission runs edge-hsm (installed beside edged) in a process of its own.
    {
      std::error_code ec;
      const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!ec) ao.edge_hsm = self.parent_path() / "edge-hsm";
    }
    try {
      agent = std::make_unique<mgmt::Agent>(ao, *hsm, config);
    } catch (const mgmt::MgmtError& e) {
      // A store that cannot be trusted (sealed by a key this HSM lacks, nothing
      // verifies) stays so across restarts: an operator decides (exit 3 is in
      // the unit's RestartPreventExitStatus). An HSM that cannot answer may recover.
      throw StartError(e.code() == mgmt::ErrorCode::failed_precondition ? kExitConfig
                       : e.code() == mgmt::ErrorCode::unavailable       ? kExitHsm
                                                                        : kExitFailure,
                       std::string("config store: ") + e.what());
    } catch (const std::exception& e) {
      throw StartError(kExitFailure, std::string("config store: ") + e.what());
    }
    agent_ptr = agent.get();
    const mgmt::v1::ApplianceConfig verified = agent->boot_config();
    // The HSM was reached with the settings of the newest generation before its
    // seal could be checked. If the generation that verifies names another HSM,
    // those settings came from a refused file: never run on them.
    if (verified.hsm().SerializeAsString() != config.hsm().SerializeAsString()) {
      throw StartError(kExitConfig,
                       "config store: the HSM settings were read from a generation that does not "
                       "verify (edgectl status / the log name it); the newest verified generation, " +
                           std::to_string(agent->generation()) + ", names another HSM");
    }
    if (verified.SerializeAsString() != config.SerializeAsString()) checked(verified);
    config = verified;

    front_end = std::make_unique<SipFrontEnd>(
        *hsm, o.state_dir,
        parse_config_text(mgmt::export_conf_text(config), "configuration", o.state_dir).hsm_work_threads());
    front_end->boot(config);
    agent->attach_front_end(front_end.get());
    // With cell.name committed, this member's cell loop (mgmt/src/cell_link.h): it never
    // blocks the start on etcd; trouble shows as the cell's state in edgectl status.
    agent->start_cell();
    try {
      server = std::make_unique<mgmt::MgmtServer>(*agent, mgmt::server_options(config.mgmt(), o.state_dir));
    } catch (const std::exception& e) {
      throw StartError(kExitListen, std::string("management API: ") + e.what());
    }
    if (const MetricsOptions mo = metrics_options(config.metrics(), o.state_dir); mo.enabled()) {
      try {
        const mgmt::Agent* a = agent.get();
        metrics = std::make_unique<MetricsServer>(
            mo, std::vector<std::shared_ptr<prometheus::Collectable>>{
                    make_edge_collector(*front_end, [a] { return a->generation(); }),
                    make_cell_collector([a] { return a->cell_summary(); }), make_process_collector()});
      } catch (const std::exception& e) {
        throw StartError(kExitListen, e.what());
      }
      spdlog::info("event=metrics_listening address={} port={} tls={} client_certs={}", mo.listen,
                   metrics->port(), mo.tls(), mo.client_ca.empty() ? "none" : "required");
    }
    for (const auto& l : front_end->listening()) {
      spdlog::info("event=listening transport={} local={}", flow::to_string(l.transport),
                   flow::to_string(l.local));
    }
    const auto fs = front_end->status();
    spdlog::info(
        "event=started version={} generation={} key_set={} minting_version={} core={} mgmt_socket={}{}",
        EDGE_VERSION, agent->generation(), fs.key_set().empty() ? "-" : fs.key_set(), fs.minting_version(),
        config.sip().core_uri(), server->unix_socket().string(),
        server->tcp_port() ? " mgmt_tcp_port=" + std::to_string(server->tcp_port()) : std::string());
  } catch (const StartError& e) {
    const char* event = e.exit_code() == kExitConfig   ? "config_invalid"
                        : e.exit_code() == kExitHsm    ? "hsm_unusable"
                        : e.exit_code() == kExitPin    ? "hsm_pin_refused"
                        : e.exit_code() == kExitListen ? "listen_failed"
                                                       : "start_failed";
    spdlog::error("event={} reason=\"{}\"", event, e.what());
    // No agent (and no event stream) exists yet: systemd's status line is the
    // only surface besides the log (`systemctl status edged`).
    if (e.exit_code() == kExitPin) sd_notifyf(0, "STATUS=HSM PIN refused, C_Login not retried: %s", e.what());
    agent_ptr = nullptr;
    return e.exit_code();
  } catch (const std::exception& e) {
    spdlog::error("event=start_failed reason=\"{}\"", e.what());
    agent_ptr = nullptr;
    return kExitFailure;
  }

  // The agent's events (applies, rollbacks, restarts, key-set changes, HSM
  // faults) become log lines too: one line per event, as everything else.
  auto watch = agent->events().subscribe();
  std::atomic<bool> watching{true};
  std::thread event_logger([&watch, &watching] {
    while (watching.load()) {
      const auto e = watch->next(std::chrono::milliseconds(200));
      if (!e) continue;
      std::string kind = mgmt::v1::Event::Kind_Name(e->kind());
      std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::tolower(c); });
      spdlog::log(e->ok() ? spdlog::level::info : spdlog::level::warn,
                  "event=mgmt_{} generation={} actor={} ok={} message=\"{}\"", kind, e->generation(),
                  e->actor(), e->ok(), e->message());
    }
  });

  // systemd (Type=notify): READY once the listeners and the HSM are up; the
  // watchdog is fed from this loop only while the proxy's timers run on a
  // transport worker (SipFrontEnd::last_tick).
  std::uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  sd_notifyf(0, "READY=1\nSTATUS=generation %llu", static_cast<unsigned long long>(agent->generation()));
  const auto tick =
      watchdog ? std::chrono::microseconds(watchdog_usec / 2) : std::chrono::microseconds(1'000'000);
  std::uint64_t core_identity_failures = 0;  // logged when it grows: at most one line per tick
  for (;;) {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(tick);
    const timespec ts{
        static_cast<time_t>(secs.count()),
        static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(tick - secs).count())};
    const int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig < 0) {
      if (watchdog && std::chrono::steady_clock::now() - front_end->last_tick() < tick)
        sd_notify(0, "WATCHDOG=1");
      if (auto change = front_end->hsm_admission_change())
        agent->report_hsm_admission(change->refusing, change->detail);
      front_end->poll_key_sets(std::chrono::steady_clock::now());
      if (const auto snap = front_end->snapshot();
          snap.transport.core_identity_failures != core_identity_failures) {
        if (snap.transport.core_identity_failures > core_identity_failures) {
          spdlog::error("event=core_identity_refused failures={} reason=\"{}\"",
                        snap.transport.core_identity_failures, snap.transport.core_identity_error);
        }
        core_identity_failures = snap.transport.core_identity_failures;
      }
      continue;
    }
    if (sig == SIGUSR1) {
      front_end->log_status();
      if (const mgmt::v1::CellSummary c = agent->cell_summary(); !c.name().empty()) {
        spdlog::info(
            "event=cell_status cell={} member={} state={} minting={} local_minting={} rotation={} "
            "rotation_version={} etcd_healthy={} members={} live_members={} reason=\"{}\"",
            c.name(), c.member_id(), c.state(), c.minting(), c.local_minting(),
            c.rotation_phase().empty() ? "-" : c.rotation_phase(), c.rotation_version(),
            c.etcd_healthy() ? 1 : 0, c.members(), c.live_members(), c.reason());
      }
      continue;
    }
    if (sig == SIGHUP) {
      // The same controlled restart the agent's RestartFrontEnd runs: the
      // committed generation again, with the key-set view read afresh.
      sd_notify(0, "RELOADING=1");
      try {
        const auto r = agent->restart_front_end(mgmt::Caller{"signal:SIGHUP", mgmt::v1::ROLE_OPERATOR});
        const auto fs = front_end->status();
        spdlog::info("event=reloaded generation={} key_set={} minting_version={} drain_ms={}",
                     agent->generation(), fs.key_set().empty() ? "-" : fs.key_set(), fs.minting_version(),
                     r.drain_ms());
      } catch (const std::exception& e) {
        spdlog::error("event=reload_failed reason=\"{}\"", e.what());
      }
      sd_notify(0, "READY=1");
      continue;
    }
    spdlog::info("event=stopping signal={}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  // Stop: no new management calls, then a bounded drain of the SIP front end.
  sd_notify(0, "STOPPING=1");
  metrics.reset();
  server->shutdown();
  agent->shutdown();
  watching = false;
  event_logger.join();
  const auto drained =
      front_end->drain(std::chrono::milliseconds(agent->boot_config().mgmt().drain_timeout_ms()));
  front_end->log_status();
  front_end->stop();
  agent_ptr = nullptr;
  spdlog::info("event=stopped drain_ms={}", drained.count());
  return kExitOk;
}

}  // namespace edge::firmware
