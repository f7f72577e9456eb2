// Membership: this appliance's registration in its cell on etcd, kept alive by a lease.
//
// The record /edge/cell/<cell>/members/<id> (edge.cell.v1.Member: id, the HSM transport
// public key and its fingerprint, version, time) is written on a lease of `ttl` and
// refreshed every ttl/3 from a thread of its own, so a member that dies or is cut off
// disappears from the cell within `ttl`, and one that leaves (destructor) at once.
//
// etcd unavailable never stops the member: the state goes to `degraded` with the
// reason, refreshes go on trying, and when etcd answers again the member is registered
// again (a new lease if the old one expired meanwhile). A record under our id written
// by someone else (another appliance configured with the same id) is never
// overwritten: the state is `conflict`, with the other record's fingerprint.
#pragma once

#include <edge/cell/etcd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace edge::cell {

struct MemberInfo {
  std::string id;
  std::vector<std::uint8_t> identity;  // transport SPKI || signing SPKI
  std::vector<std::uint32_t> held;     // versions of the cell set held, ascending
  std::uint32_t minting = 0;           // what the front end mints
  std::string state;                   // loop state text
  std::string fingerprint;
  std::string version;
  std::int64_t joined_unix = 0;
};

// 1..64 of [A-Za-z0-9._-], as hsm's member ids; cell names the same.
bool valid_cell_name(std::string_view name) noexcept;

// The key prefix of a cell and of its members.
std::string cell_prefix(std::string_view cell);
std::string members_prefix(std::string_view cell);

enum class MembershipState { joining, joined, degraded, conflict, left };
const char* to_string(MembershipState s) noexcept;

struct MembershipStatus {
  MembershipState state = MembershipState::joining;
  std::string reason;               // why degraded / conflict; empty otherwise
  std::int64_t lease = 0;           // the lease the record is on (0: none)
  std::uint64_t registrations = 0;  // records written (1 + re-registrations)
};

class Membership {
 public:
  // `on_change` is called (on the membership thread) at every change of state.
  // Throws std::invalid_argument for an invalid cell name or member id, and
  // std::invalid_argument when ttl is under 3 s. Does not block on etcd: the
  // first registration happens on the membership's thread.
  Membership(EtcdClient& etcd, std::string cell, MemberInfo self, std::chrono::seconds ttl,
             std::function<void(const MembershipStatus&)> on_change = {});
  ~Membership();  // leaves: revokes the lease (best effort), stops the thread
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  MembershipStatus status() const;
  // Replaces the record's value (held versions, minting, state; id and identity stay what
  // they were). Does not block on etcd: the membership thread writes it on the lease at
  // once (or at the next registration while etcd is away).
  void update(MemberInfo self);
  // Waits (bounded) until the state is `s`; true when it is.
  bool wait_for(MembershipState s, std::chrono::milliseconds timeout) const;

 private:
  void run();
  void set(MembershipState s, std::string reason, std::int64_t lease);
  bool register_once();
  void write_if_changed(std::int64_t lease);

  EtcdClient& etcd_;
  std::string cell_, key_;
  MemberInfo self_;
  std::string value_;
  std::chrono::seconds ttl_;
  std::function<void(const MembershipStatus&)> on_change_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stopping_ = false;
  bool dirty_ = false;  // value_ changed since it was last written
  MembershipStatus status_;
  std::thread thread_;
};

// The members of a cell as etcd holds them now (live ones: their leases hold), sorted by id.
// Records that do not parse are skipped. Throws EtcdError.
std::vector<MemberInfo> list_members(EtcdClient& etcd, std::string_view cell);

}  // namespace edge::cell
