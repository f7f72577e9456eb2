// Agent: staging, key-set management and the transactional apply / confirm / rollback of the configuration.
#include <edge/hsm/error.h>
#include <edge/mgmt/agent.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <set>
#include <utility>

namespace edge::mgmt {
namespace {

using Clock = std::chrono::steady_clock;
using v1::ApplianceConfig;

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

std::vector<std::string> split_summary(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    const auto p = s.find("; ", start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) break;
    start = p + 2;
  }
  return out;
}

// HSM failures become API errors: a refusal of the token itself (PKCS#11) or
// an HSM in back-off is "unavailable"; a refused management step (no such
// version, numbers exhausted) is a precondition the operator can fix.
template <class F>
auto hsm_call(hsm::Hsm& h, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const hsm::Pkcs11Error& e) {
    throw MgmtError(ErrorCode::unavailable, e.what());
  } catch (const hsm::HsmError& e) {
    throw MgmtError(
        h.state() == hsm::HsmState::available ? ErrorCode::failed_precondition : ErrorCode::unavailable,
        e.what());
  }
}

// The version a configuration mints with for key set `info` (0: it does not use the set).
std::uint32_t mints_with(const ApplianceConfig& c, const hsm::KeySetInfo& info) {
  const auto& ft = c.sip().flow_token();
  if (ft.key_set() != info.name) return 0;
  return ft.key_version() != 0 ? ft.key_version() : info.minting_version();
}

bool active_version(const hsm::KeySetInfo& info, std::uint32_t v) {
  return std::any_of(info.versions.begin(), info.versions.end(), [&](const hsm::KeyVersionInfo& k) {
    return k.version == v && k.state == hsm::KeyState::active;
  });
}

std::chrono::milliseconds drain_bound(const ApplianceConfig& c) {
  return std::chrono::milliseconds(c.mgmt().drain_timeout_ms());
}

}  // namespace

struct Agent::Impl {
  struct Pending {
    v1::StoredGeneration gen;
    Clock::time_point deadline;
    std::int64_t deadline_unix_ms = 0;
  };
  // What a front-end transition did.
  struct Transition {
    v1::RestartClass restart = v1::RESTART_NONE;
    std::uint64_t drain_ms = 0;
  };

  Impl(AgentOptions o, hsm::Hsm& h) : opts(std::move(o)), hsm(h), store(opts.state_dir / "config") {}

  AgentOptions opts;
  hsm::Hsm& hsm;
  ConfigStore store;
  const PropertyRegistry& reg = PropertyRegistry::instance();
  const Clock::time_point started = Clock::now();
  EventBus* events = nullptr;
  AuditLog* audit = nullptr;

  // Lock order: change_mu, then mu, then fe_mu. change_mu serializes whatever
  // drives the front end or writes a generation; mu guards the fields below
  // and is held only for short steps (HSM look-ups of staging included);
  // fe_mu keeps front-end calls one at a time, as FrontEnd promises its implementer.
  std::mutex change_mu;
  mutable std::mutex mu;
  std::mutex fe_mu;
  std::condition_variable cv;
  v1::StoredGeneration committed;
  ApplianceConfig candidate;
  std::optional<Pending> pending;
  FrontEnd* fe = nullptr;
  std::deque<std::pair<std::string, v1::ApplyResponse>> remembered;
  bool stopping = false;
  std::thread deadline_thread;

  // The configuration the front end runs: a pending (unconfirmed) one counts.
  const ApplianceConfig& running() const { return pending ? pending->gen.config() : committed.config(); }

  void publish(v1::Event::Kind kind, std::uint64_t generation, const std::string& actor, bool ok,
               const std::string& message) {
    v1::Event e;
    e.set_kind(kind);
    e.set_generation(generation);
    e.set_actor(actor);
    e.set_ok(ok);
    e.set_message(message);
    events->publish(std::move(e));
  }

  // Runs `f` and writes one audit record with its outcome; `detail` is read
  // afterwards so the body may complete it (e.g. with the applied changes).
  template <class F>
  auto audited(const Caller& c, std::string_view action, std::string& detail, F&& f) -> decltype(f()) {
    try {
      auto result = f();
      audit->record(c.actor, action, detail, "ok");
      return result;
    } catch (const MgmtError& e) {
      audit->record(c.actor, action, detail, std::string("refused: ") + e.what());
      throw;
    } catch (const std::exception& e) {
      audit->record(c.actor, action, detail, std::string("refused: ") + e.what());
      throw MgmtError(ErrorCode::internal, e.what());
    }
  }

  // --- idempotency ---------------------------------------------------------
  std::optional<v1::ApplyResponse> replay(const std::string& request_id) const {
    if (request_id.empty()) return std::nullopt;
    std::lock_guard lock(mu);
    for (const auto& [id, resp] : remembered) {
      if (id == request_id) {
        v1::ApplyResponse r = resp;
        r.set_replayed(true);
        return r;
      }
    }
    return std::nullopt;
  }
  void remember(const std::string& request_id, const v1::ApplyResponse& resp) {  // under mu
    if (request_id.empty() || opts.remembered_requests == 0) return;
    remembered.emplace_back(request_id, resp);
    while (remembered.size() > opts.remembered_requests) remembered.pop_front();
  }

