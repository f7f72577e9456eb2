// CellNode: one member of a cell (issue 15) — the state machine that keeps a key set
// the same on every member's HSM, through etcd (/tmp design decisions 5-11; see
// docs/architecture.md "The cell").
//
// Store (etcd, under /edge/cell/<cell>/; values are edge.cell.v1 messages):
//   meta, roster/<id>, approvals/<approver>/<id>, members/<id> (on the member's lease),
//   versions/<N> (hsm VersionRecord encoding), blobs/<N>/<id> (RSA-OAEP blob),
//   acks/<N>/<id>, rotation, minting (decimal text), audit/<unix_ms>-<id>-<seq>.
// Nothing else, and no key material in clear: public keys, signatures, check values,
// wrapped blobs.
//
// Trust: a member admits (SO act, hook `admit`) a roster member only after the
// operator approved it here with its fingerprint, or when the roster member carries
// an Approval signed by a member this HSM already trusts (transitive). Versions are
// imported only when their record's signature verifies in this HSM under the
// trusted origin's key.
//
// etcd trouble never blocks anything but the operator acts and the loop: the loop
// goes `degraded` with the reason, keeps what it holds and catches up later.
//
// Layering: edge_cell belongs to mgmt (linked by mgmt and firmware), never net.
#pragma once

#include <edge/cell/etcd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace edge::hsm {
class Hsm;
}

namespace edge::cell {

// Why an operator act could not be done, for the operator.
class CellError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CellConfig {
  std::string cell;       // cell.name
  std::string member_id;  // cell.member_id
  EtcdOptions etcd;       // cell.etcd_endpoints + TLS files
  std::chrono::seconds lease_ttl{10};
  std::chrono::milliseconds poll{1000};
  std::chrono::seconds retire_after{7200};  // used by create (stored in meta); members read meta
  std::uint32_t retain = 3;                 // used by create
  std::string version = "0.0.0";            // edged version, in the member record
};

struct CellHooks {
  // The SO act: admit `member`'s identity blob after checking its fingerprint (edge-hsm cell
  // trust in a process of its own). Throws (CellError / hsm::CellKeyError) with the reason.
  std::function<void(const std::string& member, const std::vector<std::uint8_t>& identity,
                     const std::string& fingerprint)>
      admit;
  // This member's own transactional apply of sip.flow_token.key_set = set, key_version = version.
  // Throws with the reason when the apply failed (it was rolled back).
  std::function<void(const std::string& set, std::uint32_t version)> switch_minting;
  // The version this member's front end mints now (0: none / not the cell's set).
  std::function<std::uint32_t()> minting;
  // Events + audit on this member: kind is e.g. "CELL_JOINED", "CELL_VERSION_IMPORTED",
  // "CELL_ROTATION_PHASE", "CELL_DEGRADED", "CELL_APPROVED", "CELL_MEMBER_REMOVED"; detail is one
  // line of key=value text.
  std::function<void(const std::string& kind, const std::string& detail)> event;
};

// Admission through `edge-hsm cell trust MEMBER --public-key FILE --fingerprint FP
// --so-pin-file P` + base_args, in a child process with a bounded wait (the SO PIN file
// is passed by path, never read here). `base_args` selects the token (e.g.
// {"--state-dir", dir} or {"--module", m, "--token", t, "--pin-file", p}). The identity
// blob goes to a temporary file (0600) removed afterwards. Throws CellError with
// edge-hsm's error text (its stderr) when admission fails or the child times out.
std::function<void(const std::string&, const std::vector<std::uint8_t>&, const std::string&)>
admit_with_edge_hsm(std::filesystem::path edge_hsm, std::vector<std::string> base_args,
                    std::filesystem::path so_pin_file,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct MemberView {
  std::string id, fingerprint, roster_state /*pending|approved|removed*/;
  bool live = false;
  bool trusted_here = false;
  std::vector<std::uint32_t> held;
  std::uint32_t minting = 0;
  std::string state;
};

struct CellStatus {
  std::string cell, member_id, key_set, fingerprint;
  std::string state;   // "joined" | "pending" (waiting for approval) | "degraded" | "left" | "conflict"
  std::string reason;  // why degraded / pending
  bool etcd_healthy = false;
  std::string etcd_endpoint;
  std::uint32_t minting = 0;        // the cell's minting version (etcd), 0 unknown
  std::uint32_t local_minting = 0;  // what this member's front end mints
  std::vector<std::uint32_t> held;  // versions this HSM holds of the cell set
  std::uint32_t rotation_version = 0;
  std::string rotation_phase; /* "" | prepare | switch | done */
  std::string rotation_started_by;
  std::vector<std::string> rotation_waiting_for;  // members without ack / switch
  std::vector<MemberView> members;
  // Added: records in etcd this member refused (bad signature, untrusted signer,
  // fields that do not match), one line each ("versions/3: signature does not verify").
  std::vector<std::string> refused;
  std::uint64_t loop_passes = 0;  // completed loop passes (tests wait on it)
};

struct JoinResult {
  std::string member_id, fingerprint;
  std::vector<MemberView> members;
};

class CellNode {
 public:
  CellNode(hsm::Hsm& hsm, CellConfig config, CellHooks hooks);  // no etcd traffic yet
  ~CellNode();                                                  // stop()
  CellNode(const CellNode&) = delete;
  CellNode& operator=(const CellNode&) = delete;

  // Operator acts: block on etcd/HSM (bounded by the etcd deadlines), throw CellError with
  // the reason.
  void create();      // new cell: meta, roster APPROVED self, keys (cell init + self-admission if
                      // missing), v1 generated + published, minting=1, then switch_minting(cell, 1)
  JoinResult join();  // keys if missing + self-admission, roster PENDING; returns id/fingerprint/members
  void approve(const std::string& member, const std::string& fingerprint);
  std::uint32_t rotate();  // starts phase 1; returns N
  void remove(const std::string& member);
  void leave();         // roster REMOVED for self, stops the loop; keys and front end stay
  CellStatus status();  // never throws on etcd trouble: reports it
  void start();         // background loop (membership, watch/poll, import, acks, drive)
  void stop();

  // Added: runs one pass of the loop on the caller's thread (what the background loop does
  // every `poll`); never throws. For tests and `edgectl cell sync`.
  void step();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace edge::cell
