// edged's composition and life cycle: first boot, HSM, key set, transports, proxy, signals.
#include "daemon.h"

#include "lab_tls.h"

#include <edge/hsm/error.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/hsm/lab.h>
#include <edge/net/flow/token_codec.h>
#include <edge/net/proxy/edge_proxy.h>
#include <edge/net/transport/transports.h>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <thread>

#include "edged_default_conf.h"

namespace edge::firmware {
namespace {

spdlog::level::level_enum to_spdlog(const std::string& level) {
  if (level == "debug") return spdlog::level::debug;
  if (level == "warn") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return spdlog::level::info;
}

net::LogSink proxy_log_sink() {
  return [](net::LogLevel level, std::string_view event, std::string_view fields) {
    const auto l = level == net::LogLevel::debug  ? spdlog::level::debug
                   : level == net::LogLevel::info ? spdlog::level::info
                   : level == net::LogLevel::warn ? spdlog::level::warn
                                                  : spdlog::level::err;
    spdlog::log(l, "event={} {}", event, fields);
  };
}

// Everything that a SIGHUP swaps: the key-set view, the codec and the proxy rules.
struct Rules {
  std::shared_ptr<hsm::KeySetMac> mac;
  std::shared_ptr<flow::TokenCodec> codec;
  std::shared_ptr<net::EdgeProxy> proxy;
};

Rules build_rules(hsm::Hsm& hsm, const EdgedConfig& cfg) {
  Rules r;
  if (!cfg.key_set.empty()) {
    if (!hsm.keysets().exists(cfg.key_set)) {
      throw hsm::HsmError("key set '" + cfg.key_set + "' does not exist in the HSM (edge-hsm keyset create " +
                          cfg.key_set + ")");
    }
    r.mac = hsm.mac_for(cfg.key_set);
    r.mac->refresh();
    if (r.mac->minting_version() == 0) {
      throw hsm::HsmError("key set '" + cfg.key_set + "' has no active version (edge-hsm keyset rotate " +
                          cfg.key_set + ")");
    }
    r.codec = std::make_shared<flow::TokenCodec>(r.mac);
  }
  r.proxy = std::make_shared<net::EdgeProxy>(cfg.proxy_config(), r.codec, proxy_log_sink());
  return r;
}

void log_status(const hsm::Hsm& hsm, const net::Transports& transports, const net::EdgeProxy& proxy) {
  const auto t = transports.stats();
  const auto p = proxy.stats();
  const auto h = hsm.counters().snapshot();
  spdlog::info(
      "event=status hsm={} hsm_sign={} hsm_verify={} flows_udp={} flows_tcp={} flows_tls={} flows_ws={} "
      "flows_wss={} core_connected={} requests_from_clients={} requests_from_core={} r403={} r430={} r503={} "
      "verifies_avoided={} verifies_hsm={} mints_hsm={}",
      hsm::to_string(hsm.state()), h.sign, h.verify, t.flows_now[1], t.flows_now[2], t.flows_now[3],
      t.flows_now[6], t.flows_now[7], t.core_connected, p.requests_from_clients, p.requests_from_core, p.r403,
      p.r430, p.r503, p.verifies_avoided, p.verifies_hsm, p.mints_hsm);
}

EdgedConfig first_boot_and_load(const DaemonOptions& o, std::filesystem::path& config_path) {
  std::filesystem::create_directories(o.state_dir);
  config_path = o.config_file.empty() ? o.state_dir / "edged.conf" : o.config_file;
  if (!o.production && !std::filesystem::exists(config_path)) {
    std::ofstream(config_path) << kEdgedDefaultConfig;
    spdlog::info("event=first_boot wrote={}", config_path.string());
  }
  EdgedConfig cfg = load_config(config_path, o.state_dir);
  if (cfg.lab_hsm) {
    if (o.production) throw hsm::HsmError("production mode needs a real HSM module (hsm.module), not softhsm-lab");
    const auto lab = hsm::provision_lab_token(o.state_dir, cfg.hsm_token);
    if (lab.token_created) spdlog::info("event=lab_token_created label={}", lab.label);
  }
  const bool needs_tls = std::any_of(cfg.listeners.begin(), cfg.listeners.end(), [](const auto& l) {
    return l.transport == flow::Transport::tls || l.transport == flow::Transport::wss;
  });
  if (needs_tls && !o.production) {
    if (ensure_lab_certificate(cfg.tls.certificate_chain_file, cfg.tls.private_key_file)) {
      spdlog::info("event=lab_certificate_created cert={}", cfg.tls.certificate_chain_file);
    }
  }
  return cfg;
}

}  // namespace

int run_daemon(const DaemonOptions& o) {
  // Signals are taken synchronously by this thread; every thread started
  // below inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto logger = spdlog::stderr_logger_mt("edged");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);

  std::filesystem::path config_path;
  EdgedConfig cfg;
  try {
    cfg = first_boot_and_load(o, config_path);
  } catch (const ConfigError& e) {
    spdlog::error("event=config_invalid reason=\"{}\"", e.what());
    return kExitConfig;
  } catch (const hsm::Pkcs11Error& e) {
    spdlog::error("event=hsm_provisioning_failed reason=\"{}\"", e.what());
    return kExitHsm;
  } catch (const hsm::HsmError& e) {
    spdlog::error("event=hsm_provisioning_failed reason=\"{}\"", e.what());
    return kExitHsm;
  } catch (const std::exception& e) {
    spdlog::error("event=start_failed reason=\"{}\"", e.what());
    return kExitFailure;
  }
  spdlog::set_level(to_spdlog(cfg.log_level));

  std::unique_ptr<hsm::Hsm> hsm;
  Rules rules;
  try {
    hsm::HsmConfig hc = cfg.hsm_config();
    // hsm/ has no logger of its own (it depends on nothing above PKCS#11): its
    // state changes reach the operator through this hook.
    hc.on_state_change = [](hsm::HsmState s, const std::string& reason) {
      spdlog::log(s == hsm::HsmState::available ? spdlog::level::info : spdlog::level::err,
                  "event=hsm_state state={} reason=\"{}\"", hsm::to_string(s), reason);
    };
    hsm = std::make_unique<hsm::Hsm>(std::move(hc));
    if (cfg.lab_hsm && !cfg.key_set.empty() && !hsm->keysets().exists(cfg.key_set)) {
      hsm->keysets().create(cfg.key_set);
      spdlog::info("event=key_set_created key_set={}", cfg.key_set);
    }
    rules = build_rules(*hsm, cfg);
  } catch (const std::invalid_argument& e) {
    spdlog::error("event=config_invalid reason=\"{}\"", e.what());
    return kExitConfig;
  } catch (const std::exception& e) {
    spdlog::error("event=hsm_unusable reason=\"{}\"", e.what());
    return kExitHsm;
  }

  net::Transports transports(cfg.transport_config(), rules.proxy);
  try {
    transports.start();
  } catch (const std::exception& e) {
    spdlog::error("event=listen_failed reason=\"{}\"", e.what());
    return kExitListen;
  }
  for (const auto& l : transports.listening()) {
    spdlog::info("event=listening transport={} local={}", flow::to_string(l.transport), flow::to_string(l.local));
  }
  spdlog::info("event=started version={} key_set={} minting_version={} core={}:{}", EDGE_VERSION,
               cfg.key_set.empty() ? "-" : cfg.key_set, rules.mac ? rules.mac->minting_version() : 0,
               cfg.core.address, cfg.core.port);

  // The proxy's transaction timers (UDP retransmissions toward clients, 408s).
  std::atomic<bool> stopping{false};
  std::shared_ptr<net::EdgeProxy> timer_proxy = rules.proxy;
  std::mutex timer_mu;
  std::thread timer([&] {
    while (!stopping.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::shared_ptr<net::EdgeProxy> p;
      {
        std::lock_guard lock(timer_mu);
        p = timer_proxy;
      }
      p->on_timer(net::Clock::now(), transports);
    }
  });

  int exit_code = kExitOk;
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      log_status(*hsm, transports, *rules.proxy);
      continue;
    }
    if (sig == SIGHUP) {
      // Controlled restart: build the new rules first; nothing changes if that fails.
      try {
        EdgedConfig next = load_config(config_path, o.state_dir);
        Rules next_rules = build_rules(*hsm, next);
        transports.pause();
        transports.set_handler(next_rules.proxy);
        try {
          transports.reload_tls(next.tls);
        } catch (const std::exception& e) {
          spdlog::warn("event=reload_tls_failed reason=\"{}\" kept=previous", e.what());
        }
        {
          std::lock_guard lock(timer_mu);
          timer_proxy = next_rules.proxy;
        }
        rules = std::move(next_rules);
        transports.resume();
        spdlog::set_level(to_spdlog(next.log_level));
        if (next.listeners.size() != cfg.listeners.size() || next.core.port != cfg.core.port ||
            next.core.address != cfg.core.address) {
          spdlog::warn("event=reload_partial reason=\"listener and core changes need a process restart\"");
        }
        spdlog::info("event=reloaded key_set={} minting_version={}", next.key_set.empty() ? "-" : next.key_set,
                     rules.mac ? rules.mac->minting_version() : 0);
        cfg = std::move(next);
      } catch (const std::exception& e) {
        transports.resume();
        spdlog::error("event=reload_failed reason=\"{}\" kept=previous", e.what());
      }
      continue;
    }
    spdlog::info("event=stopping signal={}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  stopping = true;
  timer.join();
  transports.pause();
  transports.stop();
  log_status(*hsm, transports, *rules.proxy);
  spdlog::info("event=stopped");
  return exit_code;
}

}  // namespace edge::firmware
