// SipFrontEnd: builds, drains, swaps and health-checks net/'s transports and proxy rules for the agent.
#include "front_end.h"

#include "daemon.h"
#include "fd_limit.h"

#include <edge/hsm/error.h>
#include <edge/mgmt/properties.h>
#include <edge/net/transport/check.h>

#include <google/protobuf/util/message_differencer.h>
#include <spdlog/async.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <iterator>
#include <thread>

namespace edge::firmware {

namespace {
std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}
bool same_core(const net::CoreTarget& a, const net::CoreTarget& b) {
  return a.transport == b.transport && a.address == b.address && a.port == b.port;
}

// The cores of `to` that `from` did not have; all of them when the core's TLS identity settings changed.
std::vector<net::CoreTarget> changed_cores(const EdgedConfig& from, const EdgedConfig& to) {
  if (!to.core.enabled) return {};
  auto next = net::core_targets(to.core);
  if (!from.core.enabled || from.core.tls_server_name != to.core.tls_server_name ||
      from.core.tls_pin_sha256 != to.core.tls_pin_sha256 || from.tls.ca_file != to.tls.ca_file)
    return next;
  const auto before = net::core_targets(from.core);
  std::vector<net::CoreTarget> out;
  for (const auto& t : next) {
    if (std::none_of(before.begin(), before.end(), [&](const net::CoreTarget& b) { return same_core(b, t); }))
      out.push_back(t);
  }
  return out;
}

std::string core_target_uri(const net::CoreTarget& t) {
  const bool v6 = t.address.find(':') != std::string::npos;
  return "sip:" + (v6 ? "[" + t.address + "]" : t.address) + ":" + std::to_string(t.port) +
         ";transport=" + lower(flow::to_string(t.transport));
}
}  // namespace
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

// Lines the asynchronous log dropped because its queue was full (edged's
// logger; 0 with a synchronous one).
std::size_t log_dropped() {
  const auto pool = spdlog::thread_pool();
  return pool ? pool->overrun_counter() : 0;
}

}  // namespace

// Counts handler calls in progress, so a drain knows when the last message
// delivered before the pause has been handled; notes each timer tick for the
// systemd watchdog.
class SipFrontEnd::CountingHandler final : public net::MessageHandler {
 public:
  using Tick = std::atomic<std::chrono::steady_clock::time_point>;
  CountingHandler(std::shared_ptr<net::EdgeProxy> proxy, std::shared_ptr<std::atomic<int>> in_flight,
                  std::shared_ptr<Tick> last_tick)
      : proxy_(std::move(proxy)), in_flight_(std::move(in_flight)), last_tick_(std::move(last_tick)) {}
  void on_message(const net::Inbound& in, net::Network& out) override {
    in_flight_->fetch_add(1, std::memory_order_acq_rel);
    proxy_->on_message(in, out);
    in_flight_->fetch_sub(1, std::memory_order_acq_rel);
  }
  void on_flow_closed(const net::FlowKey& flow) override { proxy_->on_flow_closed(flow); }
  void on_timer(std::chrono::steady_clock::time_point now, net::Network& out) override {
    last_tick_->store(now, std::memory_order_relaxed);
    proxy_->on_timer(now, out);
  }

 private:
  std::shared_ptr<net::EdgeProxy> proxy_;
  std::shared_ptr<std::atomic<int>> in_flight_;
  std::shared_ptr<Tick> last_tick_;
};

namespace {
// Objects with a version's label and ID that the HSM did not generate (a key planted
// with a known value): never used; said loudly, once per view change.
void log_refused_keys(const hsm::KeySetInfo& info) {
  for (const auto& r : info.refused) {
    spdlog::error("event=key_version_refused key_set={} version={} label={} reason=\"{}\"", info.name,
                  r.version, r.label, r.reason);
  }
}

net::ProxyStateOptions proxy_state_options(unsigned hsm_threads) {
  net::ProxyStateOptions o;
  o.hsm_work.threads = hsm_threads;
  return o;
}
}  // namespace

SipFrontEnd::SipFrontEnd(hsm::Hsm& hsm, std::filesystem::path state_dir, unsigned hsm_threads)
    : hsm_(hsm),
      state_dir_(std::move(state_dir)),
      proxy_state_(std::make_shared<net::ProxyState>(proxy_state_options(hsm_threads), proxy_log_sink())) {}

