// SipFrontEnd: builds, drains, swaps and health-checks net/'s transports and proxy rules for the agent.
#include "front_end.h"

#include "daemon.h"

#include <edge/hsm/error.h>
#include <edge/mgmt/properties.h>

#include <google/protobuf/util/message_differencer.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <system_error>

namespace edge::firmware {
namespace {

using mgmt::v1::RestartClass;

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

bool needs_tls(const EdgedConfig& c) {
  return c.core.transport == flow::Transport::tls ||
         std::any_of(c.listeners.begin(), c.listeners.end(), [](const net::ListenerConfig& l) {
           return l.transport == flow::Transport::tls || l.transport == flow::Transport::wss;
         });
}

// Binds (and closes) a socket like the listener would, to learn before a
// restart whether the address is usable. Returns "" or the reason.
std::string try_bind(const net::ListenerConfig& l) {
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  hints.ai_socktype = l.transport == flow::Transport::udp ? SOCK_DGRAM : SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(l.port);
  const std::string what = std::string(flow::to_string(l.transport)) + " " + l.address + ":" + port;
  if (::getaddrinfo(l.address.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return what + ": not an IP address";
  }
  std::string reason;
  const int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    reason = what + ": socket: " + std::generic_category().message(errno);
  } else {
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0)
      reason = what + ": cannot bind: " + std::generic_category().message(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return reason;
}

bool same_listener(const net::ListenerConfig& a, const net::ListenerConfig& b) {
  return a.transport == b.transport && a.address == b.address && a.port == b.port;
}

mgmt::v1::Transport to_v1(flow::Transport t) {
  switch (t) {
    case flow::Transport::udp:
      return mgmt::v1::TRANSPORT_UDP;
    case flow::Transport::tcp:
      return mgmt::v1::TRANSPORT_TCP;
    case flow::Transport::tls:
      return mgmt::v1::TRANSPORT_TLS;
    case flow::Transport::ws:
      return mgmt::v1::TRANSPORT_WS;
    case flow::Transport::wss:
      return mgmt::v1::TRANSPORT_WSS;
    default:
      return mgmt::v1::TRANSPORT_UNSPECIFIED;
  }
}

}  // namespace

// Counts handler calls in progress, so a drain knows when the last message
// delivered before the pause has been handled.
class SipFrontEnd::CountingHandler final : public net::MessageHandler {
 public:
  CountingHandler(std::shared_ptr<net::EdgeProxy> proxy, std::shared_ptr<std::atomic<int>> in_flight)
      : proxy_(std::move(proxy)), in_flight_(std::move(in_flight)) {}
  void on_message(const net::Inbound& in, net::Outbound& out) override {
    in_flight_->fetch_add(1, std::memory_order_acq_rel);
    proxy_->on_message(in, out);
    in_flight_->fetch_sub(1, std::memory_order_acq_rel);
  }
  void on_flow_closed(const net::FlowKey& flow) override { proxy_->on_flow_closed(flow); }

 private:
  std::shared_ptr<net::EdgeProxy> proxy_;
  std::shared_ptr<std::atomic<int>> in_flight_;
};

ReportedCounts ReportedCounts::of(const net::EdgeProxy& proxy) {
  const auto p = proxy.stats();
  ReportedCounts c;
  c.requests_from_clients = p.requests_from_clients;
  c.requests_from_core = p.requests_from_core;
  c.r403 = p.r403;
  c.r430 = p.r430;
  c.r503 = p.r503;
  c.verifies_avoided = p.verifies_avoided;
  c.verifies_hsm = p.verifies_hsm;
  c.mints_hsm = p.mints_hsm;
  return c;
}

ReportedCounts& ReportedCounts::operator+=(const ReportedCounts& o) {
  requests_from_clients += o.requests_from_clients;
  requests_from_core += o.requests_from_core;
  r403 += o.r403;
  r430 += o.r430;
  r503 += o.r503;
  verifies_avoided += o.verifies_avoided;
  verifies_hsm += o.verifies_hsm;
  mints_hsm += o.mints_hsm;
  return *this;
}

ReportedCounts& ReportedCounts::operator-=(const ReportedCounts& o) {
  requests_from_clients -= o.requests_from_clients;
  requests_from_core -= o.requests_from_core;
  r403 -= o.r403;
  r430 -= o.r430;
  r503 -= o.r503;
  verifies_avoided -= o.verifies_avoided;
  verifies_hsm -= o.verifies_hsm;
  mints_hsm -= o.mints_hsm;
  return *this;
}

ReportedCounts SipFrontEnd::counts_locked() const {
  ReportedCounts c = replaced_counts_;
  if (rules_.proxy) c += ReportedCounts::of(*rules_.proxy);
  return c;
}

void check_tls_material(const std::string& certificate_chain_file, const std::string& private_key_file) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free);
  auto fail = [](const std::string& what) {
    char buf[256] = "unknown error";
    if (const unsigned long e = ERR_get_error()) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    throw std::runtime_error(what + ": " + buf);
  };
  if (!ctx) fail("tls: SSL_CTX_new");
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), certificate_chain_file.c_str()) != 1) {
    fail("tls: cannot load certificate chain " + certificate_chain_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), private_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    fail("tls: cannot load private key " + private_key_file);
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) fail("tls: private key does not match the certificate");
}

