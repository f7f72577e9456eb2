// ChangeController: the transactional apply / confirm / rollback / restart of the running configuration.
#include "change_controller.h"

#include "agent_support.h"

#include <edge/mgmt/error.h>
#include <google/protobuf/util/message_differencer.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace edge::mgmt::agent_parts {
namespace {

using v1::ApplianceConfig;
using namespace std::chrono_literals;

std::chrono::milliseconds drain_bound(const ApplianceConfig& c) {
  return std::chrono::milliseconds(c.mgmt().drain_timeout_ms());
}

}  // namespace

// Publishes the target of a change for as long as the change runs, so that a
// key-set change in the meantime counts it as a user.
class ChangeController::ApplyingMark {
 public:
  ApplyingMark(ChangeController& c, const ApplianceConfig& target) : c_(c) {
    State s = *c_.state();
    s.applying = target;
    c_.publish_state(std::move(s));
  }
  ~ApplyingMark() {
    if (!c_.state()->applying) return;
    State s = *c_.state();
    s.applying.reset();
    c_.publish_state(std::move(s));
  }
  ApplyingMark(const ApplyingMark&) = delete;
  ApplyingMark& operator=(const ApplyingMark&) = delete;

 private:
  ChangeController& c_;
};

ChangeController::ChangeController(const std::filesystem::path& config_dir, StoreSeal& seal,
                                   std::string self_actor, const Parts& parts)
    : store_(config_dir, 10, &seal),
      self_actor_(std::move(self_actor)),
      parts_(parts),
      state_(std::make_shared<const State>()),
      timer_([this] { expire(); }) {}

ChangeController::~ChangeController() { shutdown(); }

void ChangeController::shutdown() { timer_.stop(); }

void ChangeController::publish_state(State s) { state_.store(std::make_shared<const State>(std::move(s))); }

v1::ConfigStoreStatus ChangeController::store_status() const {
  std::lock_guard lock(store_status_mu_);
  return store_status_;
}

void ChangeController::note_store() {
  const StoreCheck c = store_.check();
  v1::ConfigStoreStatus st;
  st.set_state(c.refused.empty() ? "ok" : c.newest_refused() ? "newest_refused" : "degraded");
  st.set_newest_on_disk(c.newest_on_disk);
  st.set_newest_good(c.newest_good);
  st.set_sealed(true);
  std::string detail;
  for (const auto& r : c.refused) {
    auto* f = st.add_refused();
    f->set_file(r.file);
    f->set_generation(r.generation);
    f->set_reason(r.reason);
    detail += (detail.empty() ? "" : "; ") + r.file + ": " + r.reason;
  }
  std::string before;
  {
    std::lock_guard lock(store_status_mu_);
    before = store_status_.state();
    store_status_ = st;
  }
  const std::uint64_t running = state()->committed.generation();
  if (c.newest_refused()) {
    const std::string msg = "the newest generation on disk, " + std::to_string(c.newest_on_disk) +
                            ", is refused; running generation " + std::to_string(c.newest_good) + ": " +
                            detail;
    spdlog::error("event=config_store_corrupt newest={} running={} refused=\"{}\"", c.newest_on_disk,
                  c.newest_good, detail);
    if (before != st.state()) {
      parts_.audit.record(self_actor_, "config_store_corrupt", msg, "refused");
      v1::Event e;
      e.set_kind(v1::Event::CONFIG_STORE);
      e.set_generation(running);
      e.set_actor(self_actor_);
      e.set_ok(false);
      e.set_message(msg);
      parts_.events.publish_standing(std::move(e));
    }
    return;
  }
  parts_.events.clear_standing(v1::Event::CONFIG_STORE);
  if (before == st.state()) return;
  if (!c.refused.empty()) {
    const std::string msg = "older files of the config store are refused (kept until pruned): " + detail;
    spdlog::warn("event=config_store_degraded refused=\"{}\"", detail);
    parts_.audit.record(self_actor_, "config_store_degraded", msg, "refused");
    publish(parts_.events, v1::Event::CONFIG_STORE, running, self_actor_, false, msg);
  } else if (!before.empty()) {
    publish(parts_.events, v1::Event::CONFIG_STORE, running, self_actor_, true,
            "every file of the config store verifies");
  }
}