SipFrontEnd::~SipFrontEnd() { stop(); }

namespace {
std::string versions_text(const std::vector<std::uint32_t>& v) {
  std::string out;
  for (const std::uint32_t x : v) out += (out.empty() ? "" : ",") + std::to_string(x);
  return out.empty() ? "-" : out;
}

// Re-reads one view; one event line when the versions that verify changed.
// Throws what the HSM throws.
void refresh_view(hsm::KeySetMac& mac) {
  const auto usable = [](const hsm::KeySetInfo& info) {
    std::vector<std::uint32_t> v;
    for (const auto& k : info.versions)
      if (k.state == hsm::KeyState::active) v.push_back(k.version);
    return v;
  };
  const auto refused = [](const hsm::KeySetInfo& info) {
    std::vector<std::string> v;
    for (const auto& r : info.refused) v.push_back(r.label + ' ' + r.reason);
    return v;
  };
  const hsm::KeySetInfo old_info = mac.info();
  const std::vector<std::uint32_t> before = usable(old_info);
  const std::uint64_t epoch = mac.epoch();
  mac.refresh();
  const hsm::KeySetInfo new_info = mac.info();
  if (refused(new_info) != refused(old_info)) log_refused_keys(new_info);
  const std::vector<std::uint32_t> after = usable(new_info);
  if (before == after && epoch == mac.epoch()) return;
  std::vector<std::uint32_t> added, removed;
  std::ranges::set_difference(after, before, std::back_inserter(added));
  std::ranges::set_difference(before, after, std::back_inserter(removed));
  spdlog::info("event=key_set_view_changed key_set={} added={} removed={} minting={}", mac.key_set(),
               versions_text(added), versions_text(removed), mac.minting_version());
}

// refresh_view, and a warning instead of an exception: the rules keep the view they had.
void refresh_view_or_warn(hsm::KeySetMac& mac) {
  try {
    refresh_view(mac);
  } catch (const std::exception& e) {
    spdlog::warn("event=key_set_refresh_failed key_set={} reason=\"{}\"", mac.key_set(), e.what());
  }
}
}  // namespace

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
    log_refused_keys(r.mac->info());
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
    r.codec = std::make_shared<flow::TokenCodec>(r.mac, cfg.codec_config());
  }
  r.proxy = std::make_shared<net::EdgeProxy>(proxy_state_, cfg.proxy_config(), r.codec);
  return r;
}