  // --- validation -----------------------------------------------------------
  // The key set a configuration names exists and `version` (or its newest
  // active one) really signs and verifies in the HSM now.
  void check_key_set(const ApplianceConfig& c) {
    const auto& ft = c.sip().flow_token();
    if (ft.key_set().empty()) return;
    const std::string& name = ft.key_set();
    hsm_call(hsm, [&] {
      if (!hsm.keysets().exists(name)) {
        throw MgmtError(ErrorCode::failed_precondition, "key set '" + name + "' does not exist in the HSM");
      }
      const hsm::KeySetInfo info = hsm.keysets().get(name);
      const std::uint32_t v = ft.key_version() != 0 ? ft.key_version() : info.minting_version();
      if (v == 0)
        throw MgmtError(ErrorCode::failed_precondition, "key set '" + name + "' has no active version");
      if (!active_version(info, v)) {
        throw MgmtError(ErrorCode::failed_precondition, "key set '" + name + "' has no active version " +
                                                            std::to_string(v) +
                                                            " (sip.flow_token.key_version)");
      }
      auto mac = hsm.mac_for(name);
      mac->refresh();
      mac->set_minting_version(v);
      static constexpr std::array<std::uint8_t, 24> kProbe{'e', 'd', 'g', 'e', '-', 'm', 'g', 'm',
                                                           't', '-', 'a', 'p', 'p', 'l', 'y', '-',
                                                           'p', 'r', 'o', 'b', 'e', '-', 'v', '1'};
      hsm::MacTag tag{};
      const auto refuse = [&](const char* step, hsm::MacStatus st) {
        throw MgmtError(
            st == hsm::MacStatus::unavailable ? ErrorCode::unavailable : ErrorCode::failed_precondition,
            "key set '" + name + "' version " + std::to_string(v) + ": " + step +
                " failed: " + hsm::to_string(st));
      };
      if (const auto st = mac->sign(v, kProbe, tag); st != hsm::MacStatus::ok) refuse("sign", st);
      if (const auto st = mac->verify(v, kProbe, tag); st != hsm::MacStatus::ok) refuse("verify", st);
    });
  }

  // Everything checkable before the front end is touched; throws the reason.
  void validate(const ApplianceConfig& next, FrontEnd* front) {
    // Re-setting every value on a fresh configuration runs each property's own
    // checks, so a configuration from the store or a rollback is held to
    // today's rules too.
    ApplianceConfig fresh = reg.defaults();
    for (const auto& d : reg.all()) reg.set(fresh, d.name, d.get(next));
    check_key_set(next);
    if (front != nullptr) {
      std::string reason;
      {
        std::lock_guard lock(fe_mu);
        reason = front->validate(next);
      }
      if (!reason.empty()) throw MgmtError(ErrorCode::failed_precondition, "front end refused: " + reason);
    }
  }

  // --- front end ------------------------------------------------------------
  v1::RestartClass registry_class(const ApplianceConfig& from, const ApplianceConfig& to) const {
    v1::RestartClass rc = v1::RESTART_NONE;
    for (const auto& d : reg.all()) {
      if (d.get(from) != d.get(to) && d.restart > rc) rc = d.restart;
    }
    return rc;
  }

  // Tells the front end that a version stopped verifying (retire, destroy).
  void key_sets_changed() {
    FrontEnd* front = nullptr;
    {
      std::lock_guard lock(mu);
      front = fe;
    }
    if (front == nullptr) return;
    std::lock_guard lock(fe_mu);
    front->key_sets_changed();
  }

  // Puts `previous` back after a failed step. Returns "" or why that failed too.
  // start() runs even when apply() fails: a front end left drained would take
  // no SIP traffic at all, while one resumed keeps whatever rules it still holds.
  std::string restore(FrontEnd* front, const ApplianceConfig& previous) {
    std::lock_guard lock(fe_mu);
    std::string why;
    try {
      front->drain(drain_bound(previous));
      front->apply(previous);
    } catch (const std::exception& e) {
      why = e.what();
    }
    try {
      front->start();
    } catch (const std::exception& e) {
      why += (why.empty() ? "" : "; ") + std::string("start: ") + e.what();
    }
    if (!why.empty()) spdlog::error("event=mgmt_restore_failed reason=\"{}\"", why);
    return why;
  }

  // Moves the front end from `from` to `to` (the controlled restart), or puts
  // `from` back and throws MgmtError(aborted) naming the failed step.
  Transition drive(FrontEnd* front, const ApplianceConfig& from, const ApplianceConfig& to,
                   std::uint64_t from_generation, const std::string& actor) {
    Transition t;
    if (front == nullptr) {
      t.restart = registry_class(from, to);
      return t;
    }
    {
      std::lock_guard lock(fe_mu);
      t.restart = front->restart_class(from, to);
    }
    // A process-class change waits for the next start of edged.
    if (t.restart == v1::RESTART_PROCESS) return t;
    std::string step = "front end apply";
    std::string reason;
    try {
      std::lock_guard lock(fe_mu);
      if (t.restart == v1::RESTART_NONE) {
        // Live values (log level, ...) need no drain.
        front->apply(to);
      } else {
        t.drain_ms = static_cast<std::uint64_t>(front->drain(drain_bound(to)).count());
        front->apply(to);
        step = "front end start";
        front->start();
        step = "health check";
        reason = front->health();
      }
    } catch (const std::exception& e) {
      reason = e.what();
    }
    if (reason.empty()) return t;
    std::string msg =
        step + " failed: " + reason + "; rolled back to generation " + std::to_string(from_generation);
    if (const auto also = restore(front, from); !also.empty())
      msg += " (restoring it failed too: " + also + ")";
    publish(v1::Event::ROLLBACK, from_generation, actor, false, msg);
    throw MgmtError(ErrorCode::aborted, msg);
  }