void ChangeController::open(const ApplianceConfig& initial) {
  std::lock_guard change(change_mu_);
  const PropertyRegistry& reg = parts_.registry;
  if (const std::size_t sealed = store_.adopt_seal(); sealed > 0) {
    parts_.audit.record(self_actor_, "config_store_sealed",
                        std::to_string(sealed) + " file(s) sealed with the HSM's config store key", "ok");
  }
  const StoreCheck found = store_.check();
  std::optional<v1::StoredGeneration> latest;
  if (found.newest_good != 0) latest = store_.get(found.newest_good);
  if (!latest && found.newest_on_disk != 0) {
    // Seeding generation 1 again would take the place of a history that
    // cannot be read: an operator decides (docs/operations.md, "The config store").
    throw MgmtError(ErrorCode::failed_precondition,
                    "no generation of the config store in " + store_.dir().string() + " verifies (newest " +
                        std::to_string(found.newest_on_disk) + ": " +
                        (found.refused.empty() ? std::string("unreadable") : found.refused.front().reason) +
                        ")");
  }
  if (!latest) {
    // Hold the seed to the registry's rules: a bad value is a daemon bug, not a first boot.
    ApplianceConfig fresh = reg.defaults();
    for (const auto& d : reg.all()) reg.set(fresh, d.name, d.get(initial));
    v1::StoredGeneration g;
    g.set_generation(1);
    *g.mutable_config() = initial;
    g.set_committed_at_unix_ms(unix_ms());
    g.set_actor(self_actor_);
    g.set_summary("first boot");
    store_.commit(g);
    parts_.audit.record(self_actor_, "first_boot", "generation 1 committed", "ok");
    latest = g;
  }
  State s;
  s.committed = *latest;
  publish_state(std::move(s));
  parts_.staging.reset(latest->config());

  if (const auto p = store_.pending()) {
    // A confirmed commit the operator never confirmed before the process died:
    // discarding it is its rollback. A pending file of an already committed
    // generation is the leftover of a confirm cut short after its commit.
    const bool confirmed = p->generation() <= latest->generation();
    store_.discard_pending();
    const std::string detail = "pending generation " + std::to_string(p->generation()) +
                               (confirmed ? " was already committed" : " was never confirmed") +
                               "; running generation " + std::to_string(latest->generation());
    parts_.audit.record(self_actor_, "discard_pending", detail, "ok");
    if (!confirmed)
      publish(parts_.events, v1::Event::ROLLBACK, latest->generation(), self_actor_, true, detail);
  } else if (std::filesystem::exists(store_.dir() / "pending.cfg")) {
    // Unreadable: it can never be confirmed either.
    store_.discard_pending();
    parts_.audit.record(self_actor_, "discard_pending", "unreadable pending.cfg removed", "ok");
  }
  store_.set_keep(latest->config().mgmt().keep_generations());

  for (const auto& g : store_.list()) {
    if (g.request_id().empty()) continue;
    v1::ApplyResponse r;
    r.set_generation(g.generation());
    for (auto& c : split_summary(g.summary())) r.add_changes(std::move(c));
    parts_.memory.remember(g.request_id(), r);
  }
  note_store();
}

void ChangeController::attach(FrontEnd* fe) {
  // Under change_mu_: a change in flight keeps the front end it started with.
  std::lock_guard change(change_mu_);
  parts_.front_end.attach(fe);
  // The daemon started `fe` with the running configuration.
  fe_config_ = state()->running();
}

// --- validation ---------------------------------------------------------------

void ChangeController::check(const ApplianceConfig& next) {
  // Re-setting every value on a fresh configuration runs each property's own
  // checks, so a configuration from the store or a rollback is held to
  // today's rules too.
  const PropertyRegistry& reg = parts_.registry;
  ApplianceConfig fresh = reg.defaults();
  for (const auto& d : reg.all()) reg.set(fresh, d.name, d.get(next));
  parts_.keysets.check_mints(next);
}