std::shared_ptr<net::MessageHandler> SipFrontEnd::wrap(const std::shared_ptr<net::EdgeProxy>& proxy) {
  return std::make_shared<CountingHandler>(proxy, in_flight_, last_tick_);
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
  // One descriptor per stream connection and the headroom: the soft limit is
  // raised up to the hard one (LimitNOFILE= in the unit), or the start is refused.
  if (const FdLimit fl = ensure_fd_limit(cfg.limits.max_connections); fl.problem.empty()) {
    spdlog::info("event=fd_limit soft={} hard={} needed={} raised={}", fl.soft, fl.hard, fl.needed,
                 fl.raised);
  } else {
    throw StartError(kExitConfig, fl.problem);
  }
  try {
    rules = build_rules(cfg);
  } catch (const ConfigError& e) {
    throw StartError(kExitConfig, e.what());
  } catch (const std::invalid_argument& e) {
    throw StartError(kExitConfig, e.what());
  } catch (const std::exception& e) {
    throw StartError(hsm_exit_code(e), e.what());
  }
  try {
    proxy_state_->hsm_work()->configure(cfg.hsm_work);
  } catch (const std::invalid_argument& e) {
    throw StartError(kExitConfig, e.what());
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
}

void SipFrontEnd::stop() {
  std::shared_ptr<net::Transports> t;
  {
    std::lock_guard lock(mu_);
    t = std::move(transports_);
    state_ = "stopped";
  }
  if (t) {
    t->pause();
    t->stop();
  }
}

std::string SipFrontEnd::validate(const mgmt::v1::ApplianceConfig& next) {
  try {
    const EdgedConfig cfg = convert(next);
    // The rules build exactly as apply() will build them (key set, version, proxy settings).
    build_rules(cfg);
    flow::HsmWorkConfig work = cfg.hsm_work;
    work.threads = proxy_state_->hsm_work()->config().threads;
    if (std::string p = work.problem(); !p.empty()) return p;
    // limits.max_connections within RLIMIT_NOFILE (the soft limit is raised
    // now if it can be: harmless, and what apply would need anyway).
    if (FdLimit fl = ensure_fd_limit(cfg.limits.max_connections); !fl.problem.empty()) return fl.problem;
    // Addresses, TLS material and new listeners: net checks them as start()
    // would use them (the listeners this instance holds now are not re-bound).
    std::vector<net::ListenerConfig> current;
    {
      std::lock_guard lock(mu_);
      if (transports_) current = cfg_.listeners;
    }
    return net::check(cfg.transport_config(), current);
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
    if (!pause_started_) pause_started_ = start;
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

void SipFrontEnd::apply(const mgmt::v1::ApplianceConfig& next, RestartClass cls) {
  EdgedConfig cfg = convert(next);
  std::unique_lock lock(mu_);
  // The agent decided the class (mgmt::FrontEnd::apply). Without transports
  // (a rebuild failed) there is nothing to keep: they are built again.
  if (!transports_) cls = mgmt::v1::RESTART_LISTENERS;
  // The same configuration again (SIGHUP, RestartFrontEnd) comes as a
  // front-end restart: the rules and the key-set view are rebuilt, e.g. after
  // a rotation in the HSM, and what ran before the last swap stays the rollback.
  const bool same = transports_ && google::protobuf::util::MessageDifferencer::Equals(applied_, next);
  spdlog::set_level(to_spdlog(cfg.log_level));
  if (cls == mgmt::v1::RESTART_NONE || cls == mgmt::v1::RESTART_PROCESS) {
    applied_ = next;
    cfg_ = std::move(cfg);
    return;
  }
  // The budgets and the queue bound of the HSM work (the queue and its threads
  // stay: work in flight comes back to the rules current then). Checked by
  // validate(); a rollback puts the previous values back the same way.
  proxy_state_->hsm_work()->configure(cfg.hsm_work);
  // Going back to the configuration before the last swap (a rollback) reuses
  // its rules; anything else builds new ones (key-set view read from the HSM).
  Rules rules;
  if (!same && previous_ && google::protobuf::util::MessageDifferencer::Equals(previous_->config, next)) {
    rules = previous_->rules;
    // A retire or a rotation's destroy since the swap counts for the rollback target too.
    if (rules.mac) refresh_view_or_warn(*rules.mac);
  } else {
    rules = build_rules(cfg);
  }
  Running replaced{applied_, cfg_, rules_};
  if (cls == mgmt::v1::RESTART_FRONT_END) {
    // TLS first: if the material does not load, nothing has changed.
    if (needs_tls(cfg)) transports_->reload_tls(cfg.tls);
    transports_->set_handler(wrap(rules.proxy));
    cores_to_check_.clear();  // the cores' links (and their outages) are the ones before
  } else {
    // Listener, core or limit change: the transports are rebuilt, flows close.
    cores_to_check_ = changed_cores(cfg_, cfg);
    auto old = std::move(transports_);
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
  if (pause_started_) {
    const auto us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                   std::chrono::steady_clock::now() - *pause_started_)
                                                   .count());
    pause_started_.reset();
    const auto& bounds = FrontEndSnapshot::kPauseBoundsMs;
    const auto* b = std::lower_bound(bounds.begin(), bounds.end(), (us + 999) / 1000);
    ++pause_buckets_[static_cast<std::size_t>(b - bounds.begin())];
    pause_last_us_ = us;
    pause_sum_us_ += us;
  }
}

std::string SipFrontEnd::health() {
  std::shared_ptr<net::Transports> t;
  std::shared_ptr<hsm::KeySetMac> mac;
  std::size_t expected = 0;
  std::uint32_t pinned = 0;
  std::vector<net::CoreTarget> check;
  std::chrono::milliseconds core_bound{0};
  {
    std::lock_guard lock(mu_);
    t = transports_;
    mac = rules_.mac;
    expected = cfg_.listeners.size();
    pinned = cfg_.key_version;
    if (cfg_.core.enabled) check = cores_to_check_;
    // A connect attempt (5 s at most), the first CRLF pong, two health intervals
    // (the first OPTIONS may have gone out while paused): a core that has not
    // come up by then is a configuration problem (docs/operations.md, "Several cores").
    core_bound =
        std::chrono::milliseconds(5'000) + cfg_.core.keepalive_timeout + 2 * cfg_.core.health_interval;
  }
  if (!t) return "no transports";
  if (t->paused()) return "transports still paused";
  if (const auto n = t->listening().size(); n != expected) {
    return std::to_string(n) + " of " + std::to_string(expected) + " listeners up";
  }
  if (!check.empty()) {
    // After a rebuild every core the apply added or changed must come up once (its
    // link up and, with health checks, one OPTIONS answered): an apply with a
    // mistyped core rolls back.
    const auto deadline = std::chrono::steady_clock::now() + core_bound;
    for (;;) {
      std::vector<std::string> never;
      for (const auto& c : t->stats().cores) {
        if (c.ever_up || std::none_of(check.begin(), check.end(),
                                      [&](const net::CoreTarget& k) { return same_core(k, c.target); }))
          continue;
        never.push_back(core_target_uri(c.target) + (c.last_error.empty() ? "" : " (" + c.last_error + ")"));
      }
      if (never.empty()) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        std::string why = never.size() == 1 ? "core " : "cores ";
        for (std::size_t i = 0; i < never.size(); ++i) why += (i ? ", " : "") + never[i];
        return why + " did not come up within " + std::to_string(core_bound.count()) + " ms";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
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

FrontEndSnapshot SipFrontEnd::snapshot() const {
  FrontEndSnapshot s;
  std::shared_ptr<net::Transports> t;
  Rules rules;
  {
    std::lock_guard lock(mu_);
    s.state = state_;
    s.restarts = restarts_;
    s.key_set = cfg_.key_set;
    s.core = applied_.sip().core_uri();
    s.pause_buckets = pause_buckets_;
    s.pause_last_us = pause_last_us_;
    s.pause_sum_us = pause_sum_us_;
    t = transports_;
    rules = rules_;
  }
  s.has_transports = t && rules.proxy;
  if (t) s.transport = t->stats();
  for (const auto& c : s.transport.cores) {
    s.core_uris.push_back(s.transport.cores.size() == 1 && !s.core.empty() ? s.core
                                                                           : core_target_uri(c.target));
  }
  s.proxy = proxy_state_->stats();
  s.hsm_work = proxy_state_->hsm_work_stats();
  if (rules.mac) s.minting_version = rules.mac->minting_version();
  if (rules.codec) s.negative_cache_hits = rules.codec->stats().refused_by_failed_cache;
  s.hsm_ops = hsm_.counters().snapshot();
  s.hsm_state = hsm_.state();
  s.log_dropped = log_dropped();
  return s;
}

mgmt::v1::FrontEndStatus SipFrontEnd::status() {
  const FrontEndSnapshot n = snapshot();
  mgmt::v1::FrontEndStatus s;
  s.set_state(n.state);
  s.set_restarts(n.restarts);
  s.set_key_set(n.key_set);
  s.set_minting_version(n.minting_version);
  if (n.has_transports) {
    for (const auto tr : {flow::Transport::udp, flow::Transport::tcp, flow::Transport::tls,
                          flow::Transport::ws, flow::Transport::wss}) {
      auto* f = s.add_flows();
      f->set_transport(to_v1(tr));
      f->set_flows(n.transport.flows_now[static_cast<std::size_t>(tr)]);
    }
    s.set_connections(n.transport.connections_now);
    s.set_core_connected(n.transport.core_connected);
    const auto& ts = n.transport;
    auto* pp = s.mutable_proxy_protocol();
    pp->set_accepted(ts.proxy_accepted);
    pp->set_refused_untrusted(ts.proxy_refused_untrusted);
    pp->set_refused_missing(ts.proxy_refused_missing);
    pp->set_refused_malformed(ts.proxy_refused_malformed);
    pp->set_refused_unsupported(ts.proxy_refused_unsupported);
    pp->set_refused_timeout(ts.proxy_refused_timeout);
    for (std::size_t i = 0; i < ts.cores.size(); ++i) {
      const net::CoreStats& c = ts.cores[i];
      auto* cs = s.add_cores();
      cs->set_uri(i < n.core_uris.size() ? n.core_uris[i] : core_target_uri(c.target));
      cs->set_priority(c.target.priority);
      cs->set_weight(c.target.weight);
      cs->set_state(std::string(net::to_string(c.state)));
      cs->set_last_error(c.last_error);
      cs->set_connects(c.connects);
      cs->set_disconnects(c.disconnects);
      cs->set_messages_in(c.messages_in);
      cs->set_messages_out(c.messages_out);
      cs->set_requests(c.requests);
      cs->set_health_pings(c.health_pings);
      cs->set_health_answers(c.health_answers);
      cs->set_health_failures(c.health_failures);
      cs->set_keepalive_timeouts(c.keepalive_timeouts);
    }
  }
  s.set_requests_from_clients(n.proxy.requests_from_clients);
  s.set_requests_from_core(n.proxy.requests_from_core);
  auto* hw = s.mutable_hsm_work();
  hw->set_threads(n.hsm_work.threads);
  hw->set_queued(n.hsm_work.queued_now);
  hw->set_running(n.hsm_work.running_now);
  hw->set_max_queued(n.hsm_work.max_queued);
  hw->set_parked(n.proxy.hsm_parked);
  hw->set_refused_budget(n.proxy.hsm_refused_budget);
  hw->set_refused_queue_full(n.proxy.hsm_refused_queue_full);
  hw->set_shed(n.proxy.hsm_shed);
  hw->set_dropped_udp(n.proxy.drop_hsm_busy);
  hw->set_resume_dropped(n.proxy.hsm_resume_dropped);
  hw->set_wait_max_us(n.hsm_work.wait_us_max);
  hw->set_negative_cache_hits(n.negative_cache_hits);
  return s;
}

std::optional<SipFrontEnd::AdmissionChange> SipFrontEnd::hsm_admission_change() {
  const net::ProxyStats p = proxy_state_->stats();
  const std::uint64_t refused = p.hsm_refused_budget + p.hsm_refused_queue_full + p.hsm_shed;
  std::lock_guard lock(mu_);
  const std::uint64_t fresh = refused - admission_refusals_;
  admission_refusals_ = refused;
  if ((fresh != 0) == admission_refusing_) return std::nullopt;
  admission_refusing_ = fresh != 0;
  if (!admission_refusing_) return AdmissionChange{false, "HSM admission control admits all work again"};
  return AdmissionChange{true, "HSM admission control refuses work: " + std::to_string(fresh) +
                                   " refused in the last second (source budget " +
                                   std::to_string(p.hsm_refused_budget) + ", queue full " +
                                   std::to_string(p.hsm_refused_queue_full) + ", shed " +
                                   std::to_string(p.hsm_shed) + " since start)"};
}

void SipFrontEnd::poll_key_sets(std::chrono::steady_clock::time_point now) {
  {
    std::lock_guard lock(mu_);
    if (cfg_.keyset_refresh.count() <= 0 || now - key_sets_read_ < cfg_.keyset_refresh) return;
    key_sets_read_ = now;
  }
  key_sets_changed();
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
    if (mac) refresh_view_or_warn(*mac);
  }
  std::lock_guard lock(mu_);
  // Rules whose key set has nothing left to mint with are no rollback target.
  if (previous_ && previous_->rules.mac && previous_->rules.mac->minting_version() == 0) previous_.reset();
}

std::vector<net::BoundListener> SipFrontEnd::listening() const {
  std::lock_guard lock(mu_);
  return transports_ ? transports_->listening() : std::vector<net::BoundListener>{};
}

namespace {
// " core_1=sip:... core_1_state=up core_1_error=\"...\" ..." for every configured core (1-based, config
// order).
std::string cores_status_fields(const FrontEndSnapshot& n) {
  std::string out;
  const auto& cores = n.transport.cores;
  for (std::size_t i = 0; i < cores.size(); ++i) {
    const net::CoreStats& c = cores[i];
    std::string err = c.last_error;
    std::replace(err.begin(), err.end(), '"', '\'');
    const std::string k = " core_" + std::to_string(i + 1);
    out += fmt::format(
        "{}={}{}_state={}{}_priority={}{}_weight={}{}_error=\"{}\"{}_requests={}{}_messages_out={}{}_"
        "messages_in={}"
        "{}_health_pings={}{}_health_answers={}{}_health_failures={}{}_disconnects={}",
        k, i < n.core_uris.size() ? n.core_uris[i] : std::string(), k, net::to_string(c.state), k,
        c.target.priority, k, c.target.weight, k, err, k, c.requests, k, c.messages_out, k, c.messages_in, k,
        c.health_pings, k, c.health_answers, k, c.health_failures, k, c.disconnects);
  }
  return out;
}
}  // namespace

void SipFrontEnd::log_status() {
  const FrontEndSnapshot n = snapshot();
  if (!n.has_transports) {
    spdlog::info("event=status front_end=stopped hsm={}", hsm::to_string(n.hsm_state));
    return;
  }
  const auto& ts = n.transport;
  const auto& p = n.proxy;
  const auto& h = n.hsm_ops;
  spdlog::info(
      "event=status hsm={} hsm_sign={} hsm_verify={} flows_udp={} flows_tcp={} flows_tls={} flows_ws={} "
      "flows_wss={} core_connected={} requests_from_clients={} requests_from_core={} r403={} r430={} r503={} "
      "verifies_avoided={} verifies_hsm={} mints_hsm={} minting_version={} connections={} "
      "refused_max_connections={} refused_per_address={} read_timeouts={} unregistered_lifetime_closes={} "
      "framing_errors={} oversized={} "
      "udp_garbage={} stun_unsolicited={} udp_flow_evictions={} udp_flows_refused={} udp_unheld_sends={} "
      "udp_no_listener={} "
      "tls_handshake_failures={} upgrade_refused={} superseded_flows={} "
      "core_disconnects={} core_identity_failures={} core_keepalive_timeouts={} core_refused_down={} "
      "core_stale_dropped={} "
      "log_dropped={} hsm_parked={} hsm_queued={} hsm_refused_budget={} hsm_refused_queue_full={} "
      "hsm_shed={} hsm_dropped_udp={} hsm_resume_dropped={} hsm_wait_max_us={} restarts={} "
      "restart_pause_last_ms={} proxy_accepted={} proxy_refused_untrusted={} proxy_refused_missing={} "
      "proxy_refused_malformed={} proxy_refused_unsupported={} proxy_refused_timeout={}{}",
      hsm::to_string(n.hsm_state), h.sign, h.verify, ts.flows_now[1], ts.flows_now[2], ts.flows_now[3],
      ts.flows_now[6], ts.flows_now[7], ts.core_connected, p.requests_from_clients, p.requests_from_core,
      p.r403, p.r430, p.r503, p.verifies_avoided, p.verifies_hsm, p.mints_hsm, n.minting_version,
      ts.connections_now, ts.refused_max_connections, ts.refused_per_address, ts.read_timeouts,
      ts.unregistered_lifetime_closes, ts.framing_errors, ts.oversized, ts.udp_garbage, ts.stun_unsolicited,
      ts.udp_flow_evictions, ts.udp_flows_refused, ts.udp_unheld_sends, ts.udp_no_listener,
      ts.tls_handshake_failures, ts.upgrade_refused, ts.superseded_flows, ts.core_disconnects,
      ts.core_identity_failures, ts.core_keepalive_timeouts, ts.core_refused_down, ts.core_stale_dropped,
      n.log_dropped, p.hsm_parked, n.hsm_work.queued_now, p.hsm_refused_budget, p.hsm_refused_queue_full,
      p.hsm_shed, p.drop_hsm_busy, p.hsm_resume_dropped, n.hsm_work.wait_us_max, n.restarts,
      n.pause_last_us / 1000, ts.proxy_accepted, ts.proxy_refused_untrusted, ts.proxy_refused_missing,
      ts.proxy_refused_malformed, ts.proxy_refused_unsupported, ts.proxy_refused_timeout,
      cores_status_fields(n));
}

}  // namespace edge::firmware
