// Agent: the management engine behind the API — key sets, staged properties, transactional apply.
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/mgmt/audit.h>
#include <edge/mgmt/config_store.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/events.h>
#include <edge/mgmt/front_end.h>
#include <edge/mgmt/properties.h>
#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace edge::mgmt {

// Who is calling, as the server authenticated them.
struct Caller {
  std::string actor = "edged";  // "uid:1000", "cert:ops-1", "edged" (the daemon itself)
  v1::Role role = v1::ROLE_OPERATOR;
};

struct AgentOptions {
  std::filesystem::path state_dir;  // store in <state>/config, audit in <state>/audit.log
  std::string version = "0.0.0";    // reported by status
  std::chrono::milliseconds drain_bound{2000};
  // Request ids remembered for idempotent applies (also read back from the store).
  std::size_t remembered_requests = 64;
  // The edge-hsm binary the cell's admission runs (the SO act, in a process
  // of its own); empty: edge-hsm next to the running executable.
  std::filesystem::path edge_hsm;
};

// Thread-safe: every public call may come from any gRPC thread. Calls that
// change the front end (apply, confirm, rollback, restart, the confirm
// deadline) are serialized; a second apply while one runs is refused with
// ErrorCode::aborted. Reads (status, list_key_sets, get_key_set, properties,
// get_config, generations) never wait for an apply in progress: they answer
// from snapshots. Refusals throw MgmtError with the reason; every change and
// every refused change is written to the audit log.
//
// Staging: property changes and the minting version of a rotated key set are
// staged on a candidate configuration; apply validates the candidate (values,
// key set exists and mints/verifies in the HSM, FrontEnd::validate), drains the
// front end, swaps, starts, checks health and commits a new generation, or
// puts the previous configuration back and reports why. The agent decides the
// restart class of each change from the property registry and tells the front
// end (FrontEnd::apply).
//
// Agent is a facade: each method hands its RPC to the part that owns the job
// (change controller, key-set administration, staging area, request memory,
// front-end link; mgmt/src/agent.cpp lists them).
class Agent {
 public:
  // Opens the store. `initial` seeds generation 1 on first boot (the lab default
  // or an imported edged.conf); later boots take the newest committed generation.
  // Does not start the front end: the daemon calls boot_config(), starts it with
  // that, then attach_front_end().
  Agent(AgentOptions options, hsm::Hsm& hsm, const v1::ApplianceConfig& initial);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // The configuration the daemon must start with (committed generation).
  v1::ApplianceConfig boot_config() const;
  std::uint64_t generation() const;
  // From now on applies drive `fe` (not owned; must outlive the agent or be detached).
  void attach_front_end(FrontEnd* fe);

  // API (one method per RPC).
  v1::Status status();
  v1::ListKeySetsResponse list_key_sets();
  v1::KeySet get_key_set(const std::string& name);
  v1::KeySetChange create_key_set(const Caller& c, const v1::CreateKeySetRequest& r);
  v1::KeySetChange rotate_key_set(const Caller& c, const v1::RotateKeySetRequest& r);
  v1::KeySetChange retire_key_version(const Caller& c, const v1::RetireKeyVersionRequest& r);
  v1::KeySetChange destroy_key_set(const Caller& c, const v1::DestroyKeySetRequest& r);
  v1::ListPropertiesResponse list_properties();
  v1::Property get_property(const std::string& name);
  v1::Property set_property(const Caller& c, const v1::SetPropertyRequest& r);
  v1::Property unset_property(const Caller& c, const v1::UnsetPropertyRequest& r);
  v1::GetConfigResponse get_config();
  v1::GetConfigResponse discard_staged(const Caller& c);
  v1::ApplyResponse apply(const Caller& c, const v1::ApplyRequest& r);
  v1::ApplyResponse confirm(const Caller& c);
  v1::ApplyResponse rollback(const Caller& c, const v1::RollbackRequest& r);
  v1::ListGenerationsResponse list_generations();
  v1::RestartFrontEndResponse restart_front_end(const Caller& c);

  // The cell (mgmt/src/cell_link.h; docs/operations.md, "Running a cell").
  v1::CellStatusResponse cell_create(const Caller& c, const v1::CellCreateRequest& r);
  v1::CellJoinResponse cell_join(const Caller& c, const v1::CellJoinRequest& r);
  v1::CellStatusResponse cell_approve(const Caller& c, const v1::CellApproveRequest& r);
  v1::CellRotateResponse cell_rotate(const Caller& c);
  v1::CellStatusResponse cell_remove(const Caller& c, const v1::CellRemoveRequest& r);
  v1::CellStatusResponse cell_leave(const Caller& c);
  v1::CellStatusResponse cell_status();
  // The cell line of status (refreshed every second; never waits for etcd).
  v1::CellSummary cell_summary() const;
  // With cell.name committed: starts this member's cell loop (the daemon calls
  // it once the front end is attached). Never throws: a failure shows in the
  // status (cell state "failed") and the log. shutdown() stops it.
  void start_cell();

  EventBus& events() { return events_; }
  AuditLog& audit() { return audit_; }
  // Publishes an HSM_FAULT event (the daemon forwards Hsm::on_state_change).
  void report_hsm_state(const std::string& state, const std::string& reason);
  // Publishes an HSM_ADMISSION event: the front end's HSM admission control
  // started (refusing) or stopped refusing work.
  void report_hsm_admission(bool refusing, const std::string& detail);

  // Stops the cell loop and the confirm-deadline thread (a pending confirm
  // stays pending; the next start discards it, which is the rollback).
  void shutdown();

 private:
  struct Impl;  // the parts
  std::unique_ptr<Impl> impl_;
  EventBus events_;
  AuditLog audit_;
};

}  // namespace edge::mgmt
