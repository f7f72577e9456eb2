// Membership: a member's record on a lease, refreshed from its own thread; degraded, not stopped,
// while etcd is away.
#include <edge/cell/membership.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "edge/cell/v1/cell.pb.h"

namespace edge::cell {
namespace {

bool valid_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == '-';
  });
}

std::string encode(const MemberInfo& m) {
  v1::Member pb;
  pb.set_id(m.id);
  pb.set_identity(std::string(m.identity.begin(), m.identity.end()));
  pb.set_fingerprint(m.fingerprint);
  pb.set_version(m.version);
  pb.set_joined_unix(m.joined_unix);
  for (std::uint32_t v : m.held) pb.add_held(v);
  pb.set_minting(m.minting);
  pb.set_state(m.state);
  return pb.SerializeAsString();
}

bool decode(const std::string& bytes, MemberInfo& out) {
  v1::Member pb;
  if (!pb.ParseFromString(bytes) || !valid_name(pb.id())) return false;
  out.id = pb.id();
  out.identity.assign(pb.identity().begin(), pb.identity().end());
  out.fingerprint = pb.fingerprint();
  out.version = pb.version();
  out.joined_unix = pb.joined_unix();
  out.held.assign(pb.held().begin(), pb.held().end());
  out.minting = pb.minting();
  out.state = pb.state();
  return true;
}

}  // namespace

bool valid_cell_name(std::string_view name) noexcept { return valid_name(name); }

std::string cell_prefix(std::string_view cell) { return "/edge/cell/" + std::string(cell) + "/"; }
std::string members_prefix(std::string_view cell) { return cell_prefix(cell) + "members/"; }

const char* to_string(MembershipState s) noexcept {
  switch (s) {
    case MembershipState::joining:
      return "joining";
    case MembershipState::joined:
      return "joined";
    case MembershipState::degraded:
      return "degraded";
    case MembershipState::conflict:
      return "conflict";
    case MembershipState::left:
      return "left";
  }
  return "?";
}

Membership::Membership(EtcdClient& etcd, std::string cell, MemberInfo self, std::chrono::seconds ttl,
                       std::function<void(const MembershipStatus&)> on_change)
    : etcd_(etcd),
      cell_(std::move(cell)),
      self_(std::move(self)),
      ttl_(ttl),
      on_change_(std::move(on_change)) {
  if (!valid_cell_name(cell_)) throw std::invalid_argument("'" + cell_ + "' is not a cell name");
  if (!valid_name(self_.id)) throw std::invalid_argument("'" + self_.id + "' is not a member id");
  if (ttl_ < std::chrono::seconds(3)) throw std::invalid_argument("a membership lease lasts at least 3 s");
  key_ = members_prefix(cell_) + self_.id;
  value_ = encode(self_);
  thread_ = std::thread([this] { run(); });
}

Membership::~Membership() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  const std::int64_t lease = status().lease;
  if (lease != 0) {
    try {
      etcd_.revoke_lease(lease);  // the record goes with it, at once
    } catch (const EtcdError&) {
      // etcd away: the lease runs out by itself within ttl.
    }
  }
  set(MembershipState::left, {}, 0);
}

MembershipStatus Membership::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void Membership::update(MemberInfo self) {
  {
    std::lock_guard lock(mu_);
    self.id = self_.id;
    self.identity = self_.identity;
    self.fingerprint = self_.fingerprint;
    self.joined_unix = self_.joined_unix;
    self_ = std::move(self);
    value_ = encode(self_);
    dirty_ = true;
  }
  cv_.notify_all();
}

bool Membership::wait_for(MembershipState s, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return status_.state == s; });
}

void Membership::set(MembershipState s, std::string reason, std::int64_t lease) {
  MembershipStatus copy;
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    changed = status_.state != s;  // on_change is for state changes; the reason may vary between tries
    status_.state = s;
    status_.reason = std::move(reason);
    status_.lease = lease;
    copy = status_;
  }
  cv_.notify_all();
  if (changed && on_change_) on_change_(copy);
}

// Writes the record on a fresh lease. False (state set) when it cannot.
bool Membership::register_once() {
  const std::int64_t lease = etcd_.grant_lease(ttl_);
  std::string value;
  std::string fingerprint;
  {
    std::lock_guard lock(mu_);
    value = value_;
    fingerprint = self_.fingerprint;
    dirty_ = false;
  }
  // The key exists: ours from before (same transport key) is taken over; anyone else's is not.
  std::optional<KeyValue> kv;
  MemberInfo other;
  bool readable = false;
  bool written = etcd_.create(key_, value, lease);
  if (!written) {
    kv = etcd_.get(key_);
    readable = kv && decode(kv->value, other);
    written = readable && other.fingerprint == fingerprint &&
              etcd_.compare_and_swap(key_, kv->mod_revision, value, lease);
  }
  if (written) {
    {
      std::lock_guard lock(mu_);
      ++status_.registrations;
    }
    set(MembershipState::joined, {}, lease);
    return true;
  }
  etcd_.revoke_lease(lease);
  set(MembershipState::conflict,
      "member id '" + self_.id + "' is registered by another transport key (" +
          (readable ? other.fingerprint : std::string("an unreadable record")) +
          "); this member does not join",
      0);
  return false;
}

void Membership::run() {
  const auto period = std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 3;
  std::int64_t lease = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (stopping_) return;
    }
    try {
      if (lease == 0 || etcd_.keep_alive(lease) == 0) {
        // No lease yet, or it ran out (etcd away longer than ttl, or revoked): register again.
        lease = 0;
        if (register_once()) lease = status().lease;
      } else {
        write_if_changed(lease);
        if (status().state != MembershipState::joined) set(MembershipState::joined, {}, lease);
      }
    } catch (const EtcdError& e) {
      set(MembershipState::degraded, e.what(), lease);
    }
    std::unique_lock lock(mu_);
    if (status_.state == MembershipState::conflict) {
      // Nothing to refresh; look again later (the other record may go).
      lease = 0;
    }
    cv_.wait_for(lock, period, [&] { return stopping_ || (dirty_ && lease != 0); });
    if (stopping_) return;
    if (dirty_ && lease != 0) {
      lock.unlock();
      try {
        write_if_changed(lease);
      } catch (const EtcdError& e) {
        set(MembershipState::degraded, e.what(), lease);
      }
    }
  }
}

// Writes the current value on our lease when update() changed it (the key is ours while
// the lease holds: register_once made it so).
void Membership::write_if_changed(std::int64_t lease) {
  std::string value;
  {
    std::lock_guard lock(mu_);
    if (!dirty_) return;
    value = value_;
    dirty_ = false;
  }
  try {
    etcd_.put(key_, value, lease);
  } catch (const EtcdError&) {
    std::lock_guard lock(mu_);
    dirty_ = true;  // written at the next try
    throw;
  }
}

std::vector<MemberInfo> list_members(EtcdClient& etcd, std::string_view cell) {
  std::vector<MemberInfo> out;
  for (const KeyValue& kv : etcd.get_prefix(members_prefix(cell)).kvs) {
    MemberInfo m;
    if (decode(kv.value, m) && kv.key == members_prefix(cell) + m.id) out.push_back(std::move(m));
  }
  return out;
}

}  // namespace edge::cell
