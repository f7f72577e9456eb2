// CellNode: a member's state machine over etcd (issue 15): roster, signed approvals
// (transitive trust), signed version records, wrapped blobs, signed acks, the two-phase
// rotation with take-over, catch-up, retirement; degraded, never blocking, on etcd trouble.
#include <edge/cell/cell.h>
#include <edge/cell/membership.h>
#include <edge/hsm/cell_keys.h>
#include <edge/hsm/hsm.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "edge/cell/v1/cell.pb.h"

namespace edge::cell {
namespace {

using Bytes = std::vector<std::uint8_t>;

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void put_u32(Bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}
void put_str(Bytes& b, std::string_view s) {
  put_u32(b, static_cast<std::uint32_t>(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}
Bytes context(std::string_view ctx) {  // with its NUL
  Bytes b(ctx.begin(), ctx.end());
  b.push_back(0);
  return b;
}

// What an Approval's signature covers: "edge cell approval v1\0" || cell || member || fingerprint
// || approver (length-prefixed, big-endian lengths).
Bytes approval_bytes(std::string_view cell, std::string_view member, std::string_view fp,
                     std::string_view approver) {
  Bytes b = context("edge cell approval v1");
  put_str(b, cell);
  put_str(b, member);
  put_str(b, fp);
  put_str(b, approver);
  return b;
}
// What an Ack's signature covers: "edge cell ack v1\0" || cell || member || version || check value.
Bytes ack_bytes(std::string_view cell, std::string_view member, std::uint32_t version, std::string_view cv) {
  Bytes b = context("edge cell ack v1");
  put_str(b, cell);
  put_str(b, member);
  put_u32(b, version);
  put_str(b, cv);
  return b;
}

std::string str(const Bytes& b) { return {b.begin(), b.end()}; }
Bytes bytes(const std::string& s) { return {s.begin(), s.end()}; }

const char* roster_text(v1::RosterState s) {
  switch (s) {
    case v1::PENDING:
      return "pending";
    case v1::APPROVED:
      return "approved";
    case v1::REMOVED:
      return "removed";
    default:
      return "unknown";
  }
}
const char* phase_text(v1::RotationPhase p) {
  switch (p) {
    case v1::PREPARE:
      return "prepare";
    case v1::SWITCH:
      return "switch";
    case v1::DONE:
      return "done";
    default:
      return "";
  }
}

std::optional<std::uint32_t> parse_version(std::string_view s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v == 0) return std::nullopt;
  return v;
}

// One read of the cell's store (everything but audit/), decoded; what does not parse is listed.
struct Store {
  std::optional<v1::Cell> meta;
  std::map<std::string, v1::RosterEntry> roster;
  std::int64_t roster_rev_of(const std::string& id) const {
    auto it = roster_rev.find(id);
    return it == roster_rev.end() ? 0 : it->second;
  }
  std::map<std::string, std::int64_t> roster_rev;
  std::map<std::pair<std::string, std::string>, v1::Approval> approvals;  // (approver, member)
  std::map<std::string, MemberInfo> members;                              // live ones
  std::map<std::uint32_t, hsm::VersionRecord> versions;                   // decoded, not yet verified
  std::map<std::uint32_t, std::map<std::string, std::string>> blobs;
  std::map<std::uint32_t, std::map<std::string, v1::Ack>> acks;
  std::optional<v1::Rotation> rotation;
  std::int64_t rotation_rev = 0;
  std::uint32_t minting = 0;
  std::int64_t minting_rev = 0;
  std::vector<std::string> malformed;  // "key: why"
};

// "a/b/c" after the prefix -> parts.
std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = s.find('/', start);
    out.emplace_back(
        s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

}  // namespace

struct CellNode::Impl {
  Impl(hsm::Hsm& h, CellConfig c, CellHooks k)
      : hsm(h), cfg(std::move(c)), hooks(std::move(k)), prefix(cell_prefix(cfg.cell)), keys(h) {}

  hsm::Hsm& hsm;
  CellConfig cfg;
  CellHooks hooks;
  std::string prefix;
  hsm::CellKeys keys;
  std::unique_ptr<EtcdClient> etcd;

  std::mutex act_mu;  // one act or loop pass at a time (etcd writes + HSM changes)

  std::mutex mu;  // loop control + the snapshot below
  std::condition_variable cv;
  bool running = false, stopping = false, wake = false;
  std::thread loop;
  std::unique_ptr<Membership> membership;
  std::unique_ptr<EtcdWatch> watch;
  std::uint64_t passes = 0;
  std::string loop_error;  // last pass's etcd trouble, "" when fine
  std::vector<std::string> last_refused;
  bool left = false;

  // Loop-private (under act_mu).
  std::set<std::string> refused_reported;
  std::map<std::string, std::chrono::steady_clock::time_point> absent_since;  // members without a record
  bool degraded = false;
  std::uint64_t audit_seq = 0;
  std::deque<v1::AuditEntry> audit_backlog;  // written when etcd answers; bounded
  std::optional<MemberInfo> published;

  // ---- helpers -------------------------------------------------------------
  std::string key(std::string_view rest) const { return prefix + std::string(rest); }

  void emit(const std::string& actor, const std::string& kind, const std::string& detail) {
    if (hooks.event) {
      try {
        hooks.event(kind, detail);
      } catch (...) {  // NOLINT(bugprone-empty-catch): an event sink never stops the cell
      }
    }
    v1::AuditEntry a;
    a.set_unix_ms(now_ms());
    a.set_member(cfg.member_id);
    a.set_actor(actor);
    a.set_action(kind);
    a.set_detail(detail);
    audit_backlog.push_back(std::move(a));
    while (audit_backlog.size() > 256) audit_backlog.pop_front();
  }
  // Failures a pass would repeat every `poll`: reported once per distinct text.
  std::set<std::string> failures_reported;
  void emit_failure(const std::string& actor, const std::string& kind, const std::string& detail) {
    if (failures_reported.size() > 1024) failures_reported.clear();
    if (failures_reported.insert(kind + " " + detail).second) emit(actor, kind, detail);
  }

  void flush_audit() {
    while (!audit_backlog.empty()) {
      const v1::AuditEntry& a = audit_backlog.front();
      char ms[32];
      std::snprintf(ms, sizeof ms, "%013lld", static_cast<long long>(a.unix_ms()));
      const std::string k = key("audit/") + ms + "-" + cfg.member_id + "-" + std::to_string(++audit_seq);
      try {
        etcd->put(k, a.SerializeAsString());
      } catch (const EtcdError&) {
        return;  // kept for the next time etcd answers
      }
      audit_backlog.pop_front();
    }
  }

  hsm::TransportPublicKey ensure_identity(const std::string& actor) {
    if (!keys.has_transport_key()) {
      hsm::TransportPublicKey k = keys.create_transport_key();
      emit(actor, "CELL_KEYS_CREATED", "member=" + cfg.member_id + " fingerprint=" + k.fingerprint);
    }
    hsm::TransportPublicKey k = keys.transport_public_key();
    if (!trusted_here().count(cfg.member_id)) {
      if (!hooks.admit) throw CellError("no admission hook: this member cannot admit its own identity");
      hooks.admit(cfg.member_id, k.identity(), k.fingerprint);
      emit(actor, "CELL_ADMITTED", "member=" + cfg.member_id + " fingerprint=" + k.fingerprint + " self=1");
    }
    return k;
  }

  std::set<std::string> trusted_here() {
    std::set<std::string> t;
    for (const hsm::PeerKey& p : keys.peers())
      if (p.trusted) t.insert(p.member);
    return t;
  }

  struct Held {
    std::set<std::uint32_t> all, active;
  };
  Held held_here() {
    Held h;
    if (!hsm.keysets().exists(cfg.cell)) return h;
    for (const hsm::KeyVersionInfo& v : hsm.keysets().get(cfg.cell).versions) {
      h.all.insert(v.version);
      if (v.state == hsm::KeyState::active) h.active.insert(v.version);
    }
    return h;
  }

  std::uint32_t local_minting() {
    if (!hooks.minting) return 0;
    try {
      return hooks.minting();
    } catch (...) {
      return 0;
    }
  }

  Store read_store() {
    Store s;
    auto sub = [&](const char* what) { return etcd->get_prefix(key(what)).kvs; };
    if (auto kv = etcd->get(key("meta"))) {
      v1::Cell c;
      if (c.ParseFromString(kv->value) && c.name() == cfg.cell)
        s.meta = c;
      else
        s.malformed.push_back("meta: does not parse as this cell's Cell");
    }
    for (const KeyValue& kv : sub("roster/")) {
      v1::RosterEntry r;
      const std::string id = kv.key.substr(key("roster/").size());
      if (!r.ParseFromString(kv.value) || r.id() != id || !hsm::valid_member_id(id)) {
        s.malformed.push_back(kv.key.substr(prefix.size()) + ": not a RosterEntry for " + id);
        continue;
      }
      s.roster[id] = r;
      s.roster_rev[id] = kv.mod_revision;
    }
    for (const KeyValue& kv : sub("approvals/")) {
      const auto parts = split(std::string_view(kv.key).substr(key("approvals/").size()));
      v1::Approval a;
      if (parts.size() != 2 || !a.ParseFromString(kv.value) || a.approver() != parts[0] ||
          a.member() != parts[1]) {
        s.malformed.push_back(kv.key.substr(prefix.size()) + ": not an Approval matching its key");
        continue;
      }
      s.approvals[{parts[0], parts[1]}] = a;
    }
    for (MemberInfo& m : list_members(*etcd, cfg.cell)) s.members[m.id] = std::move(m);
    for (const KeyValue& kv : sub("versions/")) {
      const auto n = parse_version(std::string_view(kv.key).substr(key("versions/").size()));
      auto rec = hsm::decode_record(bytes(kv.value));
      if (!n || !rec || rec->version != *n || rec->set != cfg.cell) {
        s.malformed.push_back(kv.key.substr(prefix.size()) + ": not a version record of " + cfg.cell +
                              " with this version");
        continue;
      }
      s.versions[*n] = std::move(*rec);
    }
    for (const KeyValue& kv : sub("blobs/")) {
      const auto parts = split(std::string_view(kv.key).substr(key("blobs/").size()));
      const auto n = parts.size() == 2 ? parse_version(parts[0]) : std::nullopt;
      if (!n) continue;
      s.blobs[*n][parts[1]] = kv.value;
    }
    for (const KeyValue& kv : sub("acks/")) {
      const auto parts = split(std::string_view(kv.key).substr(key("acks/").size()));
      const auto n = parts.size() == 2 ? parse_version(parts[0]) : std::nullopt;
      v1::Ack a;
      if (!n || !a.ParseFromString(kv.value) || a.member() != parts[1] || a.version() != *n) {
        s.malformed.push_back(kv.key.substr(prefix.size()) + ": not an Ack matching its key");
        continue;
      }
      s.acks[*n][parts[1]] = a;
    }
    if (auto kv = etcd->get(key("rotation"))) {
      v1::Rotation r;
      s.rotation_rev = kv->mod_revision;
      if (r.ParseFromString(kv->value))
        s.rotation = r;
      else
        s.malformed.push_back("rotation: does not parse");
    }
    if (auto kv = etcd->get(key("minting"))) {
      s.minting_rev = kv->mod_revision;
      if (auto v = parse_version(kv->value))
        s.minting = *v;
      else
        s.malformed.push_back("minting: not a version number");
    }
    return s;
  }

  // A signature check that never throws: an untrusted signer is a refusal with its reason.
  bool signed_by(const std::string& member, const Bytes& data, const std::string& sig, std::string& why) {
    try {
      if (keys.verify(member, data, bytes(sig))) return true;
      why = "signature by " + member + " does not verify";
    } catch (const hsm::CellKeyError& e) {
      why = "signer " + member + " is not trusted here (" + e.what() + ")";
    } catch (const hsm::HsmError& e) {
      why = std::string("HSM: ") + e.what();
    }
    return false;
  }

  // Records whose signature verifies under their trusted origin, by version; others refused.
  std::map<std::uint32_t, hsm::VersionRecord> valid_versions(const Store& s,
                                                             std::vector<std::string>& refused) {
    std::map<std::uint32_t, hsm::VersionRecord> ok;
    for (const auto& [n, rec] : s.versions) {
      std::string why;
      if (!hsm::valid_member_id(rec.origin)) {
        refused.push_back("versions/" + std::to_string(n) + ": origin '" + rec.origin +
                          "' is not a member id");
        continue;
      }
      if (!signed_by(rec.origin, hsm::record_signed_bytes(rec), str(rec.signature), why)) {
        refused.push_back("versions/" + std::to_string(n) + ": " + why);
        continue;
      }
      // A version held here must be the one etcd describes (same check MAC).
      try {
        if (auto mine = keys.record(cfg.cell, n); mine && mine->check_mac != rec.check_mac) {
          refused.push_back("versions/" + std::to_string(n) + ": check value " + rec.check_value() +
                            " differs from the version held here (" + mine->check_value() + ")");
          continue;
        }
      } catch (const hsm::HsmError&) {
      }
      ok[n] = rec;
    }
    return ok;
  }

  bool ack_valid(const Store& s, const hsm::VersionRecord& rec, const std::string& member,
                 std::vector<std::string>* refused) {
    auto vit = s.acks.find(rec.version);
    if (vit == s.acks.end()) return false;
    auto it = vit->second.find(member);
    if (it == vit->second.end()) return false;
    const v1::Ack& a = it->second;
    std::string why;
    if (a.check_value() != rec.check_value())
      why = "check value " + a.check_value() + " is not the record's " + rec.check_value();
    else if (signed_by(member, ack_bytes(cfg.cell, member, rec.version, a.check_value()), a.signature(), why))
      return true;
    if (refused) refused->push_back("acks/" + std::to_string(rec.version) + "/" + member + ": " + why);
    return false;
  }

  // Sign + verify of a test message with version v through the MAC path the front end uses.
  bool round_trip(std::uint32_t v, std::string& why) {
    try {
      auto mac = hsm.mac_for(cfg.cell);
      const std::string probe = "edge cell round trip " + cfg.member_id + " v" + std::to_string(v);
      const std::span<const std::uint8_t> data(reinterpret_cast<const std::uint8_t*>(probe.data()),
                                               probe.size());
      hsm::MacTag tag{};
      hsm::MacStatus st = mac->sign(v, data, tag);
      if (st != hsm::MacStatus::ok) {
        why = std::string("mint with v") + std::to_string(v) + ": " + hsm::to_string(st);
        return false;
      }
      st = mac->verify(v, data, tag);
      if (st != hsm::MacStatus::ok) {
        why = std::string("verify with v") + std::to_string(v) + ": " + hsm::to_string(st);
        return false;
      }
      tag[0] ^= 1;
      if (mac->verify(v, data, tag) != hsm::MacStatus::mismatch) {
        why = "a changed tag did not fail to verify";
        return false;
      }
      return true;
    } catch (const std::exception& e) {
      why = e.what();
      return false;
    }
  }

  void write_ack(const std::string& actor, const hsm::VersionRecord& rec) {
    std::string why;
    if (!round_trip(rec.version, why)) {
      emit_failure(actor, "CELL_ACK_FAILED", "version=" + std::to_string(rec.version) + " reason=" + why);
      return;
    }
    v1::Ack a;
    a.set_member(cfg.member_id);
    a.set_version(rec.version);
    a.set_check_value(rec.check_value());
    a.set_signature(str(keys.sign(ack_bytes(cfg.cell, cfg.member_id, rec.version, rec.check_value()))));
    etcd->put(key("acks/" + std::to_string(rec.version) + "/" + cfg.member_id), a.SerializeAsString());
    emit(actor, "CELL_VERSION_ACKED",
         "version=" + std::to_string(rec.version) + " check_value=" + rec.check_value());
  }

  // Wraps every held active version for each approved, trusted member without a blob: the one the
  // cell mints, one being prepared, and the older ones still verified (a member admitted after a
  // rotation gets those too, so tokens minted before it joined verify on it). A retired version is
  // not sent: the cell no longer verifies with it.
  void write_blobs(const std::string& actor, const Store& s,
                   const std::map<std::uint32_t, hsm::VersionRecord>& valid, const Held& held,
                   const std::set<std::string>& trusted) {
    for (const auto& [n, rec] : valid) {
      if (!held.active.count(n) || !retained(s, valid, n)) continue;
      for (const auto& [id, r] : s.roster) {
        if (id == cfg.member_id || id == rec.origin || r.state() != v1::APPROVED || !trusted.count(id))
          continue;
        auto bit = s.blobs.find(n);
        if (bit != s.blobs.end() && bit->second.count(id)) continue;
        // It holds n already (it acked it, or its member record says so): nothing to send.
        if (auto ait = s.acks.find(n); ait != s.acks.end() && ait->second.count(id)) continue;
        if (auto mit = s.members.find(id);
            mit != s.members.end() &&
            std::find(mit->second.held.begin(), mit->second.held.end(), n) != mit->second.held.end())
          continue;
        try {
          const Bytes blob = keys.wrap_version_for(cfg.cell, n, id);
          if (etcd->create(key("blobs/" + std::to_string(n) + "/" + id), str(blob)))
            emit(actor, "CELL_VERSION_WRAPPED", "version=" + std::to_string(n) + " for=" + id);
        } catch (const hsm::HsmError& e) {
          emit_failure(actor, "CELL_WRAP_FAILED",
                       "version=" + std::to_string(n) + " for=" + id + " reason=" + e.what());
        }
      }
    }
  }

  // Generates version n here and publishes its record (create-only); false when another member's
  // record won the race (our copy is destroyed again).
  bool generate_and_publish(const std::string& actor, std::uint32_t n, std::uint32_t retain) {
    hsm::VersionRecord rec = keys.generate_version(cfg.member_id, cfg.cell, n, now_unix(), retain);
    bool won = false;
    try {
      won = etcd->create(key("versions/" + std::to_string(n)), str(hsm::encode_record(rec)));
    } catch (const EtcdError&) {
      // Unknown outcome: read back.
      auto kv = etcd->get(key("versions/" + std::to_string(n)));
      won = kv && kv->value == str(hsm::encode_record(rec));
    }
    if (!won) {
      keys.destroy_version(cfg.cell, n);
      emit(actor, "CELL_VERSION_RACE_LOST", "version=" + std::to_string(n));
      return false;
    }
    emit(actor, "CELL_VERSION_GENERATED",
         "version=" + std::to_string(n) + " check_value=" + rec.check_value());
    return true;
  }

  // True when `member` is removed, or its member record has been missing for more than
  // 2 x lease ttl (as this member's passes saw it).
  bool gone(const Store& s, const std::string& member) {
    auto r = s.roster.find(member);
    if (r != s.roster.end() && r->second.state() == v1::REMOVED) return true;
    if (s.members.count(member)) {
      absent_since.erase(member);
      return false;
    }
    const auto now = std::chrono::steady_clock::now();
    const auto it = absent_since.emplace(member, now).first;
    return now - it->second > 2 * cfg.lease_ttl;
  }

  std::uint32_t retain_of(const Store& s) const {
    return s.meta && s.meta->retain() > 0 ? s.meta->retain() : (cfg.retain > 0 ? cfg.retain : 3);
  }

  // Whether the cell still verifies with version n, so a member without it should hold it: every
  // version from minting up, and below minting the newest `retain` ones until retire_after_s after
  // the latest switch (retire_old then retires them everywhere and destroys what lies beyond
  // retain, so a destroyed version is not imported again from its old blob).
  bool retained(const Store& s, const std::map<std::uint32_t, hsm::VersionRecord>& valid,
                std::uint32_t n) const {
    if (n >= s.minting) return true;
    std::uint32_t top = s.minting;
    if (!valid.empty()) top = std::max(top, valid.rbegin()->first);
    if (static_cast<std::uint64_t>(n) + retain_of(s) <= top) return false;
    const std::optional<std::int64_t> since = seconds_since_switch(s);
    return !since || *since < s.meta->retire_after_s();
  }

  // Seconds since the cell switched minting to its current version; none before the first
  // rotation's switch (or without meta), so nothing below minting is due for retirement yet.
  static std::optional<std::int64_t> seconds_since_switch(const Store& s) {
    if (!s.rotation || !s.meta || s.rotation->version() != s.minting || s.rotation->switched_unix() == 0)
      return std::nullopt;
    return now_unix() - s.rotation->switched_unix();
  }

  // ---- the loop pass -------------------------------------------------------
  // One pass; throws EtcdError when etcd does not answer (the caller reports degraded).
  void pass() {
    const std::string actor = "loop";
    Store s = read_store();
    std::vector<std::string> refused = s.malformed;
    if (!s.meta) throw CellError("no cell '" + cfg.cell + "' in etcd (meta missing)");
    std::set<std::string> trusted = trusted_here();
    auto self = s.roster.find(cfg.member_id);
    if (self == s.roster.end() || self->second.state() == v1::REMOVED) {
      // Not (or no longer) in the cell: this member does nothing for it.
      publish_member(s);
      std::lock_guard lock(mu);
      last_refused = refused;
      return;
    }

    // Removed members lose this HSM's trust (nothing is wrapped for them again).
    for (const auto& [id, r] : s.roster) {
      if (r.state() == v1::REMOVED && id != cfg.member_id && trusted.count(id)) {
        try {
          keys.remove_peer(id);
          trusted.erase(id);
          emit(actor, "CELL_MEMBER_REMOVED", "member=" + id + " trust=removed");
        } catch (const hsm::HsmError& e) {
          emit_failure(actor, "CELL_REMOVE_FAILED", "member=" + id + " reason=" + e.what());
        }
      }
    }

    // Transitive admission: a roster member with an Approval signed by a member trusted here.
    for (const auto& [id, r] : s.roster) {
      if (id == cfg.member_id || r.state() == v1::REMOVED || trusted.count(id)) continue;
      std::string computed;
      try {
        computed = hsm::identity_fingerprint(bytes(r.identity()));
      } catch (const hsm::HsmError& e) {
        refused.push_back("roster/" + id + ": identity does not parse (" + e.what() + ")");
        continue;
      }
      if (computed != r.fingerprint()) {
        std::string line = "roster/";
        line += id;
        line += ": fingerprint ";
        line += r.fingerprint();
        line += " is not its identity's ";
        line += computed;
        refused.push_back(std::move(line));
        continue;
      }
      for (const auto& [k, a] : s.approvals) {
        if (k.second != id || k.first == id || !trusted.count(k.first)) continue;
        std::string why;
        if (a.fingerprint() != r.fingerprint()) {
          refused.push_back("approvals/" + k.first + "/" + id + ": fingerprint " + a.fingerprint() +
                            " is not the roster's " + r.fingerprint());
          continue;
        }
        if (!signed_by(k.first, approval_bytes(cfg.cell, id, a.fingerprint(), k.first), a.signature(), why)) {
          std::string line = "approvals/";
          line += k.first;
          line += '/';
          line += id;
          line += ": ";
          line += why;
          refused.push_back(std::move(line));
          continue;
        }
        try {
          hooks.admit(id, bytes(r.identity()), r.fingerprint());
          trusted.insert(id);
          emit(actor, "CELL_ADMITTED",
               "member=" + id + " fingerprint=" + r.fingerprint() + " approved_by=" + k.first);
        } catch (const std::exception& e) {
          emit_failure(actor, "CELL_ADMIT_FAILED", "member=" + id + " reason=" + e.what());
        }
        break;
      }
    }
    // Approvals that do not verify are reported even when the member is trusted already.
    for (const auto& [k, a] : s.approvals) {
      if (!trusted.count(k.first)) {
        refused.push_back("approvals/" + k.first + "/" + k.second + ": approver " + k.first +
                          (s.roster.count(k.first) ? " is not trusted here" : " is not in the roster"));
        continue;
      }
      std::string why;
      if (!signed_by(k.first, approval_bytes(cfg.cell, k.second, a.fingerprint(), k.first), a.signature(),
                     why)) {
        const std::string line = "approvals/" + k.first + "/" + k.second + ": " + why;
        if (std::find(refused.begin(), refused.end(), line) == refused.end()) refused.push_back(line);
      }
    }

    Held held = held_here();
    std::map<std::uint32_t, hsm::VersionRecord> valid = valid_versions(s, refused);

    // Imports: every valid version the cell still verifies with that is not held here and has a
    // blob for us (older retained versions too: a member admitted after a rotation verifies the
    // tokens minted before it joined).
    for (const auto& [n, rec] : valid) {
      if (held.all.count(n) || !retained(s, valid, n)) continue;
      auto bit = s.blobs.find(n);
      if (bit == s.blobs.end() || !bit->second.count(cfg.member_id)) continue;
      try {
        keys.import_version(rec, bytes(bit->second.at(cfg.member_id)));
        emit(actor, "CELL_VERSION_IMPORTED",
             "version=" + std::to_string(n) + " origin=" + rec.origin + " check_value=" + rec.check_value());
        held = held_here();
      } catch (const hsm::HsmError& e) {
        refused.push_back("blobs/" + std::to_string(n) + "/" + cfg.member_id + ": import refused (" +
                          e.what() + ")");
      }
    }

    // Acks for every held valid version >= minting that has none of ours yet.
    for (const auto& [n, rec] : valid) {
      if (n < s.minting || !held.active.count(n)) continue;
      if (ack_valid(s, rec, cfg.member_id, nullptr)) continue;
      write_ack(actor, rec);
    }
    write_blobs(actor, s, valid, held, trusted);

    // Rotation.
    if (s.rotation && s.rotation->phase() == v1::PREPARE) {
      const std::uint32_t n = s.rotation->version();
      const std::string starter = s.rotation->started_by();
      // Generates v (or publishes our unpublished copy), acks it and wraps it for the others.
      auto make_version = [&](std::uint32_t v) {
        bool published_here = false;
        if (held_here().all.count(v)) {
          // Ours, generated before a publication that did not go through: publish it now.
          auto mine = keys.record(cfg.cell, v);
          published_here = mine && mine->origin == cfg.member_id &&
                           etcd->create(key("versions/" + std::to_string(v)), str(hsm::encode_record(*mine)));
        } else {
          published_here = generate_and_publish(actor, v, retain_of(s));
        }
        if (!published_here) return;
        Store again = read_store();
        auto v2 = valid_versions(again, refused);
        if (v2.count(v)) write_ack(actor, v2.at(v));
        write_blobs(actor, again, v2, held_here(), trusted);
      };
      if (!s.versions.count(n)) {
        // Take-over: the starter's member record gone for > 2 x lease ttl (or the starter is us).
        if (starter == cfg.member_id || gone(s, starter)) {
          if (starter != cfg.member_id)
            emit(actor, "CELL_ROTATION_TAKEOVER", "version=" + std::to_string(n) + " started_by=" + starter);
          make_version(n);
        }
      } else {
        // versions/n exists; valid or not (its origin's trust may be gone with its removal).
        const hsm::VersionRecord& rec = valid.count(n) ? valid.at(n) : s.versions.at(n);
        // Nobody but its origin holds n (no ack by another, no blob for another), and the origin
        // is gone (removed, or away for > 2 x lease ttl): nobody can wrap n for anyone. The
        // rotation starts over with n + 1, made here.
        bool reachable = held.all.count(n) != 0 || rec.origin == cfg.member_id;
        if (auto ait = s.acks.find(n); ait != s.acks.end())
          for (const auto& [id, ack] : ait->second)
            if (id != rec.origin) reachable = true;
        if (auto bit = s.blobs.find(n); bit != s.blobs.end())
          for (const auto& [id, blob] : bit->second)
            if (id != rec.origin && s.roster.count(id) && s.roster.at(id).state() != v1::REMOVED)
              reachable = true;
        if (!reachable && gone(s, rec.origin)) {
          v1::Rotation next;
          next.set_version(n + 1);
          next.set_phase(v1::PREPARE);
          next.set_started_by(cfg.member_id);
          next.set_started_unix(now_unix());
          if (etcd->compare_and_swap(key("rotation"), s.rotation_rev, next.SerializeAsString())) {
            emit(actor, "CELL_ROTATION_RESTARTED",
                 "version=" + std::to_string(n + 1) + " abandoned=" + std::to_string(n) +
                     " origin=" + rec.origin);
            make_version(n + 1);
          }
        } else if (valid.count(n)) {
          bool all = true;
          for (const auto& [id, r] : s.roster)
            if (r.state() == v1::APPROVED && !ack_valid(s, rec, id, &refused)) all = false;
          if (all) {
            v1::Rotation next = *s.rotation;
            next.set_phase(v1::SWITCH);
            next.set_switched_unix(now_unix());
            if (etcd->compare_and_swap(key("rotation"), s.rotation_rev, next.SerializeAsString())) {
              emit(actor, "CELL_ROTATION_PHASE", "version=" + std::to_string(n) + " phase=switch");
              s.rotation = next;
              s.rotation_rev = 0;
            }
          }
        }
      }
    }
    // PREPARE -> SWITCH writes `minting`; a driver that died in between is repaired by anyone.
    if (s.rotation && s.rotation->phase() == v1::SWITCH && s.rotation->version() > s.minting) {
      const std::uint32_t n = s.rotation->version();
      if (etcd->compare_and_swap(key("minting"), s.minting_rev, std::to_string(n))) {
        emit(actor, "CELL_MINTING_SET", "version=" + std::to_string(n));
        s.minting = n;
      }
    }

    // Switch this member's front end (never backwards); catch up first when N is not held here.
    const std::uint32_t local = local_minting();
    if (s.minting > local && s.minting != 0) {
      if (held.active.count(s.minting)) {
        try {
          if (!hooks.switch_minting) throw CellError("no switch_minting hook");
          hooks.switch_minting(cfg.cell, s.minting);
          emit(actor, "CELL_SWITCHED",
               "version=" + std::to_string(s.minting) + " from=" + std::to_string(local));
        } catch (const std::exception& e) {
          emit_failure(actor, "CELL_SWITCH_FAILED",
                       "version=" + std::to_string(s.minting) + " reason=" + e.what());
        }
      }
    }

    // SWITCH -> DONE when every approved member mints N.
    if (s.rotation && s.rotation->phase() == v1::SWITCH && s.minting == s.rotation->version()) {
      const std::uint32_t n = s.rotation->version();
      bool all = true;
      for (const auto& [id, r] : s.roster) {
        if (r.state() != v1::APPROVED) continue;
        std::uint32_t m = 0;
        if (id == cfg.member_id) {
          m = local_minting();
        } else if (auto it = s.members.find(id); it != s.members.end()) {
          m = it->second.minting;
        }
        if (m != n) all = false;
      }
      if (all && s.rotation_rev != 0) {
        v1::Rotation next = *s.rotation;
        next.set_phase(v1::DONE);
        if (etcd->compare_and_swap(key("rotation"), s.rotation_rev, next.SerializeAsString()))
          emit(actor, "CELL_ROTATION_PHASE", "version=" + std::to_string(n) + " phase=done");
      }
    }

    // Retirement and retain, once this member mints the cell's version.
    retire_old(actor, s);

    publish_member(s);
    {
      std::lock_guard lock(mu);
      last_refused = refused;
    }
    for (const std::string& r : refused) {
      if (refused_reported.size() > 1024) refused_reported.clear();  // bounded; reported again at worst
      if (!refused_reported.insert(r).second) continue;
      // "key: why" -> "record=key reason=why" (one line of key=value text)
      const std::size_t colon = r.find(": ");
      emit(actor, "CELL_RECORD_REFUSED",
           colon == std::string::npos ? "record=" + r
                                      : "record=" + r.substr(0, colon) + " reason=" + r.substr(colon + 2));
    }
  }

  void retire_old(const std::string& actor, const Store& s) {
    const std::optional<std::int64_t> since = seconds_since_switch(s);
    if (s.minting == 0 || local_minting() < s.minting || !since) return;
    Held held = held_here();
    const bool due = *since >= s.meta->retire_after_s();
    if (due) {
      for (std::uint32_t v : held.active) {
        if (v >= s.minting) continue;
        try {
          hsm.keysets().retire(cfg.cell, v);
          emit(actor, "CELL_VERSION_RETIRED",
               "version=" + std::to_string(v) + " minting=" + std::to_string(s.minting));
        } catch (const hsm::HsmError& e) {
          emit_failure(actor, "CELL_RETIRE_FAILED", "version=" + std::to_string(v) + " reason=" + e.what());
        }
      }
    }
    // Beyond retain: the newest `retain` versions stay, older ones (below minting) go.
    const std::uint32_t retain = retain_of(s);
    std::vector<std::uint32_t> all(held.all.begin(), held.all.end());
    if (all.size() <= retain) return;
    for (std::size_t i = 0; i + retain < all.size(); ++i) {
      const std::uint32_t v = all[i];
      if (v >= s.minting) break;
      try {
        keys.destroy_version(cfg.cell, v);
        emit(actor, "CELL_VERSION_DESTROYED",
             "version=" + std::to_string(v) + " retain=" + std::to_string(retain));
      } catch (const hsm::HsmError& e) {
        emit_failure(actor, "CELL_DESTROY_FAILED", "version=" + std::to_string(v) + " reason=" + e.what());
      }
    }
  }

  void publish_member(const Store& s) {
    std::lock_guard lock(mu);
    if (!membership) return;
    MemberInfo m;
    Held h = held_here();
    m.held.assign(h.all.begin(), h.all.end());
    m.minting = local_minting();
    auto self = s.roster.find(cfg.member_id);
    m.state = self == s.roster.end() ? "not in roster" : roster_text(self->second.state());
    m.version = cfg.version;
    if (published && published->held == m.held && published->minting == m.minting &&
        published->state == m.state)
      return;
    membership->update(m);
    published = m;
  }

  void run_pass_reporting() {
    std::lock_guard act(act_mu);
    std::string err;
    try {
      pass();
    } catch (const EtcdError& e) {
      err = e.what();
    } catch (const CellError& e) {
      err = e.what();
    } catch (const hsm::HsmError& e) {
      err = std::string("HSM: ") + e.what();
    } catch (const std::exception& e) {
      err = e.what();
    }
    if (!err.empty() && !degraded) {
      degraded = true;
      emit("loop", "CELL_DEGRADED", "reason=" + err);
    } else if (err.empty() && degraded) {
      degraded = false;
      emit("loop", "CELL_RECOVERED", "endpoint=" + etcd->endpoint());
    }
    flush_audit();
    std::lock_guard lock(mu);
    loop_error = err;
    ++passes;
  }

  void loop_main() {
    std::int64_t watched_from = 0;
    for (;;) {
      {
        std::unique_lock lock(mu);
        if (stopping) return;
      }
      if (!watch) {
        try {
          const EtcdClient::Range r = etcd->get_prefix(key("meta"));
          watched_from = r.revision + 1;
          watch = std::make_unique<EtcdWatch>(
              *etcd, prefix, watched_from,
              [this](const std::vector<WatchEvent>& events) {
                bool relevant = false;
                for (const WatchEvent& e : events)
                  if (e.kv.key.compare(0, prefix.size() + 6, prefix + "audit/") != 0) relevant = true;
                if (!relevant) return;
                {
                  std::lock_guard lock(mu);
                  wake = true;
                }
                cv.notify_all();
              },
              [this](std::int64_t) {
                {
                  std::lock_guard lock(mu);
                  wake = true;
                }
                cv.notify_all();
              });
        } catch (const EtcdError&) {
          // No watch yet: polling goes on; tried again next pass.
        }
      }
      run_pass_reporting();
      std::unique_lock lock(mu);
      cv.wait_for(lock, cfg.poll, [&] { return stopping || wake; });
      wake = false;
      if (stopping) return;
      // Events come in bursts (our own writes too): a short pause merges them.
      cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return stopping; });
    }
  }