void ChangeController::front_end_accepts(FrontEndLink::Session& fe, const ApplianceConfig& next) {
  if (!fe) return;
  if (const std::string reason = fe.validate(next); !reason.empty()) {
    throw MgmtError(ErrorCode::failed_precondition, "front end refused: " + reason);
  }
}

// --- front end ----------------------------------------------------------------

v1::RestartClass ChangeController::class_for(const ApplianceConfig& next) const {
  if (google::protobuf::util::MessageDifferencer::Equals(fe_config_, next)) return v1::RESTART_FRONT_END;
  return parts_.registry.restart_class(fe_config_, next);
}

void ChangeController::give(FrontEndLink::Session& fe, const ApplianceConfig& next) {
  fe.apply(next, class_for(next));
  fe_config_ = next;
}

// Puts `previous` back after a failed step. Returns "" or why that failed too.
// start() runs even when apply() fails: a front end left drained would take
// no SIP traffic at all, while one resumed keeps whatever rules it still holds.
std::string ChangeController::restore(FrontEndLink::Session& fe, const ApplianceConfig& previous) {
  std::string why;
  try {
    fe.drain(drain_bound(previous));
    give(fe, previous);
  } catch (const std::exception& e) {
    why = e.what();
  }
  try {
    fe.start();
  } catch (const std::exception& e) {
    why += (why.empty() ? "" : "; ") + std::string("start: ") + e.what();
  }
  if (!why.empty()) spdlog::error("event=mgmt_restore_failed reason=\"{}\"", why);
  return why;
}

// Moves the front end from `from` to `to` (the controlled restart), or puts
// `from` back and throws MgmtError(aborted) naming the failed step.
ChangeController::Transition ChangeController::drive(FrontEndLink::Session& fe, const ApplianceConfig& from,
                                                     const ApplianceConfig& to, std::uint64_t from_generation,
                                                     const std::string& actor) {
  Transition t;
  t.restart = parts_.registry.restart_class(from, to);
  if (!fe) return t;
  // A process-class change waits for the next start of edged.
  if (t.restart == v1::RESTART_PROCESS) return t;
  std::string step = "front end apply";
  std::string reason;
  try {
    if (t.restart == v1::RESTART_NONE) {
      // Live values (log level, ...) need no drain.
      give(fe, to);
    } else {
      t.drain_ms = static_cast<std::uint64_t>(fe.drain(drain_bound(to)).count());
      give(fe, to);
      step = "front end start";
      fe.start();
      step = "health check";
      reason = fe.health();
    }
  } catch (const std::exception& e) {
    reason = e.what();
  }
  if (reason.empty()) return t;
  std::string msg =
      step + " failed: " + reason + "; rolled back to generation " + std::to_string(from_generation);
  if (const auto also = restore(fe, from); !also.empty()) msg += " (restoring it failed too: " + also + ")";
  publish(parts_.events, v1::Event::ROLLBACK, from_generation, actor, false, msg);
  throw MgmtError(ErrorCode::aborted, msg);
}

// --- the changes --------------------------------------------------------------

std::optional<v1::ApplyResponse> ChangeController::begin_change(const std::string& request_id,
                                                                std::unique_lock<std::mutex>& change) {
  if (auto rep = parts_.memory.replay(request_id)) return rep;
  change = std::unique_lock(change_mu_, std::try_to_lock);
  if (!change.owns_lock()) throw MgmtError(ErrorCode::aborted, "another apply is in progress");
  // The first attempt may have finished while this one waited for the lock.
  return parts_.memory.replay(request_id);
}