SipFrontEnd::SipFrontEnd(hsm::Hsm& hsm, std::filesystem::path state_dir)
    : hsm_(hsm), state_dir_(std::move(state_dir)) {}

SipFrontEnd::~SipFrontEnd() { stop(); }

EdgedConfig SipFrontEnd::convert(const mgmt::v1::ApplianceConfig& config) const {
  // edged.conf text is the one canonical text form of the configuration: the
  // same parser checks a first-boot file and every generation the agent applies.
  return parse_config_text(mgmt::export_conf_text(config), "configuration", state_dir_);
}

Rules SipFrontEnd::build_rules(const EdgedConfig& cfg) {
  Rules r;
  if (!cfg.key_set.empty()) {
    if (!hsm_.keysets().exists(cfg.key_set)) {
      throw hsm::HsmError("key set '" + cfg.key_set + "' does not exist in the HSM (edgectl keyset create " +
                          cfg.key_set + ")");
    }
    r.mac = hsm_.mac_for(cfg.key_set);
    r.mac->refresh();
    // Pinned, also when the configuration says "newest" (0): a later refresh
    // (a retire elsewhere in the set) must not start minting with a version
    // that was rotated in but not applied yet.
    if (r.mac->minting_version() != 0) {
      r.mac->set_minting_version(cfg.key_version != 0 ? cfg.key_version : r.mac->minting_version());
    }
    if (r.mac->minting_version() == 0) {
      throw hsm::HsmError("key set '" + cfg.key_set + "' has no active version (edgectl keyset rotate " +
                          cfg.key_set + ")");
    }
    r.codec = std::make_shared<flow::TokenCodec>(r.mac);
  }
  r.proxy = std::make_shared<net::EdgeProxy>(cfg.proxy_config(), r.codec, proxy_log_sink());
  return r;
}

std::shared_ptr<net::MessageHandler> SipFrontEnd::wrap(const std::shared_ptr<net::EdgeProxy>& proxy) {
  return std::make_shared<CountingHandler>(proxy, in_flight_);
}

void SipFrontEnd::boot(const mgmt::v1::ApplianceConfig& config) {
  EdgedConfig cfg;
  Rules rules;
  try {
    cfg = convert(config);
  } catch (const std::exception& e) {
    throw StartError(kExitConfig, e.what());
  }
  spdlog::set_level(to_spdlog(cfg.log_level));
  try {
    rules = build_rules(cfg);
  } catch (const ConfigError& e) {
    throw StartError(kExitConfig, e.what());
  } catch (const std::invalid_argument& e) {
    throw StartError(kExitConfig, e.what());
  } catch (const std::exception& e) {
    throw StartError(kExitHsm, e.what());
  }
  auto transports = std::make_shared<net::Transports>(cfg.transport_config(), wrap(rules.proxy));
  try {
    transports->start();
  } catch (const std::exception& e) {
    throw StartError(kExitListen, e.what());
  }
  {
    std::lock_guard lock(mu_);
    applied_ = config;
    cfg_ = std::move(cfg);
    rules_ = std::move(rules);
    transports_ = std::move(transports);
    state_ = "running";
  }
  timer_stop_ = false;
  timer_ = std::thread([this] { timer_loop(); });
}