  // --- confirmed commits ----------------------------------------------------
  // Restores the committed generation in place of the pending one. Caller holds change_mu.
  std::uint64_t drop_pending(const std::string& actor, const std::string& why) {
    FrontEnd* front = nullptr;
    ApplianceConfig previous;
    std::uint64_t previous_gen = 0, dropped_gen = 0;
    {
      std::lock_guard lock(mu);
      front = fe;
      previous = committed.config();
      previous_gen = committed.generation();
      dropped_gen = pending->gen.generation();
    }
    std::string msg = why + ": generation " + std::to_string(dropped_gen) + " rolled back to generation " +
                      std::to_string(previous_gen);
    if (front != nullptr) {
      if (const auto also = restore(front, previous); !also.empty())
        msg += " (restoring it failed: " + also + ")";
    }
    store.discard_pending();
    {
      std::lock_guard lock(mu);
      pending.reset();
      // Staged edits were made on top of the dropped configuration.
      candidate = committed.config();
    }
    cv.notify_all();
    publish(v1::Event::ROLLBACK, previous_gen, actor, true, msg);
    return previous_gen;
  }

  void deadline_loop() {
    std::unique_lock lock(mu);
    while (!stopping) {
      if (!pending) {
        cv.wait(lock);
        continue;
      }
      if (Clock::now() < pending->deadline) {
        cv.wait_until(lock, pending->deadline);
        continue;
      }
      lock.unlock();
      {
        std::lock_guard change(change_mu);
        bool expired = false;
        {
          std::lock_guard l2(mu);
          expired = pending && Clock::now() >= pending->deadline;
        }
        if (expired) {
          std::string detail = "confirm deadline passed";
          const Caller self;
          try {
            audited(self, "confirm_deadline", detail, [&] {
              detail += ", rolled back to generation " +
                        std::to_string(drop_pending(self.actor, "not confirmed in time"));
              return 0;
            });
          } catch (const std::exception& e) {
            spdlog::error("event=mgmt_confirm_deadline_failed reason=\"{}\"", e.what());
          }
        }
      }
      lock.lock();
    }
  }

  // --- messages -------------------------------------------------------------
  v1::Property property(const PropertyDescriptor& d) const {  // under mu
    v1::Property p;
    p.set_name(d.name);
    p.set_type(to_string(d.type));
    p.set_value(d.get(running()));
    p.set_default_value(d.default_value);
    p.set_staged_value(d.get(candidate));
    p.set_staged(p.staged_value() != p.value());
    p.set_restart(d.restart);
    p.set_description(d.description);
    for (const auto& a : d.aliases) p.add_aliases(a);
    for (const auto& a : d.allowed) p.add_allowed(a);
    return p;
  }

  // The configurations that may mint with a key set, and what the front end says it mints with.
  struct Users {
    ApplianceConfig committed, running, candidate;
    std::string fe_key_set;
    std::uint32_t fe_minting = 0;
  };
  Users users() {
    Users u;
    FrontEnd* front = nullptr;
    {
      std::lock_guard lock(mu);
      u.committed = committed.config();
      u.running = running();
      u.candidate = candidate;
      front = fe;
    }
    if (front != nullptr) {
      std::lock_guard lock(fe_mu);
      const auto st = front->status();
      u.fe_key_set = st.key_set();
      u.fe_minting = st.minting_version();
    }
    return u;
  }

  static v1::KeySet key_set_message(const hsm::KeySetInfo& info, const Users& u) {
    // Between a rotation and the apply, the running front end still mints
    // with the version its key-set view was configured with: ask it.
    const std::uint32_t running_mint =
        u.fe_key_set == info.name && u.fe_minting != 0 ? u.fe_minting : mints_with(u.running, info);
    const std::uint32_t staged_mint = mints_with(u.candidate, info);
    v1::KeySet ks;
    ks.set_name(info.name);
    ks.set_retain(info.retain);
    for (const auto& v : info.versions) {
      auto* kv = ks.add_versions();
      kv->set_version(v.version);
      kv->set_active(v.state == hsm::KeyState::active);
      kv->set_created_unix(v.created_unix);
      kv->set_minting(v.version == running_mint);
      kv->set_staged_minting(v.version == staged_mint);
    }
    for (const auto* c : {&u.committed, &u.running, &u.candidate}) {
      if (c->sip().flow_token().key_set() == info.name) ks.set_in_use(true);
    }
    return ks;
  }

  // Versions of `info` that some configuration (or the front end) mints with.
  static std::set<std::uint32_t> versions_in_use(const hsm::KeySetInfo& info, const Users& u) {
    std::set<std::uint32_t> out;
    for (const auto* c : {&u.committed, &u.running, &u.candidate}) {
      if (const auto v = mints_with(*c, info); v != 0) out.insert(v);
    }
    if (u.fe_key_set == info.name && u.fe_minting != 0) out.insert(u.fe_minting);
    return out;
  }
};

