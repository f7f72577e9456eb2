// ChangeController: every change of what the edge runs (apply, confirm, rollback, restart), and the
// config store.
//
// Owns: the config store; the committed generation and the pending confirmed
// commit, with its deadline (ConfirmTimer); what the front end was last given;
// and the decision of each change's restart class. It validates a change,
// drives the front end through it (FrontEndLink sessions), puts the previous
// configuration back when a step fails, writes the generation, and reports to
// the audit log and the event bus.
//
// The restart class is decided here, once per change, from the property
// registry (PropertyRegistry::restart_class). The change's class is what the
// operator is told (ApplyResponse.restart) and whether the front end is
// drained; FrontEnd::apply gets the class between what the front end was last
// given and what it gets now, so a restore after a failed health check is the
// change back, and the same configuration again (RestartFrontEnd, SIGHUP, a
// restore after a swap that failed) is a front-end restart, which rebuilds
// the rules and the key-set view. These are the classes the firmware used to
// work out for itself (FrontEnd::restart_class, then again inside its apply):
// the operator was shown one computation and the front end acted on another,
// and every front end, test doubles included, had to carry a copy of the rule.
//
// Locking: change_mu_ is this part's one lock and is held for the whole of a
// change. Apply, rollback and restart take it with try_lock and refuse a
// second change with ABORTED (the operator should see the race, not queue
// behind it); confirm, the confirm deadline and attach wait for it. What the
// other parts read (committed, pending, the target of a change in progress)
// is an immutable State published behind an atomic shared_ptr by whoever
// holds change_mu_, after each step; state() takes no lock, so status, the
// key-set views and the property views never wait for a change. Lock order:
// change_mu_, then FrontEndLink's call lock, then Staging's or
// RequestMemory's (each of those is taken only briefly and calls nothing back).
#pragma once

#include "confirm_timer.h"
#include "front_end_link.h"
#include "keyset_admin.h"
#include "request_memory.h"
#include "staging.h"

#include <edge/mgmt/audit.h>
#include <edge/mgmt/config_store.h>
#include <edge/mgmt/events.h>
#include <edge/mgmt/properties.h>
#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace edge::mgmt::agent_parts {

class ChangeController {
 public:
  using Clock = std::chrono::steady_clock;

  struct PendingCommit {
    v1::StoredGeneration gen;
    Clock::time_point deadline;
    std::int64_t deadline_unix_ms = 0;
  };
  // What the edge runs, as of the last step of the last change.
  struct State {
    v1::StoredGeneration committed;
    std::optional<PendingCommit> pending;
    std::optional<v1::ApplianceConfig> applying;  // the target of a change in progress
    // The configuration the front end runs: a pending (unconfirmed) one counts.
    const v1::ApplianceConfig& running() const {
      return pending ? pending->gen.config() : committed.config();
    }
    std::uint64_t running_generation() const {
      return pending ? pending->gen.generation() : committed.generation();
    }
  };

  struct Parts {
    const PropertyRegistry& registry;
    Staging& staging;
    RequestMemory& memory;
    KeySetAdmin& keysets;
    FrontEndLink& front_end;
    EventBus& events;
    AuditLog& audit;
  };

  // Opens (creates) the store in `config_dir`, sealed by `seal` (not owned;
  // must outlive this). Uses nothing of `parts` until open().
  ChangeController(const std::filesystem::path& config_dir, StoreSeal& seal, std::string self_actor,
                   const Parts& parts);
  ~ChangeController();
  ChangeController(const ChangeController&) = delete;
  ChangeController& operator=(const ChangeController&) = delete;