void SipFrontEnd::stop() {
  timer_stop_ = true;
  if (timer_.joinable()) timer_.join();
  std::shared_ptr<net::Transports> t;
  {
    std::lock_guard lock(mu_);
    t = std::move(transports_);
    retiring_.clear();
    state_ = "stopped";
  }
  if (t) {
    t->pause();
    t->stop();
  }
}

void SipFrontEnd::timer_loop() {
  // The proxies' transaction timers (UDP retransmissions toward clients, 408s),
  // for the current rules and for those a restart replaced.
  while (!timer_stop_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    last_tick_ = std::chrono::steady_clock::now();
    std::shared_ptr<net::Transports> t;
    std::vector<std::shared_ptr<net::EdgeProxy>> proxies;
    {
      std::lock_guard lock(mu_);
      t = transports_;
      if (rules_.proxy) proxies.push_back(rules_.proxy);
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(retiring_, [&](const auto& r) {
        return r.first->pending_transactions() == 0 || now - r.second > std::chrono::seconds(64);
      });
      for (const auto& r : retiring_) proxies.push_back(r.first);
    }
    if (!t) continue;
    for (const auto& p : proxies) p->on_timer(net::Clock::now(), *t);
  }
}

mgmt::v1::RestartClass SipFrontEnd::restart_class(const mgmt::v1::ApplianceConfig& current,
                                                  const mgmt::v1::ApplianceConfig& next) {
  const auto& registry = mgmt::PropertyRegistry::instance();
  RestartClass worst = mgmt::v1::RESTART_NONE;
  bool process = false;
  for (const auto& p : registry.all()) {
    if (p.get(current) == p.get(next)) continue;
    if (p.restart == mgmt::v1::RESTART_PROCESS) {
      process = true;
    } else if (p.restart > worst) {
      worst = p.restart;
    }
  }
  return worst == mgmt::v1::RESTART_NONE && process ? mgmt::v1::RESTART_PROCESS : worst;
}