Agent::Agent(AgentOptions options, hsm::Hsm& hsm, const v1::ApplianceConfig& initial)
    : impl_(std::make_unique<Impl>(std::move(options), hsm)), audit_(impl_->opts.state_dir / "audit.log") {
  Impl& im = *impl_;
  im.events = &events_;
  im.audit = &audit_;
  const Caller self;

  auto latest = im.store.latest();
  if (!latest) {
    // Hold the seed to the registry's rules: a bad value is a daemon bug, not a first boot.
    v1::ApplianceConfig fresh = im.reg.defaults();
    for (const auto& d : im.reg.all()) im.reg.set(fresh, d.name, d.get(initial));
    v1::StoredGeneration g;
    g.set_generation(1);
    *g.mutable_config() = initial;
    g.set_committed_at_unix_ms(unix_ms());
    g.set_actor(self.actor);
    g.set_summary("first boot");
    im.store.commit(g);
    audit_.record(self.actor, "first_boot", "generation 1 committed", "ok");
    latest = g;
  }
  im.committed = *latest;
  im.candidate = latest->config();

  if (const auto p = im.store.pending()) {
    // A confirmed commit the operator never confirmed before the process died:
    // discarding it is its rollback. A pending file of an already committed
    // generation is the leftover of a confirm cut short after its commit.
    const bool confirmed = p->generation() <= latest->generation();
    im.store.discard_pending();
    const std::string detail = "pending generation " + std::to_string(p->generation()) +
                               (confirmed ? " was already committed" : " was never confirmed") +
                               "; running generation " + std::to_string(latest->generation());
    audit_.record(self.actor, "discard_pending", detail, "ok");
    if (!confirmed) im.publish(v1::Event::ROLLBACK, latest->generation(), self.actor, true, detail);
  } else if (std::filesystem::exists(im.store.dir() / "pending.cfg")) {
    // Unreadable: it can never be confirmed either.
    im.store.discard_pending();
    audit_.record(self.actor, "discard_pending", "unreadable pending.cfg removed", "ok");
  }
  im.store.set_keep(latest->config().mgmt().keep_generations());

  for (const auto& g : im.store.list()) {
    if (g.request_id().empty()) continue;
    v1::ApplyResponse r;
    r.set_generation(g.generation());
    for (auto& c : split_summary(g.summary())) r.add_changes(std::move(c));
    im.remember(g.request_id(), r);
  }

  im.deadline_thread = std::thread([&im] { im.deadline_loop(); });
}

Agent::~Agent() { shutdown(); }

void Agent::shutdown() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->deadline_thread.joinable()) impl_->deadline_thread.join();
}

v1::ApplianceConfig Agent::boot_config() const {
  std::lock_guard lock(impl_->mu);
  return impl_->committed.config();
}

std::uint64_t Agent::generation() const {
  std::lock_guard lock(impl_->mu);
  return impl_->committed.generation();
}

void Agent::attach_front_end(FrontEnd* fe) {
  // Under change_mu: an apply in flight keeps the front end it started with.
  std::lock_guard change(impl_->change_mu);
  std::lock_guard lock(impl_->mu);
  impl_->fe = fe;
}

v1::Status Agent::status() {
  Impl& im = *impl_;
  v1::Status s;
  s.set_version(im.opts.version);
  s.set_uptime_seconds(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - im.started).count()));
  FrontEnd* front = nullptr;
  {
    std::lock_guard lock(im.mu);
    s.set_generation(im.committed.generation());
    s.set_staged_changes(!diff_properties(im.running(), im.candidate).empty());
    if (im.pending) {
      s.mutable_pending()->set_generation(im.pending->gen.generation());
      s.mutable_pending()->set_previous_generation(im.committed.generation());
      s.mutable_pending()->set_deadline_unix_ms(im.pending->deadline_unix_ms);
    }
    front = im.fe;
  }
  if (front != nullptr) {
    std::lock_guard lock(im.fe_mu);
    *s.mutable_front_end() = front->status();
  }
  const hsm::HsmStatus hs = im.hsm.status();
  const hsm::OpCountersSnapshot ops = im.hsm.counters().snapshot();
  auto* h = s.mutable_hsm();
  h->set_state(hsm::to_string(hs.state));
  h->set_last_error(hs.last_error);
  h->set_token_label(hs.token_label);
  h->set_module_description(hs.module_description);
  h->set_sign_ops(ops.sign);
  h->set_verify_ops(ops.verify);
  h->set_errors(ops.failures);
  h->set_sessions_open(hs.sessions_open);
  return s;
}

v1::ListKeySetsResponse Agent::list_key_sets() {
  Impl& im = *impl_;
  const auto infos = hsm_call(im.hsm, [&] { return im.hsm.keysets().list(); });
  const Impl::Users u = im.users();
  v1::ListKeySetsResponse r;
  for (const auto& info : infos) *r.add_key_sets() = Impl::key_set_message(info, u);
  return r;
}

v1::KeySet Agent::get_key_set(const std::string& name) {
  Impl& im = *impl_;
  if (!hsm::valid_key_set_name(name))
    throw MgmtError(ErrorCode::invalid_argument, "invalid key set name '" + name + "'");
  const auto info = hsm_call(im.hsm, [&] {
    if (!im.hsm.keysets().exists(name))
      throw MgmtError(ErrorCode::not_found, "key set '" + name + "' does not exist");
    return im.hsm.keysets().get(name);
  });
  return Impl::key_set_message(info, im.users());
}

