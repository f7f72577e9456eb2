// edgectl's human-readable output of the management API's messages.
#include "edgectl_print.h"

#include <algorithm>
#include <cctype>
#include <ctime>

namespace edgectl {
namespace v1 = edge::mgmt::v1;

namespace {

std::string yes_no(bool b) { return b ? "yes" : "no"; }

// "TRANSPORT_UDP" -> "udp", "RESTART_FRONT_END" -> "front-end": the enum without its prefix.
std::string enum_word(const std::string& name, const std::string& prefix) {
  std::string s = name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
  for (char& ch : s) ch = ch == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string restart_word(v1::RestartClass r) {
  if (r == v1::RESTART_CLASS_UNSPECIFIED) return "-";
  return enum_word(v1::RestartClass_Name(r), "RESTART_");
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

std::string versions_where(const v1::KeySet& k, bool (*pick)(const v1::KeyVersion&)) {
  std::vector<std::string> out;
  for (const auto& v : k.versions())
    if (pick(v)) out.push_back(std::to_string(v.version()));
  return out.empty() ? "-" : join(out, ",");
}

}  // namespace

Fields& Fields::add(std::string key, std::string value) {
  rows_.emplace_back(std::move(key), std::move(value));
  return *this;
}

void Fields::print(std::ostream& out) const {
  std::size_t width = 0;
  for (const auto& [k, v] : rows_) width = std::max(width, k.size());
  for (const auto& [k, v] : rows_) {
    out << k << ':';
    if (!v.empty()) out << std::string(width - k.size() + 1, ' ') << v;
    out << '\n';
  }
}

Table::Table(std::vector<std::string> headers) { rows_.push_back(std::move(headers)); }

Table& Table::add(std::vector<std::string> row) {
  rows_.push_back(std::move(row));
  return *this;
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> width;
  for (const auto& row : rows_) {
    width.resize(std::max(width.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      out << row[i];
      if (i + 1 < row.size()) out << std::string(width[i] - row[i].size() + 2, ' ');
    }
    out << '\n';
  }
}

std::string utc_time_ms(std::int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void print_status(std::ostream& out, const v1::Status& s) {
  Fields f;
  f.add("version", s.version()).add("uptime", std::to_string(s.uptime_seconds()) + " s");
  f.add("generation", std::to_string(s.generation())).add("staged changes", yes_no(s.staged_changes()));
  if (s.has_pending() && s.pending().generation() != 0) {
    f.add("pending confirm", "generation " + std::to_string(s.pending().generation()) + " until " +
                                 utc_time_ms(s.pending().deadline_unix_ms()) + ", else back to " +
                                 std::to_string(s.pending().previous_generation()));
  }
  const v1::FrontEndStatus& fe = s.front_end();
  f.add("front end", or_dash(fe.state()));
  f.add("  key set", fe.key_set().empty()
                         ? "- (flow-token security off)"
                         : fe.key_set() + " (minting v" + std::to_string(fe.minting_version()) + ")");
  std::vector<std::string> flows;
  for (const auto& fc : fe.flows())
    flows.push_back(enum_word(v1::Transport_Name(fc.transport()), "TRANSPORT_") + " " +
                    std::to_string(fc.flows()));
  f.add("  flows", flows.empty() ? "0" : join(flows, ", "));
  f.add("  connections", std::to_string(fe.connections()));
  f.add("  core", fe.core_connected() ? "connected" : "not connected");
  for (const auto& c : fe.cores()) {
    std::string line =
        c.uri() + " priority " + std::to_string(c.priority()) + " weight " + std::to_string(c.weight()) +
        ": " + c.state() + ", requests " + std::to_string(c.requests()) + ", messages out " +
        std::to_string(c.messages_out()) + " in " + std::to_string(c.messages_in()) + ", health checks " +
        std::to_string(c.health_answers()) + "/" + std::to_string(c.health_pings()) + " answered, " +
        std::to_string(c.health_failures()) + " failed, disconnects " + std::to_string(c.disconnects());
    if (!c.last_error().empty()) line += ", last error: " + c.last_error();
    f.add("  core " + std::to_string(c.priority()), line);
  }
  f.add("  requests", "from clients " + std::to_string(fe.requests_from_clients()) + ", from core " +
                          std::to_string(fe.requests_from_core()));
  f.add("  restarts", std::to_string(fe.restarts()));
  const v1::ProxyProtocolStatus& pp = fe.proxy_protocol();
  f.add("  proxy protocol",
        "accepted " + std::to_string(pp.accepted()) + ", refused untrusted " +
            std::to_string(pp.refused_untrusted()) + ", missing " + std::to_string(pp.refused_missing()) +
            ", malformed " + std::to_string(pp.refused_malformed()) + ", unsupported " +
            std::to_string(pp.refused_unsupported()) + ", timeout " + std::to_string(pp.refused_timeout()));
  const v1::HsmWorkStatus& w = fe.hsm_work();
  f.add("  hsm work", std::to_string(w.threads()) + " threads, queued " + std::to_string(w.queued()) + "/" +
                          std::to_string(w.max_queued()) + ", running " + std::to_string(w.running()) +
                          ", parked " + std::to_string(w.parked()) + ", longest wait " +
                          std::to_string(w.wait_max_us()) + " us");
  f.add("  hsm refused", "source budget " + std::to_string(w.refused_budget()) + ", queue full " +
                             std::to_string(w.refused_queue_full()) + ", shed " + std::to_string(w.shed()) +
                             " (UDP dropped " + std::to_string(w.dropped_udp()) + "), flow gone " +
                             std::to_string(w.resume_dropped()) + ", forged tokens cached " +
                             std::to_string(w.negative_cache_hits()));
  const v1::HsmStatus& h = s.hsm();
  f.add("hsm", or_dash(h.state()));
  f.add("  token", or_dash(h.token_label())).add("  module", or_dash(h.module_description()));
  f.add("  operations", "sign " + std::to_string(h.sign_ops()) + ", verify " +
                            std::to_string(h.verify_ops()) + ", errors " + std::to_string(h.errors()));
  f.add("  sessions open", std::to_string(h.sessions_open()));
  if (!h.last_error().empty()) f.add("  last error", h.last_error());
  const v1::ConfigStoreStatus& cs = s.config_store();
  std::string store = or_dash(cs.state());
  if (cs.state() == "newest_refused") {
    store += " (generation " + std::to_string(cs.newest_on_disk()) + " refused, running " +
             std::to_string(cs.newest_good()) + ")";
  }
  f.add("config store", store + (cs.sealed() ? ", sealed by the HSM" : ""));
  for (const auto& r : cs.refused()) f.add("  refused " + r.file(), r.reason());
  const v1::CellSummary& cell = s.cell();
  if (cell.name().empty()) {
    f.add("cell", "- (not a member)");
  } else {
    std::string line = cell.name() + " as " + or_dash(cell.member_id()) + ": " + or_dash(cell.state());
    line += ", cell minting v" + std::to_string(cell.minting()) + ", this member v" +
            std::to_string(cell.local_minting());
    line +=
        ", members " + std::to_string(cell.live_members()) + "/" + std::to_string(cell.members()) + " live";
    line += ", rotation " + (cell.rotation_phase().empty()
                                 ? std::string("-")
                                 : cell.rotation_phase() + " v" + std::to_string(cell.rotation_version()));
    line += cell.etcd_healthy() ? ", etcd ok" : ", etcd unreachable";
    f.add("cell", line);
    if (!cell.reason().empty()) f.add("  reason", cell.reason());
  }
  f.print(out);
}

namespace {
std::string versions_text(const google::protobuf::RepeatedField<std::uint32_t>& held) {
  std::vector<std::string> out;
  for (auto v : held) out.push_back("v" + std::to_string(v));
  return out.empty() ? "-" : join(out, ",");
}

void print_members(std::ostream& out, const google::protobuf::RepeatedPtrField<v1::CellMember>& members) {
  Table t({"MEMBER", "ROSTER", "LIVE", "TRUSTED-HERE", "HOLDS", "MINTING", "STATE", "FINGERPRINT"});
  for (const auto& m : members) {
    t.add({m.id(), or_dash(m.roster_state()), yes_no(m.live()), yes_no(m.trusted_here()),
           versions_text(m.held()), m.minting() == 0 ? "-" : "v" + std::to_string(m.minting()),
           or_dash(m.state()), or_dash(m.fingerprint())});
  }
  t.print(out);
}
}  // namespace

void print_cell_status(std::ostream& out, const v1::CellStatusResponse& s) {
  Fields f;
  f.add("cell", s.cell()).add("member", s.member_id()).add("fingerprint", or_dash(s.fingerprint()));
  f.add("state", or_dash(s.state()) + (s.reason().empty() ? "" : " (" + s.reason() + ")"));
  f.add("key set", or_dash(s.key_set()));
  f.add("etcd", (s.etcd_healthy() ? "ok via " : "unreachable, last ") + or_dash(s.etcd_endpoint()));
  f.add("cell minting", s.minting() == 0 ? "-" : "v" + std::to_string(s.minting()));
  f.add("this member mints", s.local_minting() == 0 ? "-" : "v" + std::to_string(s.local_minting()));
  f.add("this HSM holds", versions_text(s.held()));
  std::string rot = s.rotation_phase().empty()
                        ? "-"
                        : s.rotation_phase() + " v" + std::to_string(s.rotation_version()) + " started by " +
                              or_dash(s.rotation_started_by());
  f.add("rotation", rot);
  if (!s.rotation_waiting_for().empty()) {
    std::vector<std::string> w(s.rotation_waiting_for().begin(), s.rotation_waiting_for().end());
    f.add("  waiting for", join(w, ", "));
  }
  for (const auto& r : s.refused()) f.add("refused", r);
  f.print(out);
  out << '\n';
  print_members(out, s.members());
}

void print_cell_join(std::ostream& out, const v1::CellJoinResponse& r) {
  Fields().add("member", r.member_id()).add("fingerprint", r.fingerprint()).print(out);
  out << '\n';
  if (r.members().empty()) {
    out << "No other member found in the cell.\n";
    return;
  }
  out << "Members found:\n";
  print_members(out, r.members());
  out << "\nCompare the fingerprints out of band (read them on each member's console), then approve\n"
         "both ways:\n"
         "  on an existing member:  edgectl cell approve "
      << r.member_id() << " --fingerprint " << r.fingerprint() << '\n';
  for (const auto& m : r.members()) {
    if (m.roster_state() != "approved") continue;
    out << "  on this member:        edgectl cell approve " << m.id() << " --fingerprint " << m.fingerprint()
        << '\n';
  }
}

void print_key_sets(std::ostream& out, const v1::ListKeySetsResponse& r) {
  Table t({"NAME", "ACTIVE", "RETIRED", "MINTING", "AFTER-APPLY", "RETAIN", "IN-USE"});
  for (const auto& k : r.key_sets()) {
    t.add({k.name(), versions_where(k, [](const v1::KeyVersion& v) { return v.active(); }),
           versions_where(k, [](const v1::KeyVersion& v) { return !v.active(); }),
           versions_where(k, [](const v1::KeyVersion& v) { return v.minting(); }),
           versions_where(k, [](const v1::KeyVersion& v) { return v.staged_minting(); }),
           std::to_string(k.retain()), yes_no(k.in_use())});
  }
  t.print(out);
}

void print_key_set(std::ostream& out, const v1::KeySet& k) {
  Fields()
      .add("name", k.name())
      .add("retain", std::to_string(k.retain()))
      .add("in use", yes_no(k.in_use()))
      .print(out);
  Table t({"VERSION", "STATE", "CREATED", "MINTING", "AFTER-APPLY"});
  for (const auto& v : k.versions()) {
    t.add({std::to_string(v.version()), v.active() ? "active" : "retired",
           utc_time_ms(v.created_unix() * 1000), v.minting() ? "yes" : "-",
           v.staged_minting() ? "yes" : "-"});
  }
  t.print(out);
}

void print_key_set_change(std::ostream& out, const v1::KeySetChange& c) {
  print_key_set(out, c.key_set());
  Fields f;
  f.add("staged", c.staged() ? "yes (takes effect at the next apply)" : "no");
  if (!c.note().empty()) f.add("note", c.note());
  f.print(out);
}

void print_properties(std::ostream& out, const v1::ListPropertiesResponse& r) {
  Table t({"NAME", "VALUE", "STAGED", "RESTART"});
  for (const auto& p : r.properties())
    t.add({p.name(), or_dash(p.value()), p.staged() ? "-> " + or_dash(p.staged_value()) : "",
           restart_word(p.restart())});
  t.print(out);
}

void print_property(std::ostream& out, const v1::Property& p) {
  Fields f;
  f.add("name", p.name()).add("value", p.value());
  if (p.staged()) f.add("staged value", p.staged_value() + " (after apply)");
  f.add("default", p.default_value()).add("type", p.type());
  if (p.allowed_size() > 0) f.add("allowed", join({p.allowed().begin(), p.allowed().end()}, ", "));
  f.add("restart", restart_word(p.restart()));
  if (p.aliases_size() > 0) f.add("aliases", join({p.aliases().begin(), p.aliases().end()}, ", "));
  f.add("description", p.description());
  f.print(out);
}

void print_config(std::ostream& out, const v1::GetConfigResponse& c, const v1::ListPropertiesResponse& props,
                  bool staged) {
  out << "# generation " << c.generation() << (staged ? ", with the staged changes" : ", committed") << '\n';
  if (staged) {
    if (c.staged().empty()) out << "# nothing staged\n";
    for (const auto& s : c.staged()) out << "# staged: " << s << '\n';
  }
  for (const auto& p : props.properties())
    out << p.name() << " = " << (staged && p.staged() ? p.staged_value() : p.value()) << '\n';
}

void print_apply(std::ostream& out, const v1::ApplyResponse& r) {
  Fields f;
  f.add("generation", std::to_string(r.generation()));
  if (r.pending_confirm())
    f.add("pending confirm", "until " + utc_time_ms(r.confirm_deadline_unix_ms()) + " (edgectl confirm)");
  f.add("restart", restart_word(r.restart())).add("drain", std::to_string(r.drain_ms()) + " ms");
  if (r.replayed()) f.add("replayed", "yes (answer of the earlier apply with this request id)");
  f.add("changes", r.changes().empty() ? "none" : std::to_string(r.changes_size()));
  f.print(out);
  for (const auto& ch : r.changes()) out << "  " << ch << '\n';
}

void print_generations(std::ostream& out, const v1::ListGenerationsResponse& r) {
  Table t({"", "GENERATION", "COMMITTED", "ACTOR", "SUMMARY"});
  for (const auto& g : r.generations()) {
    std::string summary = g.summary();
    if (g.rolled_back_from() != 0) {
      summary.insert(
          0, std::string("(rollback from ").append(std::to_string(g.rolled_back_from())).append(") "));
    }
    t.add({g.current() ? "*" : "", std::to_string(g.generation()), utc_time_ms(g.committed_unix_ms()),
           or_dash(g.actor()), summary});
  }
  t.print(out);
}

void print_event(std::ostream& out, const v1::Event& e) {
  out << utc_time_ms(e.time_unix_ms()) << ' ' << enum_word(v1::Event_Kind_Name(e.kind()), "") << ' '
      << (e.ok() ? "ok" : "failed") << " generation=" << e.generation() << " actor=" << or_dash(e.actor());
  if (!e.message().empty()) out << ' ' << e.message();
  out << std::endl;  // flushed: a watcher piping this wants each event as it happens
}

}  // namespace edgectl