std::string SipFrontEnd::validate(const mgmt::v1::ApplianceConfig& next) {
  try {
    const EdgedConfig cfg = convert(next);
    // The rules build exactly as apply() will build them (key set, version, proxy settings).
    build_rules(cfg);
    if (needs_tls(cfg)) check_tls_material(cfg.tls.certificate_chain_file, cfg.tls.private_key_file);
    std::vector<net::ListenerConfig> current;
    {
      std::lock_guard lock(mu_);
      if (transports_) current = cfg_.listeners;
    }
    for (const auto& l : cfg.listeners) {
      const bool bound = std::any_of(current.begin(), current.end(),
                                     [&](const net::ListenerConfig& c) { return same_listener(c, l); });
      if (bound || l.port == 0) continue;
      if (auto reason = try_bind(l); !reason.empty()) return reason;
    }
    return {};
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::chrono::milliseconds SipFrontEnd::drain(std::chrono::milliseconds bound) {
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<net::Transports> t;
  {
    std::lock_guard lock(mu_);
    t = transports_;
    state_ = "draining";
  }
  if (t) t->pause();
  // New messages now wait in the socket buffers; let the ones already handed
  // to the proxy finish (they are never cut off: this only bounds the wait).
  while (in_flight_->load(std::memory_order_acquire) != 0 &&
         std::chrono::steady_clock::now() - start < bound) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

void SipFrontEnd::apply(const mgmt::v1::ApplianceConfig& next) {
  EdgedConfig cfg = convert(next);
  std::unique_lock lock(mu_);
  RestartClass cls = transports_ ? restart_class(applied_, next) : mgmt::v1::RESTART_LISTENERS;
  // The same configuration again is a restart (SIGHUP, RestartFrontEnd): the
  // rules and the key-set view are rebuilt, e.g. after a rotation in the HSM.
  const bool same = transports_ && google::protobuf::util::MessageDifferencer::Equals(applied_, next);
  if (same) cls = mgmt::v1::RESTART_FRONT_END;
  spdlog::set_level(to_spdlog(cfg.log_level));
  if (cls == mgmt::v1::RESTART_NONE || cls == mgmt::v1::RESTART_PROCESS) {
    applied_ = next;
    cfg_ = std::move(cfg);
    return;
  }
  // Going back to the configuration before the last swap (a rollback) reuses
  // its rules; anything else builds new ones (key-set view read from the HSM).
  Rules rules;
  if (!same && previous_ && google::protobuf::util::MessageDifferencer::Equals(previous_->config, next)) {
    rules = previous_->rules;
  } else {
    rules = build_rules(cfg);
  }
  Running replaced{applied_, cfg_, rules_};
  if (cls == mgmt::v1::RESTART_FRONT_END) {
    // TLS first: if the material does not load, nothing has changed.
    if (needs_tls(cfg)) transports_->reload_tls(cfg.tls);
    transports_->set_handler(wrap(rules.proxy));
    std::erase_if(retiring_, [&](const auto& r) { return r.first == rules.proxy; });
    if (rules_.proxy != rules.proxy) retiring_.emplace_back(rules_.proxy, std::chrono::steady_clock::now());
  } else {
    // Listener, core or limit change: the transports are rebuilt, flows close.
    auto old = std::move(transports_);
    retiring_.clear();
    lock.unlock();
    if (old) {
      old->pause();
      old->stop();
    }
    auto fresh = std::make_shared<net::Transports>(cfg.transport_config(), wrap(rules.proxy));
    fresh->pause();  // taken up by start()
    try {
      fresh->start();
    } catch (...) {
      lock.lock();
      state_ = "failed";
      previous_ = std::move(replaced);
      throw;
    }
    lock.lock();
    transports_ = std::move(fresh);
  }
  // The outgoing proxy's counts join the totals; a proxy swapped back in (a
  // rollback) leaves them again, as its own counters carry on.
  if (rules_.proxy && rules_.proxy != rules.proxy) replaced_counts_ += ReportedCounts::of(*rules_.proxy);
  if (rules.proxy && rules.proxy != rules_.proxy && previous_ && rules.proxy == previous_->rules.proxy) {
    replaced_counts_ -= ReportedCounts::of(*rules.proxy);
  }
  if (!same) previous_ = std::move(replaced);
  rules_ = std::move(rules);
  cfg_ = std::move(cfg);
  applied_ = next;
}

void SipFrontEnd::start() {
  std::lock_guard lock(mu_);
  if (!transports_) throw std::runtime_error("the SIP front end has no transports (a rebuild failed)");
  transports_->resume();
  state_ = "running";
  ++restarts_;
}

std::string SipFrontEnd::health() {
  std::shared_ptr<net::Transports> t;
  std::shared_ptr<hsm::KeySetMac> mac;
  std::size_t expected = 0;
  std::uint32_t pinned = 0;
  {
    std::lock_guard lock(mu_);
    t = transports_;
    mac = rules_.mac;
    expected = cfg_.listeners.size();
    pinned = cfg_.key_version;
  }
  if (!t) return "no transports";
  if (t->paused()) return "transports still paused";
  if (const auto n = t->listening().size(); n != expected) {
    return std::to_string(n) + " of " + std::to_string(expected) + " listeners up";
  }
  if (!mac) return {};
  const std::uint32_t v = mac->minting_version();
  if (pinned != 0 && v != pinned) {
    return "mints with version " + std::to_string(v) + ", configured " + std::to_string(pinned);
  }
  // A mint + verify round trip with the version that mints, through the HSM.
  static constexpr std::array<std::uint8_t, 16> probe{'e', 'd', 'g', 'e', '-', 'h', 'e', 'a',
                                                      'l', 't', 'h', '-', 'p', 'r', 'o', 'b'};
  hsm::MacTag tag{};
  if (const auto s = mac->sign(v, probe, tag); s != hsm::MacStatus::ok) {
    return "HSM mint with " + mac->key_set() + " v" + std::to_string(v) + ": " + hsm::to_string(s);
  }
  if (const auto s = mac->verify(v, probe, tag); s != hsm::MacStatus::ok) {
    return "HSM verify with " + mac->key_set() + " v" + std::to_string(v) + ": " + hsm::to_string(s);
  }
  return {};
}

mgmt::v1::FrontEndStatus SipFrontEnd::status() {
  mgmt::v1::FrontEndStatus s;
  std::shared_ptr<net::Transports> t;
  Rules rules;
  ReportedCounts counts;
  {
    std::lock_guard lock(mu_);
    s.set_state(state_);
    s.set_restarts(restarts_);
    s.set_key_set(cfg_.key_set);
    t = transports_;
    rules = rules_;
    counts = counts_locked();
  }
  if (rules.mac) s.set_minting_version(rules.mac->minting_version());
  if (t) {
    const auto ts = t->stats();
    for (const auto tr : {flow::Transport::udp, flow::Transport::tcp, flow::Transport::tls,
                          flow::Transport::ws, flow::Transport::wss}) {
      auto* f = s.add_flows();
      f->set_transport(to_v1(tr));
      f->set_flows(ts.flows_now[static_cast<std::size_t>(tr)]);
    }
    s.set_connections(ts.connections_now);
    s.set_core_connected(ts.core_connected);
  }
  s.set_requests_from_clients(counts.requests_from_clients);
  s.set_requests_from_core(counts.requests_from_core);
  return s;
}

void SipFrontEnd::key_sets_changed() {
  std::shared_ptr<hsm::KeySetMac> current, previous;
  {
    std::lock_guard lock(mu_);
    current = rules_.mac;
    if (previous_) previous = previous_->rules.mac;
  }
  // refresh() sees the retired / destroyed versions, bumps the view's epoch,
  // and with it every cache of verified tokens (the flows' own tokens included)
  // stops answering for them.
  for (const auto& mac : {current, previous}) {
    if (!mac) continue;
    try {
      mac->refresh();
    } catch (const std::exception& e) {
      spdlog::warn("event=key_set_refresh_failed key_set={} reason=\"{}\"", mac->key_set(), e.what());
    }
  }
  std::lock_guard lock(mu_);
  // Rules whose key set has nothing left to mint with are no rollback target.
  if (previous_ && previous_->rules.mac && previous_->rules.mac->minting_version() == 0) previous_.reset();
}

std::vector<net::BoundListener> SipFrontEnd::listening() const {
  std::lock_guard lock(mu_);
  return transports_ ? transports_->listening() : std::vector<net::BoundListener>{};
}

void SipFrontEnd::log_status() {
  std::shared_ptr<net::Transports> t;
  Rules rules;
  ReportedCounts p;
  {
    std::lock_guard lock(mu_);
    t = transports_;
    rules = rules_;
    p = counts_locked();
  }
  if (!t || !rules.proxy) {
    spdlog::info("event=status front_end=stopped hsm={}", hsm::to_string(hsm_.state()));
    return;
  }
  const auto ts = t->stats();
  const auto h = hsm_.counters().snapshot();
  spdlog::info(
      "event=status hsm={} hsm_sign={} hsm_verify={} flows_udp={} flows_tcp={} flows_tls={} flows_ws={} "
      "flows_wss={} core_connected={} requests_from_clients={} requests_from_core={} r403={} r430={} r503={} "
      "verifies_avoided={} verifies_hsm={} mints_hsm={} minting_version={} connections={} "
      "refused_max_connections={} refused_per_address={} read_timeouts={} framing_errors={} oversized={} "
      "udp_garbage={} tls_handshake_failures={} upgrade_refused={} superseded_flows={} core_disconnects={}",
      hsm::to_string(hsm_.state()), h.sign, h.verify, ts.flows_now[1], ts.flows_now[2], ts.flows_now[3],
      ts.flows_now[6], ts.flows_now[7], ts.core_connected, p.requests_from_clients, p.requests_from_core,
      p.r403, p.r430, p.r503, p.verifies_avoided, p.verifies_hsm, p.mints_hsm,
      rules.mac ? rules.mac->minting_version() : 0, ts.connections_now, ts.refused_max_connections,
      ts.refused_per_address, ts.read_timeouts, ts.framing_errors, ts.oversized, ts.udp_garbage,
      ts.tls_handshake_failures, ts.upgrade_refused, ts.superseded_flows, ts.core_disconnects);
}

}  // namespace edge::firmware
