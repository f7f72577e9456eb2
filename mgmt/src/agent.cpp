// Agent: the management API, one method per RPC, each a short delegation to the part that owns the job.
//
// The parts (each header says what it owns and how it locks):
//   ChangeController   apply, confirm, rollback, restart, the confirm deadline, the config store,
//                      the restart class of every change       change_controller.h
//   KeySetAdmin        key sets in the HSM and their views      keyset_admin.h
//   Staging            the candidate configuration              staging.h
//   RequestMemory      answers by request id                    request_memory.h
//   FrontEndLink       one call at a time into the FrontEnd,
//                      and its last status                      front_end_link.h
//   CellLink           the cell membership (CellNode) and its
//                      hooks                                    cell_link.h
// The facade adds what is the same for every RPC: the audit record of each
// change (agent_support.h), the events of the changes it composes, and the
// reads that combine parts (status, get_config). Every read here takes a
// snapshot (ChangeController::state, FrontEndLink::status) and so never
// waits for a change in progress.
#include <edge/mgmt/agent.h>

#include "agent_support.h"
#include "cell_link.h"
#include "change_controller.h"
#include "front_end_link.h"
#include "keyset_admin.h"
#include "request_memory.h"
#include "staging.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace edge::mgmt {

using agent_parts::audited;
using agent_parts::publish;
using v1::ApplianceConfig;

struct Agent::Impl {
  Impl(AgentOptions o, hsm::Hsm& h, EventBus& ev, AuditLog& au)
      : opts(std::move(o)),
        hsm(h),
        memory(opts.remembered_requests),
        staging(reg),
        keysets(
            h, [this] { return users(); }, [this] { front_end.key_sets_changed(); }),
        seal(hsm_store_seal(h)),
        changes(opts.state_dir / "config", *seal, Caller{}.actor,
                {reg, staging, memory, keysets, front_end, ev, au}),
        cell(h, opts.state_dir, opts.edge_hsm, opts.version, cell_hooks(ev, au)) {}