v1::ApplyResponse ChangeController::apply(const std::string& actor, const v1::ApplyRequest& r,
                                          std::string& detail) {
  std::unique_lock<std::mutex> change;
  if (auto rep = begin_change(r.request_id(), change)) return *rep;

  const auto st = state();
  const v1::StoredGeneration& base = st->committed;
  if (st->pending) {
    throw MgmtError(ErrorCode::failed_precondition, "generation " +
                                                        std::to_string(st->pending->gen.generation()) +
                                                        " awaits confirmation; confirm or roll back first");
  }
  const ApplianceConfig next = parts_.staging.candidate();
  if (r.expected_generation() != 0 && r.expected_generation() != base.generation()) {
    throw MgmtError(ErrorCode::failed_precondition, "configuration is at generation " +
                                                        std::to_string(base.generation()) + ", not " +
                                                        std::to_string(r.expected_generation()));
  }
  const auto changes = diff_properties(base.config(), next);
  if (changes.empty()) throw MgmtError(ErrorCode::failed_precondition, "nothing staged");
  detail += " changes: " + join(changes, "; ");

  const ApplyingMark applying(*this, next);
  check(next);
  auto fe = parts_.front_end.session();
  front_end_accepts(fe, next);
  const Transition t = drive(fe, base.config(), next, base.generation(), actor);

  v1::StoredGeneration g;
  g.set_generation(store_.next_generation());
  *g.mutable_config() = next;
  g.set_committed_at_unix_ms(unix_ms());
  g.set_actor(actor);
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
      store_.write_pending(g);
    } else {
      store_.commit(g);
    }
  } catch (const MgmtError& e) {
    std::string msg =
        std::string(e.what()) + "; front end restored to generation " + std::to_string(base.generation());
    if (fe && t.restart != v1::RESTART_PROCESS) restore(fe, base.config());
    throw MgmtError(ErrorCode::internal, msg);
  }
  State s = *state();
  s.applying.reset();
  if (confirmed) {
    const auto within = std::chrono::seconds(r.confirm_within_seconds());
    s.pending =
        PendingCommit{g, Clock::now() + within,
                      unix_ms() + std::chrono::duration_cast<std::chrono::milliseconds>(within).count()};
    resp.set_pending_confirm(true);
    resp.set_confirm_deadline_unix_ms(s.pending->deadline_unix_ms);
    timer_.arm(s.pending->deadline);
  } else {
    s.committed = g;
    store_.set_keep(next.mgmt().keep_generations());
  }
  publish_state(std::move(s));
  if (!confirmed) note_store();
  // Edits staged during the apply stay staged: the candidate is left alone.
  parts_.memory.remember(r.request_id(), resp);
  publish(parts_.events, v1::Event::APPLY, g.generation(), actor, true,
          (confirmed ? "pending confirmation: " : "") + g.summary());
  return resp;
}

v1::ApplyResponse ChangeController::apply_edits(const std::string& actor,
                                                const std::vector<std::pair<std::string, std::string>>& edits,
                                                std::string& detail) {
  std::unique_lock change(change_mu_, std::try_to_lock);
  if (!change.owns_lock()) throw MgmtError(ErrorCode::aborted, "another apply is in progress");
  const auto st = state();
  const v1::StoredGeneration& base = st->committed;
  if (st->pending) {
    throw MgmtError(ErrorCode::failed_precondition, "generation " +
                                                        std::to_string(st->pending->gen.generation()) +
                                                        " awaits confirmation; confirm or roll back first");
  }
  ApplianceConfig next = base.config();
  for (const auto& [name, value] : edits) parts_.registry.set(next, name, value);
  const auto changes = diff_properties(base.config(), next);
  v1::ApplyResponse resp;
  resp.set_generation(base.generation());
  if (changes.empty()) {
    parts_.staging.overlay(edits);
    return resp;
  }
  detail += " changes: " + join(changes, "; ");

  const ApplyingMark applying(*this, next);
  check(next);
  auto fe = parts_.front_end.session();
  front_end_accepts(fe, next);
  const Transition t = drive(fe, base.config(), next, base.generation(), actor);

  v1::StoredGeneration g;
  g.set_generation(store_.next_generation());
  *g.mutable_config() = next;
  g.set_committed_at_unix_ms(unix_ms());
  g.set_actor(actor);
  g.set_summary(join(changes, "; "));
  try {
    store_.commit(g);
  } catch (const MgmtError& e) {
    std::string msg =
        std::string(e.what()) + "; front end restored to generation " + std::to_string(base.generation());
    if (fe && t.restart != v1::RESTART_PROCESS) restore(fe, base.config());
    throw MgmtError(ErrorCode::internal, msg);
  }
  State s = *state();
  s.applying.reset();
  s.committed = g;
  publish_state(std::move(s));
  store_.set_keep(next.mgmt().keep_generations());
  note_store();
  parts_.staging.overlay(edits);
  resp.set_generation(g.generation());
  resp.set_restart(t.restart);
  resp.set_drain_ms(t.drain_ms);
  for (const auto& ch : changes) resp.add_changes(ch);
  publish(parts_.events, v1::Event::APPLY, g.generation(), actor, true, g.summary());
  return resp;
}