v1::KeySetChange Agent::create_key_set(const Caller& c, const v1::CreateKeySetRequest& r) {
  Impl& im = *impl_;
  std::string detail = "key set " + r.name() + " retain " + std::to_string(r.retain());
  return im.audited(c, "create_key_set", detail, [&] {
    if (!hsm::valid_key_set_name(r.name())) {
      throw MgmtError(ErrorCode::invalid_argument,
                      "invalid key set name '" + r.name() + "' (1..64 characters of A-Z a-z 0-9 . _ -)");
    }
    const std::uint32_t retain = r.retain() == 0 ? hsm::kDefaultRetain : r.retain();
    if (retain > hsm::kMaxRetain) {
      throw MgmtError(ErrorCode::invalid_argument, "retain must be 1.." + std::to_string(hsm::kMaxRetain));
    }
    const auto info = hsm_call(im.hsm, [&] {
      if (im.hsm.keysets().exists(r.name())) {
        throw MgmtError(ErrorCode::already_exists, "key set '" + r.name() + "' already exists");
      }
      return im.hsm.keysets().create(r.name(), retain);
    });
    v1::KeySetChange ch;
    *ch.mutable_key_set() = Impl::key_set_message(info, im.users());
    ch.set_note("created with version 1");
    im.publish(v1::Event::KEY_SET, generation(), c.actor, true, "key set " + r.name() + " created");
    return ch;
  });
}

v1::KeySetChange Agent::rotate_key_set(const Caller& c, const v1::RotateKeySetRequest& r) {
  Impl& im = *impl_;
  std::string detail = "key set " + r.name();
  return im.audited(c, "rotate_key_set", detail, [&] {
    const auto before = hsm_call(im.hsm, [&] {
      if (!hsm::valid_key_set_name(r.name()) || !im.hsm.keysets().exists(r.name())) {
        throw MgmtError(ErrorCode::not_found, "key set '" + r.name() + "' does not exist");
      }
      return im.hsm.keysets().get(r.name());
    });
    // The rotation destroys the oldest versions beyond `retain`: never one
    // that a configuration or the running front end still mints with.
    const std::uint32_t retain = before.retain == 0 ? hsm::kDefaultRetain : before.retain;
    if (before.versions.size() + 1 > retain) {
      const std::size_t destroyed = before.versions.size() + 1 - retain;
      const auto in_use = Impl::versions_in_use(before, im.users());
      for (std::size_t i = 0; i < destroyed && i < before.versions.size(); ++i) {
        if (in_use.count(before.versions[i].version) != 0) {
          throw MgmtError(ErrorCode::failed_precondition,
                          "rotating key set '" + r.name() + "' would destroy version " +
                              std::to_string(before.versions[i].version) + ", which still mints (retain " +
                              std::to_string(retain) + ")");
        }
      }
    }
    const auto v = hsm_call(im.hsm, [&] { return im.hsm.keysets().rotate(r.name()); });
    detail += " -> version " + std::to_string(v.version);
    v1::KeySetChange ch;
    {
      std::lock_guard lock(im.mu);
      // Staged, not live: the front end switches at the next apply, after the
      // new version passed a mint/verify round trip.
      if (im.candidate.sip().flow_token().key_set() == r.name()) {
        im.candidate.mutable_sip()->mutable_flow_token()->set_key_version(v.version);
        ch.set_staged(true);
      }
    }
    ch.set_note(ch.staged() ? "version " + std::to_string(v.version) +
                                  " staged as sip.flow_token.key_version; it mints after apply"
                            : "version " + std::to_string(v.version) +
                                  " created; the configuration does not use " + r.name());
    const auto after = hsm_call(im.hsm, [&] { return im.hsm.keysets().get(r.name()); });
    *ch.mutable_key_set() = Impl::key_set_message(after, im.users());
    im.publish(v1::Event::KEY_SET, generation(), c.actor, true, detail);
    return ch;
  });
}

v1::KeySetChange Agent::retire_key_version(const Caller& c, const v1::RetireKeyVersionRequest& r) {
  Impl& im = *impl_;
  std::string detail = "key set " + r.name() + " version " + std::to_string(r.version());
  return im.audited(c, "retire_key_version", detail, [&] {
    const auto info = hsm_call(im.hsm, [&] {
      if (!hsm::valid_key_set_name(r.name()) || !im.hsm.keysets().exists(r.name())) {
        throw MgmtError(ErrorCode::not_found, "key set '" + r.name() + "' does not exist");
      }
      return im.hsm.keysets().get(r.name());
    });
    if (std::none_of(info.versions.begin(), info.versions.end(),
                     [&](const hsm::KeyVersionInfo& k) { return k.version == r.version(); })) {
      throw MgmtError(ErrorCode::not_found,
                      "key set '" + r.name() + "' has no version " + std::to_string(r.version()));
    }
    if (Impl::versions_in_use(info, im.users()).count(r.version()) != 0) {
      throw MgmtError(ErrorCode::failed_precondition,
                      "version " + std::to_string(r.version()) + " of key set '" + r.name() +
                          "' mints for the running, pending or staged configuration; rotate and apply first");
    }
    hsm_call(im.hsm, [&] { im.hsm.keysets().retire(r.name(), r.version()); });
    im.key_sets_changed();
    const auto after = hsm_call(im.hsm, [&] { return im.hsm.keysets().get(r.name()); });
    v1::KeySetChange ch;
    *ch.mutable_key_set() = Impl::key_set_message(after, im.users());
    ch.set_note("version " + std::to_string(r.version()) +
                " retired: tokens minted with it no longer verify");
    im.publish(v1::Event::KEY_SET, generation(), c.actor, true, detail + " retired");
    return ch;
  });
}