  agent_parts::CellLink::Hooks cell_hooks(EventBus& ev, AuditLog& au) {
    agent_parts::CellLink::Hooks k;
    k.apply = [this, &au](const std::string& actor, const agent_parts::CellLink::Edits& edits) {
      std::string detail = "cell";
      audited(au, actor, "cell_apply", detail, [&] { return changes.apply_edits(actor, edits, detail); });
    };
    k.committed = [this] { return changes.state()->committed.config(); };
    k.front_end_minting = [this]() -> std::pair<std::string, std::uint32_t> {
      try {
        if (const auto fs = front_end.status()) return {fs->key_set(), fs->minting_version()};
      } catch (const std::exception&) {
      }
      return {"", 0};
    };
    k.key_sets_changed = [this] { front_end.key_sets_changed(); };
    k.event = [this, &ev, &au](const std::string& kind, const std::string& detail) {
      v1::Event::Kind which = v1::Event::CELL_OTHER;
      std::string message = detail;
      if (!v1::Event::Kind_Parse(kind, &which) || kind.rfind("CELL_", 0) != 0) {
        which = v1::Event::CELL_OTHER;
        message = kind + ": " + detail;
      }
      const bool failed = kind == "CELL_DEGRADED" || kind == "CELL_RECORD_REFUSED" ||
                          (kind.size() > 7 && kind.compare(kind.size() - 7, 7, "_FAILED") == 0);
      const bool ok = !failed;
      publish(ev, which, changes.state()->committed.generation(), "cell", ok, message);
      std::string action = kind;
      std::transform(action.begin(), action.end(), action.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      try {
        au.record("cell", action, detail, ok ? "ok" : "degraded");
      } catch (const std::exception&) {
        // The event went out; the log shows the audit failure through the next audited change.
      }
    };
    return k;
  }

  // Local changes of the cell's key set are the cell's: refused while in it.
  void refuse_cell_key_set(const std::string& name, const char* what) const {
    const std::string& cell_name = changes.state()->committed.config().cell().name();
    if (cell_name.empty() || cell_name != name) return;
    throw MgmtError(ErrorCode::failed_precondition,
                    "key set " + name + " is the key set of cell " + cell_name + ": " + what);
  }

  // What the key-set checks count as users: every configuration that may mint
  // and what the front end says it mints with, all from snapshots.
  agent_parts::KeySetUsers users() {
    agent_parts::KeySetUsers u;
    const auto st = changes.state();
    u.committed = st->committed.config();
    u.running = st->running();
    u.applying = st->applying;
    u.candidate = staging.candidate();
    if (const auto fs = front_end.status()) {
      u.fe_key_set = fs->key_set();
      u.fe_minting = fs->minting_version();
    }
    return u;
  }

  const AgentOptions opts;
  hsm::Hsm& hsm;
  const PropertyRegistry& reg = PropertyRegistry::instance();
  const agent_parts::Clock::time_point started = agent_parts::Clock::now();
  agent_parts::RequestMemory memory;
  agent_parts::Staging staging;
  agent_parts::FrontEndLink front_end;
  agent_parts::KeySetAdmin keysets;
  std::unique_ptr<StoreSeal> seal;        // the config store's key in the HSM
  agent_parts::ChangeController changes;  // uses the parts above
  agent_parts::CellLink cell;             // last: applies through `changes`; stopped first
};

// impl_ comes first: its config store creates the state directory that
// audit_ opens its file in. The parts keep references to events_ and audit_
// and use them only from open() on, once both exist.
Agent::Agent(AgentOptions options, hsm::Hsm& hsm, const v1::ApplianceConfig& initial)
    : impl_(std::make_unique<Impl>(std::move(options), hsm, events_, audit_)),
      audit_(impl_->opts.state_dir / "audit.log") {
  impl_->changes.open(initial);
}

Agent::~Agent() { shutdown(); }

void Agent::shutdown() {
  impl_->cell.stop();
  impl_->changes.shutdown();
}

v1::ApplianceConfig Agent::boot_config() const { return impl_->changes.state()->committed.config(); }

std::uint64_t Agent::generation() const { return impl_->changes.state()->committed.generation(); }

void Agent::attach_front_end(FrontEnd* fe) { impl_->changes.attach(fe); }

v1::Status Agent::status() {
  Impl& im = *impl_;
  v1::Status s;
  s.set_version(im.opts.version);
  s.set_uptime_seconds(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(agent_parts::Clock::now() - im.started).count()));
  const auto st = im.changes.state();
  s.set_generation(st->committed.generation());
  s.set_staged_changes(!im.staging.staged(st->running()).empty());
  if (st->pending) {
    s.mutable_pending()->set_generation(st->pending->gen.generation());
    s.mutable_pending()->set_previous_generation(st->committed.generation());
    s.mutable_pending()->set_deadline_unix_ms(st->pending->deadline_unix_ms);
  }
  if (const auto fs = im.front_end.status()) *s.mutable_front_end() = *fs;
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
  *s.mutable_config_store() = im.changes.store_status();
  *s.mutable_cell() = im.cell.summary();
  return s;
}

// --- key sets -------------------------------------------------------------------

v1::ListKeySetsResponse Agent::list_key_sets() { return impl_->keysets.list(); }

v1::KeySet Agent::get_key_set(const std::string& name) { return impl_->keysets.get(name); }

v1::KeySetChange Agent::create_key_set(const Caller& c, const v1::CreateKeySetRequest& r) {
  std::string detail = "key set " + r.name() + " retain " + std::to_string(r.retain());
  return audited(audit_, c.actor, "create_key_set", detail, [&] {
    auto ch = impl_->keysets.create(r);
    publish(events_, v1::Event::KEY_SET, generation(), c.actor, true, "key set " + r.name() + " created");
    return ch;
  });
}

