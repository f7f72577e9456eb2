// CellLink: this appliance's membership of a cell (issue 15) — the agent's side of edge::cell::CellNode.
//
// Owns: the CellNode (mgmt/cell/include/edge/cell/cell.h), built from the
// committed cell.* properties, and the last cell summary it reported. It turns
// the operator's cell acts (create, join, approve, rotate, remove, leave,
// status) into CellNode calls and gives the node its hooks: admission through
// `edge-hsm cell trust` in a process of its own (the SO PIN never enters this
// process), the minting switch as this agent's own transactional apply, what
// the front end mints, and events + audit.
//
// What it does not own: the configuration. create / join / leave change the
// cell.* properties, and the node's switch changes sip.flow_token.*, through
// Hooks::apply (ChangeController::apply_edits with its audit record), so every
// change of what the edge runs stays one generation of the config store.
//
// Locking: op_mu_ serializes the operator acts and start/stop (each may take
// as long as its etcd and HSM calls, bounded by their deadlines). The node is
// reached through a shared_ptr copied under node_mu_ (held only for the copy),
// so status and the node's own loop never wait for an operator act. The
// summary is refreshed by a thread of its own every second and read under
// summary_mu_ (taken before node_mu_ where both are): GetStatus never waits
// for etcd, and a refresh that has waited for etcd longer than a few seconds
// reads as degraded. Lock order: op_mu_, then the
// change controller's lock (through Hooks::apply, with try_lock and a bounded
// retry): an operator apply never takes op_mu_, so the two never wait on each
// other in a cycle.
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edge::cell {
class CellNode;
}

namespace edge::mgmt::agent_parts {

class CellLink {
 public:
  using Edits = std::vector<std::pair<std::string, std::string>>;
  struct Hooks {
    // Applies `edits` on the committed configuration (audited as `actor`);
    // throws MgmtError (ABORTED while another change runs: retried here).
    std::function<void(const std::string& actor, const Edits& edits)> apply;
    // The committed configuration (snapshot).
    std::function<v1::ApplianceConfig()> committed;
    // What the front end mints now: its key set and version.
    std::function<std::pair<std::string, std::uint32_t>()> front_end_minting;
    // The key-set view must learn new / retired versions (FrontEnd::key_sets_changed).
    std::function<void()> key_sets_changed;
    // One cell event: on the event bus and in the audit log.
    std::function<void(const std::string& kind, const std::string& detail)> event;
  };

  // `edge_hsm`: the edge-hsm binary (empty: next to /proc/self/exe).
  CellLink(hsm::Hsm& hsm, std::filesystem::path state_dir, std::filesystem::path edge_hsm,
           std::string version, Hooks hooks);
  ~CellLink();
  CellLink(const CellLink&) = delete;
  CellLink& operator=(const CellLink&) = delete;

  // With cell.name committed: builds the node and starts its loop. Never throws:
  // a failure shows in the summary (state "failed") and the log.
  void start();
  void stop();

  v1::CellStatusResponse create(const std::string& actor, const v1::CellCreateRequest& r,
                                std::string& detail);
  v1::CellJoinResponse join(const std::string& actor, const v1::CellJoinRequest& r, std::string& detail);
  v1::CellStatusResponse approve(const v1::CellApproveRequest& r);
  v1::CellRotateResponse rotate();
  v1::CellStatusResponse remove(const v1::CellRemoveRequest& r);
  v1::CellStatusResponse leave(const std::string& actor);
  v1::CellStatusResponse status();
  // The last summary (never waits).
  v1::CellSummary summary() const;

 private:
  std::shared_ptr<cell::CellNode> node() const;
  // Builds a node from `c` (throws MgmtError with the reason).
  std::shared_ptr<cell::CellNode> build(const v1::ApplianceConfig& c);
  // Hooks::apply, retried while another change holds the lock (bounded).
  void apply(const std::string& actor, const Edits& edits);
  // create and join: the cell.* edits applied, the node built; on failure the old values come back.
  template <class Act>
  auto enter(const std::string& actor, const std::string& name, const std::string& endpoints,
             const std::string& member_id, std::string& detail, Act&& act);
  void refresh_summary();
  void summary_loop();

  hsm::Hsm& hsm_;
  const std::filesystem::path state_dir_;
  const std::filesystem::path edge_hsm_;
  const std::string version_;
  Hooks hooks_;

  std::mutex op_mu_;
  mutable std::mutex node_mu_;
  std::shared_ptr<cell::CellNode> node_;  // guarded by node_mu_

  mutable std::mutex summary_mu_;
  v1::CellSummary summary_;  // guarded by summary_mu_
  // When the refresh in progress began (a status read waits for etcd's deadline while etcd
  // is away): a refresh that takes long reads as degraded. Guarded by summary_mu_.
  std::optional<std::chrono::steady_clock::time_point> refreshing_since_;
  std::condition_variable summary_cv_;
  bool stopping_ = false;  // guarded by summary_mu_
  std::thread summary_thread_;
};

}  // namespace edge::mgmt::agent_parts