v1::KeySetChange Agent::destroy_key_set(const Caller& c, const v1::DestroyKeySetRequest& r) {
  Impl& im = *impl_;
  std::string detail = "key set " + r.name();
  return im.audited(c, "destroy_key_set", detail, [&] {
    const auto info = hsm_call(im.hsm, [&] {
      if (!hsm::valid_key_set_name(r.name()) || !im.hsm.keysets().exists(r.name())) {
        throw MgmtError(ErrorCode::not_found, "key set '" + r.name() + "' does not exist");
      }
      return im.hsm.keysets().get(r.name());
    });
    const Impl::Users u = im.users();
    if (Impl::key_set_message(info, u).in_use() || u.fe_key_set == r.name()) {
      throw MgmtError(ErrorCode::failed_precondition,
                      "key set '" + r.name() + "' is named by the running, pending or staged configuration");
    }
    hsm_call(im.hsm, [&] { im.hsm.keysets().destroy(r.name()); });
    im.key_sets_changed();
    v1::KeySetChange ch;
    ch.mutable_key_set()->set_name(r.name());
    ch.set_note("destroyed: tokens minted with it no longer verify");
    im.publish(v1::Event::KEY_SET, generation(), c.actor, true, detail + " destroyed");
    return ch;
  });
}

v1::ListPropertiesResponse Agent::list_properties() {
  std::lock_guard lock(impl_->mu);
  v1::ListPropertiesResponse r;
  for (const auto& d : impl_->reg.all()) *r.add_properties() = impl_->property(d);
  return r;
}

v1::Property Agent::get_property(const std::string& name) {
  const PropertyDescriptor* d = impl_->reg.find(name);
  if (d == nullptr) throw MgmtError(ErrorCode::not_found, "unknown property '" + name + "'");
  std::lock_guard lock(impl_->mu);
  return impl_->property(*d);
}

v1::Property Agent::set_property(const Caller& c, const v1::SetPropertyRequest& r) {
  Impl& im = *impl_;
  std::string detail = r.name() + " = " + r.value();
  return im.audited(c, "set_property", detail, [&] {
    std::lock_guard lock(im.mu);
    ApplianceConfig next = im.candidate;
    im.reg.set(next, r.name(), r.value());
    const PropertyDescriptor& d = *im.reg.find(r.name());
    const auto& ft = next.sip().flow_token();
    // Naming a key set the HSM cannot mint with is refused now, not at apply.
    if (d.name == "sip.flow_token.key_set" && !ft.key_set().empty()) {
      hsm_call(im.hsm, [&] {
        if (!im.hsm.keysets().exists(ft.key_set())) {
          throw MgmtError(ErrorCode::failed_precondition,
                          "key set '" + ft.key_set() + "' does not exist in the HSM");
        }
        if (im.hsm.keysets().get(ft.key_set()).minting_version() == 0) {
          throw MgmtError(ErrorCode::failed_precondition,
                          "key set '" + ft.key_set() + "' has no active version");
        }
      });
    }
    if (d.name == "sip.flow_token.key_version" && ft.key_version() != 0 && !ft.key_set().empty()) {
      hsm_call(im.hsm, [&] {
        if (im.hsm.keysets().exists(ft.key_set()) &&
            !active_version(im.hsm.keysets().get(ft.key_set()), ft.key_version())) {
          throw MgmtError(
              ErrorCode::failed_precondition,
              "key set '" + ft.key_set() + "' has no active version " + std::to_string(ft.key_version()));
        }
      });
    }
    im.candidate = std::move(next);
    v1::Property p = im.property(d);
    im.publish(v1::Event::PROPERTY_STAGED, im.committed.generation(), c.actor, true,
               d.name + " = " + p.staged_value());
    return p;
  });
}

v1::Property Agent::unset_property(const Caller& c, const v1::UnsetPropertyRequest& r) {
  Impl& im = *impl_;
  std::string detail = r.name();
  return im.audited(c, "unset_property", detail, [&] {
    std::lock_guard lock(im.mu);
    ApplianceConfig next = im.candidate;
    im.reg.unset(next, r.name());
    const PropertyDescriptor& d = *im.reg.find(r.name());
    im.candidate = std::move(next);
    v1::Property p = im.property(d);
    im.publish(v1::Event::PROPERTY_STAGED, im.committed.generation(), c.actor, true,
               d.name + " = " + p.staged_value() + " (default)");
    return p;
  });
}

v1::GetConfigResponse Agent::get_config() {
  std::lock_guard lock(impl_->mu);
  v1::GetConfigResponse r;
  r.set_generation(impl_->pending ? impl_->pending->gen.generation() : impl_->committed.generation());
  *r.mutable_committed() = impl_->running();
  *r.mutable_candidate() = impl_->candidate;
  for (auto& s : diff_properties(impl_->running(), impl_->candidate)) r.add_staged(std::move(s));
  return r;
}