v1::ApplyResponse ChangeController::confirm(const std::string& actor, std::string& detail) {
  std::lock_guard change(change_mu_);
  const auto st = state();
  if (!st->pending) throw MgmtError(ErrorCode::failed_precondition, "no apply is waiting for confirmation");
  store_.confirm_pending();
  State s = *st;
  s.committed = s.pending->gen;
  s.pending.reset();
  timer_.disarm();
  store_.set_keep(s.committed.config().mgmt().keep_generations());
  detail = "generation " + std::to_string(s.committed.generation());
  v1::ApplyResponse resp;
  resp.set_generation(s.committed.generation());
  for (auto& ch : split_summary(s.committed.summary())) resp.add_changes(std::move(ch));
  const std::uint64_t gen = s.committed.generation();
  publish_state(std::move(s));
  note_store();
  publish(parts_.events, v1::Event::CONFIRM, gen, actor, true, detail + " confirmed");
  return resp;
}

// Restores the committed generation in place of the pending one. Caller holds change_mu_.
std::uint64_t ChangeController::drop_pending(const std::string& actor, const std::string& why) {
  const auto st = state();
  const ApplianceConfig previous = st->committed.config();
  const std::uint64_t previous_gen = st->committed.generation();
  const std::uint64_t dropped_gen = st->pending->gen.generation();
  std::string msg = why + ": generation " + std::to_string(dropped_gen) + " rolled back to generation " +
                    std::to_string(previous_gen);
  {
    auto fe = parts_.front_end.session();
    if (fe) {
      if (const auto also = restore(fe, previous); !also.empty())
        msg += " (restoring it failed: " + also + ")";
    }
  }
  store_.discard_pending();
  State s = *state();
  s.pending.reset();
  publish_state(std::move(s));
  timer_.disarm();
  // Staged edits were made on top of the dropped configuration.
  parts_.staging.reset(previous);
  publish(parts_.events, v1::Event::ROLLBACK, previous_gen, actor, true, msg);
  return previous_gen;
}

void ChangeController::expire() {
  std::lock_guard change(change_mu_);
  const auto st = state();
  // Confirmed, cancelled or replaced by a newer pending commit while this waited.
  if (!st->pending || Clock::now() < st->pending->deadline) return;
  std::string detail = "confirm deadline passed";
  try {
    audited(
        parts_.audit, self_actor_, "confirm_deadline", detail,
        [&] {
          detail += ", rolled back to generation " +
                    std::to_string(drop_pending(self_actor_, "not confirmed in time"));
          return 0;
        },
        /*must_run=*/true);  // the safety rollback runs even when the audit log cannot take its record
  } catch (const std::exception& e) {
    spdlog::error("event=mgmt_confirm_deadline_failed reason=\"{}\"", e.what());
    // Still pending: try again, without spinning on a failure that lasts.
    timer_.arm(Clock::now() + 1s);
  }
}