  // ---- status ----------------------------------------------------------------
  CellStatus status() {
    CellStatus st;
    st.cell = cfg.cell;
    st.member_id = cfg.member_id;
    st.key_set = cfg.cell;
    st.local_minting = local_minting();
    try {
      if (keys.has_transport_key()) st.fingerprint = keys.transport_public_key().fingerprint;
      Held h = held_here();
      st.held.assign(h.all.begin(), h.all.end());
    } catch (const std::exception& e) {
      st.reason = std::string("HSM: ") + e.what();
    }
    std::set<std::string> trusted;
    try {
      trusted = trusted_here();
    } catch (const std::exception&) {
    }
    bool is_left = false, is_running = false;
    std::string loop_err;
    std::optional<MembershipStatus> ms;
    {
      std::lock_guard lock(mu);
      st.refused = last_refused;
      st.loop_passes = passes;
      is_left = left;
      is_running = running;
      loop_err = loop_error;
      if (membership) ms = membership->status();
    }
    st.etcd_endpoint = etcd->endpoint();
    Store s;
    try {
      s = read_store();
      st.etcd_healthy = true;
    } catch (const EtcdError& e) {
      st.state = "degraded";
      st.reason = e.what();
      return st;
    }
    st.minting = s.minting;
    if (s.rotation) {
      st.rotation_version = s.rotation->version();
      st.rotation_phase = phase_text(s.rotation->phase());
      st.rotation_started_by = s.rotation->started_by();
    }
    std::optional<hsm::VersionRecord> rec;
    if (s.rotation) {
      auto it = s.versions.find(s.rotation->version());
      if (it != s.versions.end()) rec = it->second;
    }
    for (const auto& [id, r] : s.roster) {
      MemberView v;
      v.id = id;
      v.fingerprint = r.fingerprint();
      v.roster_state = roster_text(r.state());
      v.trusted_here = trusted.count(id) != 0;
      if (auto it = s.members.find(id); it != s.members.end()) {
        v.live = true;
        v.held = it->second.held;
        v.minting = it->second.minting;
        v.state = it->second.state;
      }
      if (s.rotation && r.state() == v1::APPROVED) {
        if (s.rotation->phase() == v1::PREPARE) {
          bool acked = false;
          if (rec) {
            try {
              acked = ack_valid(s, *rec, id, nullptr);
            } catch (const std::exception&) {
            }
          }
          if (!acked) st.rotation_waiting_for.push_back(id);
        } else if (s.rotation->phase() == v1::SWITCH) {
          const std::uint32_t m = id == cfg.member_id ? st.local_minting : v.minting;
          if (m != s.rotation->version()) st.rotation_waiting_for.push_back(id);
        }
      }
      st.members.push_back(std::move(v));
    }
    auto self = s.roster.find(cfg.member_id);
    if (is_left || (self != s.roster.end() && self->second.state() == v1::REMOVED)) {
      st.state = "left";
    } else if (ms && ms->state == MembershipState::conflict) {
      st.state = "conflict";
      st.reason = ms->reason;
    } else if (!s.meta) {
      st.state = "degraded";
      st.reason = "no cell '" + cfg.cell + "' in etcd";
    } else if (self == s.roster.end()) {
      st.state = "degraded";
      st.reason = "not in the cell's roster (edgectl cell join)";
    } else if (self->second.state() == v1::PENDING) {
      st.state = "pending";
      st.reason = "waiting for approval: on a member, edgectl cell approve " + cfg.member_id +
                  " --fingerprint " + self->second.fingerprint();
    } else if (is_running && !loop_err.empty()) {
      st.state = "degraded";
      st.reason = loop_err;
    } else if (ms && ms->state == MembershipState::degraded) {
      st.state = "degraded";
      st.reason = ms->reason;
    } else {
      st.state = "joined";
    }
    return st;
  }