v1::KeySetChange Agent::rotate_key_set(const Caller& c, const v1::RotateKeySetRequest& r) {
  Impl& im = *impl_;
  std::string detail = "key set " + r.name();
  return audited(audit_, c.actor, "rotate_key_set", detail, [&] {
    im.refuse_cell_key_set(r.name(), "the cell rotates it (edgectl cell rotate)");
    auto ch = im.keysets.rotate(r, detail,
                                [&](std::uint32_t v) { return im.staging.stage_key_version(r.name(), v); });
    publish(events_, v1::Event::KEY_SET, generation(), c.actor, true, detail);
    return ch;
  });
}

v1::KeySetChange Agent::retire_key_version(const Caller& c, const v1::RetireKeyVersionRequest& r) {
  std::string detail = "key set " + r.name() + " version " + std::to_string(r.version());
  return audited(audit_, c.actor, "retire_key_version", detail, [&] {
    impl_->refuse_cell_key_set(r.name(), "the cell retires its old versions (cell.retire_after_s)");
    auto ch = impl_->keysets.retire(r);
    publish(events_, v1::Event::KEY_SET, generation(), c.actor, true, detail + " retired");
    return ch;
  });
}

v1::KeySetChange Agent::destroy_key_set(const Caller& c, const v1::DestroyKeySetRequest& r) {
  std::string detail = "key set " + r.name();
  return audited(audit_, c.actor, "destroy_key_set", detail, [&] {
    impl_->refuse_cell_key_set(r.name(), "destroy it only after leaving the cell (edgectl cell leave)");
    auto ch = impl_->keysets.destroy(r);
    publish(events_, v1::Event::KEY_SET, generation(), c.actor, true, detail + " destroyed");
    return ch;
  });
}

// --- properties and staging ---------------------------------------------------------

v1::ListPropertiesResponse Agent::list_properties() {
  return impl_->staging.list(impl_->changes.state()->running());
}

v1::Property Agent::get_property(const std::string& name) {
  return impl_->staging.get(name, impl_->changes.state()->running());
}

v1::Property Agent::set_property(const Caller& c, const v1::SetPropertyRequest& r) {
  Impl& im = *impl_;
  std::string detail = r.name() + " = " + r.value();
  return audited(audit_, c.actor, "set_property", detail, [&] {
    const auto st = im.changes.state();
    v1::Property p = im.staging.set(
        r.name(), r.value(), st->running(),
        [&](const PropertyDescriptor& d, const ApplianceConfig& next) { im.keysets.check_staged(d, next); });
    publish(events_, v1::Event::PROPERTY_STAGED, st->committed.generation(), c.actor, true,
            p.name() + " = " + p.staged_value());
    return p;
  });
}

v1::Property Agent::unset_property(const Caller& c, const v1::UnsetPropertyRequest& r) {
  Impl& im = *impl_;
  std::string detail = r.name();
  return audited(audit_, c.actor, "unset_property", detail, [&] {
    const auto st = im.changes.state();
    v1::Property p = im.staging.unset(r.name(), st->running());
    publish(events_, v1::Event::PROPERTY_STAGED, st->committed.generation(), c.actor, true,
            p.name() + " = " + p.staged_value() + " (default)");
    return p;
  });
}

v1::GetConfigResponse Agent::get_config() {
  const auto st = impl_->changes.state();
  v1::GetConfigResponse r;
  r.set_generation(st->running_generation());
  *r.mutable_committed() = st->running();
  *r.mutable_candidate() = impl_->staging.candidate();
  for (auto& s : diff_properties(r.committed(), r.candidate())) r.add_staged(std::move(s));
  return r;
}

v1::GetConfigResponse Agent::discard_staged(const Caller& c) {
  std::string detail;
  return audited(audit_, c.actor, "discard_staged", detail, [&] {
    detail = agent_parts::join(impl_->staging.discard(impl_->changes.state()->running()), "; ");
    return get_config();
  });
}