v1::GetConfigResponse Agent::discard_staged(const Caller& c) {
  Impl& im = *impl_;
  std::string detail;
  return im.audited(c, "discard_staged", detail, [&] {
    {
      std::lock_guard lock(im.mu);
      detail = join(diff_properties(im.running(), im.candidate), "; ");
      im.candidate = im.running();
    }
    return get_config();
  });
}

v1::ApplyResponse Agent::apply(const Caller& c, const v1::ApplyRequest& r) {
  Impl& im = *impl_;
  std::string detail = "request_id=" + r.request_id() +
                       " expected_generation=" + std::to_string(r.expected_generation()) +
                       " confirm_within_seconds=" + std::to_string(r.confirm_within_seconds());
  return im.audited(c, "apply", detail, [&] {
    if (auto rep = im.replay(r.request_id())) return *rep;
    std::unique_lock change(im.change_mu, std::try_to_lock);
    if (!change.owns_lock()) throw MgmtError(ErrorCode::aborted, "another apply is in progress");
    // The first attempt may have finished while this one waited for the lock.
    if (auto rep = im.replay(r.request_id())) return *rep;

    v1::StoredGeneration base;
    ApplianceConfig next;
    FrontEnd* front = nullptr;
    {
      std::lock_guard lock(im.mu);
      base = im.committed;
      if (im.pending) {
        throw MgmtError(ErrorCode::failed_precondition,
                        "generation " + std::to_string(im.pending->gen.generation()) +
                            " awaits confirmation; confirm or roll back first");
      }
      next = im.candidate;
      front = im.fe;
    }
    if (r.expected_generation() != 0 && r.expected_generation() != base.generation()) {
      throw MgmtError(ErrorCode::failed_precondition, "configuration is at generation " +
                                                          std::to_string(base.generation()) + ", not " +
                                                          std::to_string(r.expected_generation()));
    }
    const auto changes = diff_properties(base.config(), next);
    if (changes.empty()) throw MgmtError(ErrorCode::failed_precondition, "nothing staged");
    detail += " changes: " + join(changes, "; ");

    im.validate(next, front);
    const Impl::Transition t = im.drive(front, base.config(), next, base.generation(), c.actor);

    v1::StoredGeneration g;
    g.set_generation(base.generation() + 1);
    *g.mutable_config() = next;
    g.set_committed_at_unix_ms(unix_ms());
    g.set_actor(c.actor);
    g.set_request_id(r.request_id());
    g.set_summary(join(changes, "; "));
    v1::ApplyResponse resp;
    resp.set_generation(g.generation());
    resp.set_restart(t.restart);
    resp.set_drain_ms(t.drain_ms);
    for (const auto& ch : changes) resp.add_changes(ch);
    const bool confirmed = r.confirm_within_seconds() > 0;
    // The store learns of the generation only now that the front end runs it
    // healthily; if the write fails, the front end goes back to what the store holds.
    try {
      if (confirmed) {
        im.store.write_pending(g);
      } else {
        im.store.commit(g);
      }
    } catch (const MgmtError& e) {
      std::string msg =
          std::string(e.what()) + "; front end restored to generation " + std::to_string(base.generation());
      if (front != nullptr && t.restart != v1::RESTART_PROCESS) im.restore(front, base.config());
      throw MgmtError(ErrorCode::internal, msg);
    }
    {
      std::lock_guard lock(im.mu);
      if (confirmed) {
        const auto within = std::chrono::seconds(r.confirm_within_seconds());
        im.pending =
            Impl::Pending{g, Clock::now() + within,
                          unix_ms() + std::chrono::duration_cast<std::chrono::milliseconds>(within).count()};
        resp.set_pending_confirm(true);
        resp.set_confirm_deadline_unix_ms(im.pending->deadline_unix_ms);
      } else {
        im.committed = g;
        im.store.set_keep(next.mgmt().keep_generations());
      }
      // Edits staged during the apply stay staged: the candidate is left alone.
      im.remember(r.request_id(), resp);
    }
    im.cv.notify_all();
    im.publish(v1::Event::APPLY, g.generation(), c.actor, true,
               (confirmed ? "pending confirmation: " : "") + g.summary());
    return resp;
  });
}

v1::ApplyResponse Agent::confirm(const Caller& c) {
  Impl& im = *impl_;
  std::string detail;
  return im.audited(c, "confirm", detail, [&] {
    std::lock_guard change(im.change_mu);
    std::lock_guard lock(im.mu);
    if (!im.pending) throw MgmtError(ErrorCode::failed_precondition, "no apply is waiting for confirmation");
    im.store.confirm_pending();
    im.committed = im.pending->gen;
    im.pending.reset();
    im.store.set_keep(im.committed.config().mgmt().keep_generations());
    im.cv.notify_all();
    detail = "generation " + std::to_string(im.committed.generation());
    v1::ApplyResponse resp;
    resp.set_generation(im.committed.generation());
    for (auto& ch : split_summary(im.committed.summary())) resp.add_changes(std::move(ch));
    im.publish(v1::Event::CONFIRM, im.committed.generation(), c.actor, true, detail + " confirmed");
    return resp;
  });
}