  std::vector<MemberView> roster_views(const Store& s) {
    std::set<std::string> trusted = trusted_here();
    std::vector<MemberView> out;
    for (const auto& [id, r] : s.roster) {
      MemberView v;
      v.id = id;
      v.fingerprint = r.fingerprint();
      v.roster_state = roster_text(r.state());
      v.trusted_here = trusted.count(id) != 0;
      if (auto it = s.members.find(id); it != s.members.end()) {
        v.live = true;
        v.held = it->second.held;
        v.minting = it->second.minting;
        v.state = it->second.state;
      }
      out.push_back(std::move(v));
    }
    return out;
  }

  void put_roster(const hsm::TransportPublicKey& k, v1::RosterState state) {
    v1::RosterEntry r;
    r.set_id(cfg.member_id);
    r.set_identity(str(k.identity()));
    r.set_fingerprint(k.fingerprint);
    r.set_state(state);
    r.set_since_unix(now_unix());
    etcd->put(key("roster/" + cfg.member_id), r.SerializeAsString());
  }
};

// ---- CellNode ------------------------------------------------------------------

CellNode::CellNode(hsm::Hsm& hsm, CellConfig config, CellHooks hooks)
    : impl_(std::make_unique<Impl>(hsm, std::move(config), std::move(hooks))) {
  const CellConfig& c = impl_->cfg;
  if (!valid_cell_name(c.cell) || !hsm::valid_key_set_name(c.cell))
    throw CellError("'" + c.cell + "' is not a cell name (1..64 of A-Z a-z 0-9 . _ -)");
  if (!hsm::valid_member_id(c.member_id)) throw CellError("'" + c.member_id + "' is not a member id");
  if (c.etcd.endpoints.empty()) throw CellError("no etcd endpoint (cell.etcd_endpoints)");
  if (c.lease_ttl < std::chrono::seconds(3)) throw CellError("cell lease ttl is at least 3 s");
  if (c.poll < std::chrono::milliseconds(50)) throw CellError("cell poll period is at least 50 ms");
  if (c.retain == 0 || c.retain > hsm::kMaxRetain) throw CellError("cell retain is 1..64");
  impl_->etcd = std::make_unique<EtcdClient>(c.etcd);
}

CellNode::~CellNode() { stop(); }

// Every operator act: serialised with the loop, errors as CellError, audit flushed.
template <typename F>
static auto operator_act(CellNode::Impl& im, const char* what, F&& f) {
  std::lock_guard act(im.act_mu);
  struct Flush {
    CellNode::Impl& im;
    ~Flush() { im.flush_audit(); }
  } flush{im};
  try {
    return f();
  } catch (const CellError&) {
    throw;
  } catch (const EtcdError& e) {
    throw CellError(std::string(what) + ": etcd: " + e.what());
  } catch (const hsm::HsmError& e) {
    throw CellError(std::string(what) + ": HSM: " + e.what());
  } catch (const std::exception& e) {
    throw CellError(std::string(what) + ": " + e.what());
  }
}

void CellNode::create() {
  Impl& im = *impl_;
  operator_act(im, "create", [&] {
    const std::string actor = "operator";
    if (im.etcd->get(im.key("meta")))
      throw CellError("cell '" + im.cfg.cell + "' exists already (join it instead)");
    if (im.hsm.keysets().exists(im.cfg.cell))
      throw CellError("this HSM holds a key set named '" + im.cfg.cell +
                      "' already: a cell's key set is the cell's own (choose another cell name)");
    const hsm::TransportPublicKey k = im.ensure_identity(actor);
    v1::Cell meta;
    meta.set_name(im.cfg.cell);
    meta.set_key_set(im.cfg.cell);
    meta.set_retain(im.cfg.retain);
    meta.set_retire_after_s(im.cfg.retire_after.count());
    meta.set_created_unix(now_unix());
    meta.set_founder(im.cfg.member_id);
    if (!im.etcd->create(im.key("meta"), meta.SerializeAsString()))
      throw CellError("cell '" + im.cfg.cell + "' was created meanwhile by another member");
    im.put_roster(k, v1::APPROVED);
    im.emit(actor, "CELL_CREATED",
            "cell=" + im.cfg.cell + " founder=" + im.cfg.member_id + " fingerprint=" + k.fingerprint);
    v1::Rotation rot;
    rot.set_version(1);
    rot.set_phase(v1::PREPARE);
    rot.set_started_by(im.cfg.member_id);
    rot.set_started_unix(now_unix());
    im.etcd->put(im.key("rotation"), rot.SerializeAsString());
    if (!im.generate_and_publish(actor, 1, im.cfg.retain))
      throw CellError("version 1 was published by another member");
    auto rec = im.keys.record(im.cfg.cell, 1);
    if (!rec) throw CellError("version 1 has no record in this HSM");
    im.write_ack(actor, *rec);
    rot.set_phase(v1::DONE);
    rot.set_switched_unix(now_unix());
    im.etcd->put(im.key("rotation"), rot.SerializeAsString());
    im.etcd->put(im.key("minting"), "1");
    if (im.hooks.switch_minting) im.hooks.switch_minting(im.cfg.cell, 1);
    im.emit(actor, "CELL_SWITCHED", "version=1 from=0");
  });
}

JoinResult CellNode::join() {
  Impl& im = *impl_;
  return operator_act(im, "join", [&] {
    const std::string actor = "operator";
    Store s = im.read_store();
    if (!s.meta) throw CellError("no cell '" + im.cfg.cell + "' in etcd at " + im.etcd->endpoint());
    const hsm::TransportPublicKey k = im.ensure_identity(actor);
    auto it = s.roster.find(im.cfg.member_id);
    if (it != s.roster.end() && it->second.fingerprint() != k.fingerprint &&
        it->second.state() != v1::REMOVED)
      throw CellError("member id '" + im.cfg.member_id + "' is in the roster with another identity (" +
                      it->second.fingerprint() + "): choose another cell.member_id or remove it first");
    if (it == s.roster.end() || it->second.state() == v1::REMOVED ||
        it->second.fingerprint() != k.fingerprint) {
      v1::RosterEntry r;
      r.set_id(im.cfg.member_id);
      r.set_identity(str(k.identity()));
      r.set_fingerprint(k.fingerprint);
      r.set_state(v1::PENDING);
      r.set_since_unix(now_unix());
      if (!im.etcd->compare_and_swap(im.key("roster/" + im.cfg.member_id), s.roster_rev_of(im.cfg.member_id),
                                     r.SerializeAsString()))
        throw CellError("the roster entry of '" + im.cfg.member_id + "' changed meanwhile; try again");
      im.emit(actor, "CELL_JOINED",
              "cell=" + im.cfg.cell + " member=" + im.cfg.member_id +
                  " state=pending fingerprint=" + k.fingerprint);
      s = im.read_store();
    }
    JoinResult res;
    res.member_id = im.cfg.member_id;
    res.fingerprint = k.fingerprint;
    res.members = im.roster_views(s);
    return res;
  });
}

void CellNode::approve(const std::string& member, const std::string& fingerprint) {
  Impl& im = *impl_;
  operator_act(im, "approve", [&] {
    const std::string actor = "operator";
    if (!hsm::valid_member_id(member)) throw CellError("'" + member + "' is not a member id");
    if (member == im.cfg.member_id) throw CellError("a member does not approve itself");
    Store s = im.read_store();
    if (!s.meta) throw CellError("no cell '" + im.cfg.cell + "' in etcd");
    auto self = s.roster.find(im.cfg.member_id);
    if (self == s.roster.end() || self->second.state() == v1::REMOVED)
      throw CellError("this member is not in cell '" + im.cfg.cell + "' (join it first)");
    auto it = s.roster.find(member);
    if (it == s.roster.end()) throw CellError("'" + member + "' is not in the roster (it joins first)");
    const v1::RosterEntry& r = it->second;
    if (r.state() == v1::REMOVED) throw CellError("'" + member + "' was removed; it joins again first");
    std::string computed;
    try {
      computed = hsm::identity_fingerprint(bytes(r.identity()));
    } catch (const hsm::HsmError& e) {
      throw CellError("the roster identity of '" + member + "' does not parse: " + e.what());
    }
    if (fingerprint != r.fingerprint() || computed != r.fingerprint())
      throw CellError("fingerprint mismatch for '" + member + "': the roster holds " + computed +
                      ", you gave " + fingerprint + "; nothing admitted");
    if (!im.trusted_here().count(member)) {
      if (!im.hooks.admit) throw CellError("no admission hook");
      im.hooks.admit(member, bytes(r.identity()), fingerprint);
      im.emit(actor, "CELL_ADMITTED",
              "member=" + member + " fingerprint=" + fingerprint + " approved_by=operator");
    }
    v1::Approval a;
    a.set_member(member);
    a.set_fingerprint(fingerprint);
    a.set_approver(im.cfg.member_id);
    a.set_signature(str(im.keys.sign(approval_bytes(im.cfg.cell, member, fingerprint, im.cfg.member_id))));
    im.etcd->put(im.key("approvals/" + im.cfg.member_id + "/" + member), a.SerializeAsString());
    if (r.state() == v1::PENDING) {
      v1::RosterEntry next = r;
      next.set_state(v1::APPROVED);
      next.set_since_unix(now_unix());
      if (!im.etcd->compare_and_swap(im.key("roster/" + member), s.roster_rev_of(member),
                                     next.SerializeAsString()))
        throw CellError("the roster entry of '" + member + "' changed meanwhile; approve again");
    }
    im.emit(actor, "CELL_APPROVED", "member=" + member + " fingerprint=" + fingerprint);
  });
  {
    std::lock_guard lock(im.mu);
    im.wake = true;
  }
  im.cv.notify_all();
}

std::uint32_t CellNode::rotate() {
  Impl& im = *impl_;
  const std::uint32_t n = operator_act(im, "rotate", [&]() -> std::uint32_t {
    const std::string actor = "operator";
    Store s = im.read_store();
    if (!s.meta) throw CellError("no cell '" + im.cfg.cell + "' in etcd");
    auto self = s.roster.find(im.cfg.member_id);
    if (self == s.roster.end() || self->second.state() != v1::APPROVED)
      throw CellError("this member is not an approved member of '" + im.cfg.cell + "'");
    if (s.rotation && (s.rotation->phase() == v1::PREPARE || s.rotation->phase() == v1::SWITCH))
      throw CellError("rotation to v" + std::to_string(s.rotation->version()) + " is in phase " +
                      phase_text(s.rotation->phase()) + " (started by " + s.rotation->started_by() + ")");
    std::uint32_t top = s.minting;
    if (s.rotation) top = std::max(top, s.rotation->version());
    if (!s.versions.empty()) top = std::max(top, s.versions.rbegin()->first);
    for (const auto& [id, m] : s.members)
      if (!m.held.empty()) top = std::max(top, m.held.back());
    const Impl::Held held = im.held_here();
    if (!held.all.empty()) top = std::max(top, *held.all.rbegin());
    const std::uint32_t next = top + 1;
    v1::Rotation rot;
    rot.set_version(next);
    rot.set_phase(v1::PREPARE);
    rot.set_started_by(im.cfg.member_id);
    rot.set_started_unix(now_unix());
    if (!im.etcd->compare_and_swap(im.key("rotation"), s.rotation_rev, rot.SerializeAsString()))
      throw CellError("another member started a rotation meanwhile (edgectl cell status)");
    im.emit(actor, "CELL_ROTATION_PHASE",
            "version=" + std::to_string(next) + " phase=prepare started_by=" + im.cfg.member_id);
    if (im.generate_and_publish(actor, next, im.retain_of(s))) {
      Store again = im.read_store();
      std::vector<std::string> refused;
      auto valid = im.valid_versions(again, refused);
      if (valid.count(next)) im.write_ack(actor, valid.at(next));
      im.write_blobs(actor, again, valid, im.held_here(), im.trusted_here());
    }
    return next;
  });
  {
    std::lock_guard lock(im.mu);
    im.wake = true;
  }
  im.cv.notify_all();
  return n;
}

void CellNode::remove(const std::string& member) {
  Impl& im = *impl_;
  operator_act(im, "remove", [&] {
    const std::string actor = "operator";
    Store s = im.read_store();
    auto it = s.roster.find(member);
    if (it == s.roster.end()) throw CellError("'" + member + "' is not in the roster");
    if (it->second.state() != v1::REMOVED) {
      v1::RosterEntry next = it->second;
      next.set_state(v1::REMOVED);
      next.set_since_unix(now_unix());
      if (!im.etcd->compare_and_swap(im.key("roster/" + member), s.roster_rev_of(member),
                                     next.SerializeAsString()))
        throw CellError("the roster entry of '" + member + "' changed meanwhile; remove again");
    }
    // Its approvals go (another member's re-admission needs a new approval).
    for (const auto& [k, a] : s.approvals)
      if (k.second == member || k.first == member)
        im.etcd->remove(im.key("approvals/" + k.first + "/" + k.second));
    if (member != im.cfg.member_id && im.keys.remove_peer(member))
      im.emit(actor, "CELL_MEMBER_REMOVED", "member=" + member + " trust=removed");
    else
      im.emit(actor, "CELL_MEMBER_REMOVED", "member=" + member);
  });
  {
    std::lock_guard lock(im.mu);
    im.wake = true;
  }
  im.cv.notify_all();
}

void CellNode::leave() {
  Impl& im = *impl_;
  operator_act(im, "leave", [&] {
    Store s = im.read_store();
    auto it = s.roster.find(im.cfg.member_id);
    if (it != s.roster.end() && it->second.state() != v1::REMOVED) {
      v1::RosterEntry next = it->second;
      next.set_state(v1::REMOVED);
      next.set_since_unix(now_unix());
      im.etcd->put(im.key("roster/" + im.cfg.member_id), next.SerializeAsString());
    }
    im.emit("operator", "CELL_LEFT", "member=" + im.cfg.member_id);
  });
  stop();
  std::lock_guard lock(im.mu);
  im.left = true;
}

CellStatus CellNode::status() { return impl_->status(); }

void CellNode::start() {
  Impl& im = *impl_;
  std::lock_guard lock(im.mu);
  if (im.running) return;
  im.left = false;
  hsm::TransportPublicKey k;
  try {
    k = im.keys.transport_public_key();
  } catch (const hsm::HsmError& e) {
    throw CellError(std::string("start: this HSM has no cell identity (create or join first): ") + e.what());
  }
  MemberInfo self;
  self.id = im.cfg.member_id;
  self.identity = k.identity();
  self.fingerprint = k.fingerprint;
  self.version = im.cfg.version;
  self.joined_unix = now_unix();
  im.published.reset();
  im.membership = std::make_unique<Membership>(*im.etcd, im.cfg.cell, self, im.cfg.lease_ttl);
  im.stopping = false;
  im.running = true;
  im.loop = std::thread([&im] { im.loop_main(); });
}

void CellNode::stop() {
  Impl& im = *impl_;
  std::unique_ptr<Membership> membership;
  {
    std::lock_guard lock(im.mu);
    if (!im.running) return;
    im.stopping = true;
  }
  im.cv.notify_all();
  im.loop.join();
  std::unique_ptr<EtcdWatch> watch;
  {
    std::lock_guard lock(im.mu);
    im.running = false;
    watch = std::move(im.watch);
    membership = std::move(im.membership);
  }
  watch.reset();       // stops its thread
  membership.reset();  // revokes the lease: the member record goes at once
}

void CellNode::step() { impl_->run_pass_reporting(); }

}  // namespace edge::cell