  // Seals the store when the HSM has no store key yet (ConfigStore::adopt_seal),
  // checks every file, reads the newest generation that verifies, or commits
  // `initial` as generation 1 on first boot; discards a pending commit left by
  // a process that died (its rollback); seeds the staging area and the request
  // memory. A refused newest generation is reported (log event=config_store_corrupt,
  // audit, a standing CONFIG_STORE event, status) and the edge runs the newest
  // one that verifies. Throws MgmtError(failed_precondition) when the store has
  // generations but none verifies, or is sealed by a key this HSM lacks.
  void open(const v1::ApplianceConfig& initial);
  // The last check of the store's files (never waits for a change).
  v1::ConfigStoreStatus store_status() const;
  // Never waits.
  std::shared_ptr<const State> state() const { return state_.load(); }

  // Waits for a change in progress: that change keeps the front end it started with.
  void attach(FrontEnd* fe);

  // The RPCs that change what runs; `detail` is the audit detail, completed here.
  v1::ApplyResponse apply(const std::string& actor, const v1::ApplyRequest& r, std::string& detail);
  v1::ApplyResponse confirm(const std::string& actor, std::string& detail);
  // An apply of `edits` (property name, value) on top of the committed
  // configuration, for the agent's own changes (the cell's properties, its
  // minting switch): the operator's staged edits are neither taken along nor
  // lost, the edits are laid on the candidate too. Same checks, drive and
  // commit as apply; never waits: ABORTED when another change is in progress
  // (the caller retries), FAILED_PRECONDITION while a confirm is pending. An
  // edit that changes nothing commits nothing (generation unchanged).
  v1::ApplyResponse apply_edits(const std::string& actor,
                                const std::vector<std::pair<std::string, std::string>>& edits,
                                std::string& detail);
  v1::ApplyResponse rollback(const std::string& actor, const v1::RollbackRequest& r, std::string& detail);
  v1::RestartFrontEndResponse restart_front_end(const std::string& actor, std::string& detail);
  v1::ListGenerationsResponse generations() const;

  // Stops the confirm deadline (a pending confirm stays pending; the next
  // start discards it, which is its rollback).
  void shutdown();

 private:
  // What a front-end transition did.
  struct Transition {
    v1::RestartClass restart = v1::RESTART_NONE;
    std::uint64_t drain_ms = 0;
  };
  class ApplyingMark;

  void publish_state(State s);
  // The start of an apply or a rollback: the answer already given to this
  // request id, if any; else the change lock taken into `change` (ABORTED when
  // another change holds it), and again the answer when the first attempt
  // finished while this one came in.
  std::optional<v1::ApplyResponse> begin_change(const std::string& request_id,
                                                std::unique_lock<std::mutex>& change);
  // Registry re-check and HSM mint/verify probe; throws the refusal.
  void check(const v1::ApplianceConfig& next);
  // FrontEnd::validate; throws the refusal.
  static void front_end_accepts(FrontEndLink::Session& fe, const v1::ApplianceConfig& next);
  // The class of FrontEnd::apply(next) from what the front end was last given (see above).
  v1::RestartClass class_for(const v1::ApplianceConfig& next) const;
  // FrontEnd::apply with that class; remembers what the front end was given.
  void give(FrontEndLink::Session& fe, const v1::ApplianceConfig& next);
  Transition drive(FrontEndLink::Session& fe, const v1::ApplianceConfig& from, const v1::ApplianceConfig& to,
                   std::uint64_t from_generation, const std::string& actor);
  std::string restore(FrontEndLink::Session& fe, const v1::ApplianceConfig& previous);
  std::uint64_t drop_pending(const std::string& actor, const std::string& why);
  void expire();  // ConfirmTimer's callback
  // Checks the store's files again after a commit (or at open) and reports a change.
  void note_store();

  ConfigStore store_;
  mutable std::mutex store_status_mu_;
  v1::ConfigStoreStatus store_status_;
  const std::string self_actor_;
  Parts parts_;

  std::mutex change_mu_;
  std::atomic<std::shared_ptr<const State>> state_;
  // What the front end was last given by a FrontEnd::apply that returned
  // (under change_mu_): its "current" configuration for the restart class.
  v1::ApplianceConfig fe_config_;
  ConfirmTimer timer_;  // last: its thread calls expire()
};

}  // namespace edge::mgmt::agent_parts