// --- changes --------------------------------------------------------------------

v1::ApplyResponse Agent::apply(const Caller& c, const v1::ApplyRequest& r) {
  std::string detail = "request_id=" + r.request_id() +
                       " expected_generation=" + std::to_string(r.expected_generation()) +
                       " confirm_within_seconds=" + std::to_string(r.confirm_within_seconds());
  return audited(audit_, c.actor, "apply", detail, [&] { return impl_->changes.apply(c.actor, r, detail); });
}

v1::ApplyResponse Agent::confirm(const Caller& c) {
  std::string detail;
  return audited(audit_, c.actor, "confirm", detail, [&] { return impl_->changes.confirm(c.actor, detail); });
}

v1::ApplyResponse Agent::rollback(const Caller& c, const v1::RollbackRequest& r) {
  std::string detail = "generation=" + std::to_string(r.generation()) + " request_id=" + r.request_id();
  return audited(audit_, c.actor, "rollback", detail,
                 [&] { return impl_->changes.rollback(c.actor, r, detail); });
}

v1::ListGenerationsResponse Agent::list_generations() { return impl_->changes.generations(); }

v1::RestartFrontEndResponse Agent::restart_front_end(const Caller& c) {
  std::string detail;
  return audited(audit_, c.actor, "restart_front_end", detail,
                 [&] { return impl_->changes.restart_front_end(c.actor, detail); });
}

// --- the cell -----------------------------------------------------------------------

v1::CellStatusResponse Agent::cell_create(const Caller& c, const v1::CellCreateRequest& r) {
  std::string detail = "cell " + r.name() + " etcd " + r.etcd_endpoints();
  return audited(audit_, c.actor, "cell_create", detail,
                 [&] { return impl_->cell.create(c.actor, r, detail); });
}

v1::CellJoinResponse Agent::cell_join(const Caller& c, const v1::CellJoinRequest& r) {
  std::string detail = "cell " + r.name() + " etcd " + r.etcd_endpoints();
  return audited(audit_, c.actor, "cell_join", detail, [&] { return impl_->cell.join(c.actor, r, detail); });
}

v1::CellStatusResponse Agent::cell_approve(const Caller& c, const v1::CellApproveRequest& r) {
  std::string detail = "member " + r.member() + " fingerprint " + r.fingerprint();
  return audited(audit_, c.actor, "cell_approve", detail, [&] { return impl_->cell.approve(r); });
}

v1::CellRotateResponse Agent::cell_rotate(const Caller& c) {
  std::string detail;
  return audited(audit_, c.actor, "cell_rotate", detail, [&] {
    auto resp = impl_->cell.rotate();
    detail = "version " + std::to_string(resp.version());
    return resp;
  });
}

v1::CellStatusResponse Agent::cell_remove(const Caller& c, const v1::CellRemoveRequest& r) {
  std::string detail = "member " + r.member();
  return audited(audit_, c.actor, "cell_remove", detail, [&] { return impl_->cell.remove(r); });
}

v1::CellStatusResponse Agent::cell_leave(const Caller& c) {
  std::string detail;
  return audited(audit_, c.actor, "cell_leave", detail, [&] {
    auto st = impl_->cell.leave(c.actor);
    detail = "cell " + st.cell() + " member " + st.member_id();
    return st;
  });
}

v1::CellStatusResponse Agent::cell_status() { return impl_->cell.status(); }

v1::CellSummary Agent::cell_summary() const { return impl_->cell.summary(); }

void Agent::start_cell() { impl_->cell.start(); }

void Agent::report_hsm_state(const std::string& state, const std::string& reason) {
  publish(events_, v1::Event::HSM_FAULT, generation(), "hsm", state == "available", state + ": " + reason);
}

void Agent::report_hsm_admission(bool refusing, const std::string& detail) {
  publish(events_, v1::Event::HSM_ADMISSION, generation(), "sip", !refusing, detail);
}

}  // namespace edge::mgmt