v1::ApplyResponse ChangeController::rollback(const std::string& actor, const v1::RollbackRequest& r,
                                             std::string& detail) {
  std::unique_lock<std::mutex> change;
  if (auto rep = begin_change(r.request_id(), change)) return *rep;

  const auto st = state();
  const v1::StoredGeneration& base = st->committed;
  v1::ApplyResponse resp;
  if (st->pending) {
    // Rolling back an unconfirmed apply is cancelling it.
    resp.set_generation(drop_pending(actor, "cancelled by " + actor));
    detail += " (cancelled the pending confirm)";
    parts_.memory.remember(r.request_id(), resp);
    return resp;
  }
  const std::uint64_t target_gen = r.generation() != 0 ? r.generation() : base.generation() - 1;
  if (target_gen == base.generation()) {
    throw MgmtError(ErrorCode::failed_precondition,
                    "generation " + std::to_string(target_gen) + " is the committed one");
  }
  const auto target = target_gen == 0 ? std::nullopt : store_.get(target_gen);
  if (!target) {
    throw MgmtError(ErrorCode::not_found, "generation " + std::to_string(target_gen) + " is no longer kept");
  }
  const auto changes = diff_properties(base.config(), target->config());
  const ApplyingMark applying(*this, target->config());
  check(target->config());
  auto fe = parts_.front_end.session();
  front_end_accepts(fe, target->config());
  const Transition t = drive(fe, base.config(), target->config(), base.generation(), actor);

  // Generations only grow: the old configuration comes back as a new one.
  v1::StoredGeneration g;
  g.set_generation(store_.next_generation());
  *g.mutable_config() = target->config();
  g.set_committed_at_unix_ms(unix_ms());
  g.set_actor(actor);
  g.set_request_id(r.request_id());
  g.set_summary("rollback to generation " + std::to_string(target_gen) +
                (changes.empty() ? "" : ": " + join(changes, "; ")));
  g.set_rolled_back_from(base.generation());
  try {
    store_.commit(g);
  } catch (const MgmtError& e) {
    if (fe && t.restart != v1::RESTART_PROCESS) restore(fe, base.config());
    throw MgmtError(ErrorCode::internal, std::string(e.what()) + "; front end restored to generation " +
                                             std::to_string(base.generation()));
  }
  resp.set_generation(g.generation());
  resp.set_restart(t.restart);
  resp.set_drain_ms(t.drain_ms);
  for (const auto& ch : changes) resp.add_changes(ch);
  State s = *state();
  s.applying.reset();
  s.committed = g;
  publish_state(std::move(s));
  note_store();
  parts_.staging.reset(g.config());  // a rollback drops staged edits
  store_.set_keep(g.config().mgmt().keep_generations());
  parts_.memory.remember(r.request_id(), resp);
  detail += " -> generation " + std::to_string(g.generation());
  publish(parts_.events, v1::Event::ROLLBACK, g.generation(), actor, true, g.summary());
  return resp;
}

v1::RestartFrontEndResponse ChangeController::restart_front_end(const std::string& actor,
                                                                std::string& detail) {
  std::unique_lock change(change_mu_, std::try_to_lock);
  if (!change.owns_lock()) throw MgmtError(ErrorCode::aborted, "another apply is in progress");
  const auto st = state();
  const ApplianceConfig& cfg = st->running();
  const std::uint64_t gen = st->running_generation();
  auto fe = parts_.front_end.session();
  if (!fe) throw MgmtError(ErrorCode::failed_precondition, "no front end attached");
  v1::RestartFrontEndResponse resp;
  std::string reason;
  try {
    resp.set_drain_ms(static_cast<std::uint64_t>(fe.drain(drain_bound(cfg)).count()));
    // The configuration the front end already runs: class_for makes it a front-end restart.
    give(fe, cfg);
    fe.start();
    reason = fe.health();
  } catch (const std::exception& e) {
    reason = e.what();
  }
  detail = "generation " + std::to_string(gen);
  if (!reason.empty()) {
    publish(parts_.events, v1::Event::RESTART, gen, actor, false, "restart failed: " + reason);
    throw MgmtError(ErrorCode::aborted, "front end restart failed: " + reason);
  }
  publish(parts_.events, v1::Event::RESTART, gen, actor, true,
          "front end restarted with generation " + std::to_string(gen));
  return resp;
}

v1::ListGenerationsResponse ChangeController::generations() const {
  const std::uint64_t current = state()->committed.generation();
  v1::ListGenerationsResponse r;
  for (const auto& g : store_.list()) {
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

}  // namespace edge::mgmt::agent_parts