v1::ApplyResponse Agent::rollback(const Caller& c, const v1::RollbackRequest& r) {
  Impl& im = *impl_;
  std::string detail = "generation=" + std::to_string(r.generation()) + " request_id=" + r.request_id();
  return im.audited(c, "rollback", detail, [&] {
    if (auto rep = im.replay(r.request_id())) return *rep;
    std::unique_lock change(im.change_mu, std::try_to_lock);
    if (!change.owns_lock()) throw MgmtError(ErrorCode::aborted, "another apply is in progress");
    if (auto rep = im.replay(r.request_id())) return *rep;

    v1::StoredGeneration base;
    FrontEnd* front = nullptr;
    bool has_pending = false;
    {
      std::lock_guard lock(im.mu);
      base = im.committed;
      front = im.fe;
      has_pending = im.pending.has_value();
    }
    v1::ApplyResponse resp;
    if (has_pending) {
      // Rolling back an unconfirmed apply is cancelling it.
      resp.set_generation(im.drop_pending(c.actor, "cancelled by " + c.actor));
      detail += " (cancelled the pending confirm)";
      std::lock_guard lock(im.mu);
      im.remember(r.request_id(), resp);
      return resp;
    }
    const std::uint64_t target_gen = r.generation() != 0 ? r.generation() : base.generation() - 1;
    if (target_gen == base.generation()) {
      throw MgmtError(ErrorCode::failed_precondition,
                      "generation " + std::to_string(target_gen) + " is the committed one");
    }
    const auto target = target_gen == 0 ? std::nullopt : im.store.get(target_gen);
    if (!target) {
      throw MgmtError(ErrorCode::not_found,
                      "generation " + std::to_string(target_gen) + " is no longer kept");
    }
    const auto changes = diff_properties(base.config(), target->config());
    im.validate(target->config(), front);
    const Impl::Transition t = im.drive(front, base.config(), target->config(), base.generation(), c.actor);

    // Generations only grow: the old configuration comes back as a new one.
    v1::StoredGeneration g;
    g.set_generation(base.generation() + 1);
    *g.mutable_config() = target->config();
    g.set_committed_at_unix_ms(unix_ms());
    g.set_actor(c.actor);
    g.set_request_id(r.request_id());
    g.set_summary("rollback to generation " + std::to_string(target_gen) +
                  (changes.empty() ? "" : ": " + join(changes, "; ")));
    g.set_rolled_back_from(base.generation());
    try {
      im.store.commit(g);
    } catch (const MgmtError& e) {
      if (front != nullptr && t.restart != v1::RESTART_PROCESS) im.restore(front, base.config());
      throw MgmtError(ErrorCode::internal, std::string(e.what()) + "; front end restored to generation " +
                                               std::to_string(base.generation()));
    }
    resp.set_generation(g.generation());
    resp.set_restart(t.restart);
    resp.set_drain_ms(t.drain_ms);
    for (const auto& ch : changes) resp.add_changes(ch);
    {
      std::lock_guard lock(im.mu);
      im.committed = g;
      im.candidate = g.config();  // a rollback drops staged edits
      im.store.set_keep(g.config().mgmt().keep_generations());
      im.remember(r.request_id(), resp);
    }
    detail += " -> generation " + std::to_string(g.generation());
    im.publish(v1::Event::ROLLBACK, g.generation(), c.actor, true, g.summary());
    return resp;
  });
}

v1::ListGenerationsResponse Agent::list_generations() {
  Impl& im = *impl_;
  const std::uint64_t current = generation();
  v1::ListGenerationsResponse r;
  for (const auto& g : im.store.list()) {
    auto* info = r.add_generations();
    info->set_generation(g.generation());
    info->set_committed_unix_ms(g.committed_at_unix_ms());
    info->set_actor(g.actor());
    info->set_summary(g.summary());
    info->set_rolled_back_from(g.rolled_back_from());
    info->set_current(g.generation() == current);
  }
  return r;
}

v1::RestartFrontEndResponse Agent::restart_front_end(const Caller& c) {
  Impl& im = *impl_;
  std::string detail;
  return im.audited(c, "restart_front_end", detail, [&] {
    std::unique_lock change(im.change_mu, std::try_to_lock);
    if (!change.owns_lock()) throw MgmtError(ErrorCode::aborted, "another apply is in progress");
    FrontEnd* front = nullptr;
    ApplianceConfig cfg;
    std::uint64_t gen = 0;
    {
      std::lock_guard lock(im.mu);
      front = im.fe;
      cfg = im.running();
      gen = im.pending ? im.pending->gen.generation() : im.committed.generation();
    }
    if (front == nullptr) throw MgmtError(ErrorCode::failed_precondition, "no front end attached");
    v1::RestartFrontEndResponse resp;
    std::string reason;
    {
      std::lock_guard lock(im.fe_mu);
      try {
        resp.set_drain_ms(static_cast<std::uint64_t>(front->drain(drain_bound(cfg)).count()));
        front->apply(cfg);
        front->start();
        reason = front->health();
      } catch (const std::exception& e) {
        reason = e.what();
      }
    }
    detail = "generation " + std::to_string(gen);
    if (!reason.empty()) {
      im.publish(v1::Event::RESTART, gen, c.actor, false, "restart failed: " + reason);
      throw MgmtError(ErrorCode::aborted, "front end restart failed: " + reason);
    }
    im.publish(v1::Event::RESTART, gen, c.actor, true,
               "front end restarted with generation " + std::to_string(gen));
    return resp;
  });
}

void Agent::report_hsm_state(const std::string& state, const std::string& reason) {
  impl_->publish(v1::Event::HSM_FAULT, generation(), "hsm", state == "available", state + ": " + reason);
}

}  // namespace edge::mgmt
