// CellLink: the agent's cell acts and the CellNode's hooks (see cell_link.h).
#include "cell_link.h"

#include <edge/cell/cell.h>
#include <edge/hsm/cell_keys.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <stdexcept>

namespace edge::mgmt::agent_parts {
namespace {

using namespace std::chrono_literals;

// How long an agent change waits for an operator's apply in progress before it gives up.
constexpr auto kApplyRetryFor = 10s;
constexpr auto kApplyRetryStep = 100ms;
// A status read of the cell that has not come back in this long: etcd is not answering.
constexpr auto kSlowRefresh = 3s;

std::filesystem::path under(const std::filesystem::path& state_dir, const std::string& p) {
  if (p.empty()) return {};
  std::filesystem::path path(p);
  return path.is_absolute() ? path : state_dir / path;
}

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

std::string member_id_of(const v1::ApplianceConfig& c) {
  return c.cell().member_id().empty() ? host_name() : c.cell().member_id();
}

// What the CellNode and the HSM throw, as the operator's answer.
[[noreturn]] void rethrow_as_mgmt(const std::string& act) {
  try {
    throw;
  } catch (const MgmtError&) {
    throw;
  } catch (const cell::CellError& e) {
    throw MgmtError(ErrorCode::failed_precondition, act + ": " + e.what());
  } catch (const hsm::CellKeyError& e) {
    throw MgmtError(ErrorCode::failed_precondition, act + ": " + e.what());
  } catch (const cell::EtcdError& e) {
    throw MgmtError(ErrorCode::unavailable, act + ": etcd: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw MgmtError(ErrorCode::invalid_argument, act + ": " + e.what());
  } catch (const std::exception& e) {
    throw MgmtError(ErrorCode::internal, act + ": " + e.what());
  }
}

void fill(v1::CellMember& out, const cell::MemberView& m) {
  out.set_id(m.id);
  out.set_fingerprint(m.fingerprint);
  out.set_roster_state(m.roster_state);
  out.set_live(m.live);
  out.set_trusted_here(m.trusted_here);
  for (auto v : m.held) out.add_held(v);
  out.set_minting(m.minting);
  out.set_state(m.state);
}

v1::CellStatusResponse to_proto(const cell::CellStatus& s) {
  v1::CellStatusResponse out;
  out.set_cell(s.cell);
  out.set_member_id(s.member_id);
  out.set_key_set(s.key_set);
  out.set_fingerprint(s.fingerprint);
  out.set_state(s.state);
  out.set_reason(s.reason);
  out.set_etcd_healthy(s.etcd_healthy);
  out.set_etcd_endpoint(s.etcd_endpoint);
  out.set_minting(s.minting);
  out.set_local_minting(s.local_minting);
  for (auto v : s.held) out.add_held(v);
  out.set_rotation_version(s.rotation_version);
  out.set_rotation_phase(s.rotation_phase);
  out.set_rotation_started_by(s.rotation_started_by);
  for (const auto& w : s.rotation_waiting_for) out.add_rotation_waiting_for(w);
  for (const auto& m : s.members) fill(*out.add_members(), m);
  for (const auto& r : s.refused) out.add_refused(r);
  return out;
}

v1::CellSummary summarize(const v1::CellStatusResponse& s) {
  v1::CellSummary out;
  out.set_name(s.cell());
  out.set_member_id(s.member_id());
  out.set_state(s.state());
  out.set_reason(s.reason());
  out.set_minting(s.minting());
  out.set_local_minting(s.local_minting());
  out.set_rotation_phase(s.rotation_phase());
  out.set_rotation_version(s.rotation_version());
  out.set_etcd_healthy(s.etcd_healthy());
  std::uint32_t approved = 0, live = 0;
  for (const auto& m : s.members()) {
    if (m.roster_state() != "approved") continue;
    ++approved;
    if (m.live()) ++live;
  }
  out.set_members(approved);
  out.set_live_members(live);
  return out;
}

// "http://h:p" -> "h:p"; the scheme says whether TLS is used.
std::string host_port(std::string url, bool& tls) {
  const auto sep = url.find("://");
  tls = sep != std::string::npos && url.compare(0, sep, "https") == 0;
  if (sep != std::string::npos) url.erase(0, sep + 3);
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

// The arguments that select this appliance's token for edge-hsm, from its hsm.* settings.
std::vector<std::string> token_args(const v1::HsmSettings& h, const std::filesystem::path& state_dir) {
  std::vector<std::string> a;
  if (h.module().empty() || h.module() == "softhsm-lab") {
    a = {"--state-dir", state_dir.string()};
    if (!h.token_label().empty()) a.insert(a.end(), {"--token", h.token_label()});
    return a;
  }
  a = {"--module", h.module()};
  if (!h.token_uri().empty()) {
    a.insert(a.end(), {"--token-uri", h.token_uri()});
  } else if (!h.token_label().empty()) {
    a.insert(a.end(), {"--token", h.token_label()});
  }
  if (!h.pin_file().empty()) {
    a.insert(a.end(), {"--pin-file", under(state_dir, h.pin_file()).string()});
  } else if (!h.pin_env().empty()) {
    a.insert(a.end(), {"--pin-env", h.pin_env()});
  }
  return a;
}

}  // namespace

CellLink::CellLink(hsm::Hsm& hsm, std::filesystem::path state_dir, std::filesystem::path edge_hsm,
                   std::string version, Hooks hooks)
    : hsm_(hsm),
      state_dir_(std::move(state_dir)),
      edge_hsm_([&edge_hsm] {
        if (!edge_hsm.empty()) return edge_hsm;
        std::error_code ec;
        const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
        return ec ? std::filesystem::path("edge-hsm") : self.parent_path() / "edge-hsm";
      }()),
      version_(std::move(version)),
      hooks_(std::move(hooks)) {
  summary_thread_ = std::thread([this] { summary_loop(); });
}

CellLink::~CellLink() {
  stop();
  {
    std::lock_guard lock(summary_mu_);
    stopping_ = true;
  }
  summary_cv_.notify_all();
  if (summary_thread_.joinable()) summary_thread_.join();
}

std::shared_ptr<cell::CellNode> CellLink::node() const {
  std::lock_guard lock(node_mu_);
  return node_;
}

void CellLink::apply(const std::string& actor, const Edits& edits) {
  const auto until = std::chrono::steady_clock::now() + kApplyRetryFor;
  for (;;) {
    try {
      hooks_.apply(actor, edits);
      return;
    } catch (const MgmtError& e) {
      if (e.code() != ErrorCode::aborted || std::chrono::steady_clock::now() >= until) throw;
    }
    std::this_thread::sleep_for(kApplyRetryStep);
  }
}

std::shared_ptr<cell::CellNode> CellLink::build(const v1::ApplianceConfig& c) {
  const v1::CellSettings& s = c.cell();
  cell::CellConfig cc;
  cc.cell = s.name();
  cc.member_id = member_id_of(c);
  if (!hsm::valid_member_id(cc.member_id)) {
    throw MgmtError(
        ErrorCode::failed_precondition,
        "the host name '" + cc.member_id +
            "' is not a member id (1..64 of A-Z a-z 0-9 . _ -): set cell.member_id (or --member-id)");
  }
  if (s.etcd_endpoints().empty())
    throw MgmtError(ErrorCode::failed_precondition, "cell.etcd_endpoints is empty: the cell needs its etcd");
  bool tls = false;
  for (const auto& e : s.etcd_endpoints()) cc.etcd.endpoints.push_back(host_port(e, tls));
  if (tls) {
    if (s.etcd_ca_file().empty()) {
      throw MgmtError(ErrorCode::failed_precondition,
                      "https etcd endpoints need cell.etcd_ca_file (the CA that signed etcd's certificates)");
    }
    if (s.etcd_cert_file().empty() != s.etcd_key_file().empty()) {
      throw MgmtError(ErrorCode::failed_precondition,
                      "cell.etcd_cert_file and cell.etcd_key_file go together (set both or neither)");
    }
    cell::EtcdTls t;
    t.ca_file = under(state_dir_, s.etcd_ca_file()).string();
    t.cert_file = under(state_dir_, s.etcd_cert_file()).string();
    t.key_file = under(state_dir_, s.etcd_key_file()).string();
    cc.etcd.tls = t;
  }
  cc.lease_ttl = std::chrono::seconds(s.has_lease_ttl_s() ? s.lease_ttl_s() : 10);
  cc.retire_after = std::chrono::seconds(s.has_retire_after_s() ? s.retire_after_s() : 7200);
  // Unset: EtcdOptions' and CellConfig's own defaults (the properties' defaults).
  if (s.has_etcd_timeout_ms()) cc.etcd.call_timeout = std::chrono::milliseconds(s.etcd_timeout_ms());
  if (s.has_poll_ms()) cc.poll = std::chrono::milliseconds(s.poll_ms());
  cc.version = version_;

  const std::filesystem::path so_pin =
      under(state_dir_, s.so_pin_file().empty() ? "hsm/so-pin" : s.so_pin_file());
  cell::CellHooks h;
  h.admit = cell::admit_with_edge_hsm(edge_hsm_, token_args(c.hsm(), state_dir_), so_pin);
  h.switch_minting = [this](const std::string& key_set, std::uint32_t version) {
    if (version == 0) throw std::invalid_argument("a cell never mints with version 0");
    apply("cell",
          {{"sip.flow_token.key_set", key_set}, {"sip.flow_token.key_version", std::to_string(version)}});
  };
  h.minting = [this, set = cc.cell]() -> std::uint32_t {
    const auto [fe_set, version] = hooks_.front_end_minting();
    return fe_set == set ? version : 0;
  };
  h.event = [this](const std::string& kind, const std::string& detail) {
    // A version imported, retired or destroyed: the front end's key-set view learns it now,
    // so that another member's tokens under a new version verify here at once.
    if (kind.rfind("CELL_VERSION", 0) == 0 || kind == "CELL_MEMBER_REMOVED") hooks_.key_sets_changed();
    hooks_.event(kind, detail);
  };
  try {
    return std::make_shared<cell::CellNode>(hsm_, std::move(cc), std::move(h));
  } catch (...) {
    rethrow_as_mgmt("cell");
  }
}

void CellLink::start() {
  std::lock_guard op(op_mu_);
  const v1::ApplianceConfig c = hooks_.committed();
  if (c.cell().name().empty() || node()) return;
  try {
    auto n = build(c);
    n->start();
    {
      std::lock_guard lock(node_mu_);
      node_ = std::move(n);
    }
    spdlog::info("event=cell_started cell={}", c.cell().name());
  } catch (const std::exception& e) {
    spdlog::error("event=cell_start_failed cell={} reason=\"{}\"", c.cell().name(), e.what());
    std::lock_guard lock(summary_mu_);
    summary_.Clear();
    summary_.set_name(c.cell().name());
    summary_.set_state("failed");
    summary_.set_reason(e.what());
    return;
  }
  refresh_summary();
}

void CellLink::stop() {
  std::lock_guard op(op_mu_);
  std::shared_ptr<cell::CellNode> n;
  {
    std::lock_guard lock(node_mu_);
    n = std::move(node_);
  }
  if (n) n->stop();
}

template <class Act>
auto CellLink::enter(const std::string& actor, const std::string& name, const std::string& endpoints,
                     const std::string& member_id, std::string& detail, Act&& act) {
  const PropertyRegistry& reg = PropertyRegistry::instance();
  if (name.empty()) throw MgmtError(ErrorCode::invalid_argument, "the cell needs a name");
  if (endpoints.empty())
    throw MgmtError(ErrorCode::invalid_argument, "the cell needs its etcd endpoints (--etcd URLS)");
  const v1::ApplianceConfig before = hooks_.committed();
  if (!before.cell().name().empty()) {
    throw MgmtError(ErrorCode::failed_precondition, "this appliance is a member of cell '" +
                                                        before.cell().name() +
                                                        "' already (edgectl cell leave first)");
  }
  Edits edits = {{"cell.name", name}, {"cell.etcd_endpoints", endpoints}};
  if (!member_id.empty()) edits.emplace_back("cell.member_id", member_id);
  // Checked in full before anything is applied: a bad value is the operator's to fix.
  v1::ApplianceConfig next = before;
  for (const auto& [k, v] : edits) reg.set(next, k, v);
  auto n = build(next);
  detail += " member=" + member_id_of(next);
  Edits undo;
  for (const auto& [k, v] : edits) undo.emplace_back(k, reg.get(before, k));
  apply(actor, edits);
  try {
    auto result = act(*n);
    n->start();
    {
      std::lock_guard lock(node_mu_);
      node_ = std::move(n);
    }
    return result;
  } catch (...) {
    n.reset();
    try {
      apply(actor, undo);
    } catch (const std::exception& e) {
      spdlog::error("event=cell_undo_failed reason=\"{}\"", e.what());
    }
    rethrow_as_mgmt("cell");
  }
}

v1::CellStatusResponse CellLink::create(const std::string& actor, const v1::CellCreateRequest& r,
                                        std::string& detail) {
  std::lock_guard op(op_mu_);
  auto st = enter(actor, r.name(), r.etcd_endpoints(), r.member_id(), detail, [](cell::CellNode& n) {
    n.create();
    return to_proto(n.status());
  });
  refresh_summary();
  return st;
}

v1::CellJoinResponse CellLink::join(const std::string& actor, const v1::CellJoinRequest& r,
                                    std::string& detail) {
  std::lock_guard op(op_mu_);
  auto resp = enter(actor, r.name(), r.etcd_endpoints(), r.member_id(), detail, [](cell::CellNode& n) {
    const cell::JoinResult j = n.join();
    v1::CellJoinResponse out;
    out.set_member_id(j.member_id);
    out.set_fingerprint(j.fingerprint);
    for (const auto& m : j.members) fill(*out.add_members(), m);
    return out;
  });
  refresh_summary();
  return resp;
}

namespace {
std::shared_ptr<cell::CellNode> need(std::shared_ptr<cell::CellNode> n) {
  if (!n) {
    throw MgmtError(ErrorCode::failed_precondition,
                    "this appliance is not a member of a cell (edgectl cell create / join)");
  }
  return n;
}
}  // namespace

v1::CellStatusResponse CellLink::approve(const v1::CellApproveRequest& r) {
  std::lock_guard op(op_mu_);
  if (!hsm::valid_member_id(r.member()))
    throw MgmtError(ErrorCode::invalid_argument, "'" + r.member() + "' is not a member id");
  if (r.fingerprint().rfind("sha256:", 0) != 0 || r.fingerprint().size() != 7 + 64)
    throw MgmtError(ErrorCode::invalid_argument,
                    "--fingerprint: expected sha256:<64 hex digits>, as `edgectl cell join` printed it");
  auto n = need(node());
  try {
    n->approve(r.member(), r.fingerprint());
  } catch (...) {
    rethrow_as_mgmt("approve " + r.member());
  }
  refresh_summary();
  return to_proto(n->status());
}

v1::CellRotateResponse CellLink::rotate() {
  std::lock_guard op(op_mu_);
  auto n = need(node());
  v1::CellRotateResponse out;
  try {
    out.set_version(n->rotate());
  } catch (...) {
    rethrow_as_mgmt("rotate");
  }
  *out.mutable_status() = to_proto(n->status());
  refresh_summary();
  return out;
}

v1::CellStatusResponse CellLink::remove(const v1::CellRemoveRequest& r) {
  std::lock_guard op(op_mu_);
  if (!hsm::valid_member_id(r.member()))
    throw MgmtError(ErrorCode::invalid_argument, "'" + r.member() + "' is not a member id");
  auto n = need(node());
  try {
    n->remove(r.member());
  } catch (...) {
    rethrow_as_mgmt("remove " + r.member());
  }
  refresh_summary();
  return to_proto(n->status());
}

v1::CellStatusResponse CellLink::leave(const std::string& actor) {
  std::lock_guard op(op_mu_);
  auto n = need(node());
  try {
    n->leave();
  } catch (...) {
    rethrow_as_mgmt("leave");
  }
  v1::CellStatusResponse st = to_proto(n->status());
  n->stop();
  {
    std::lock_guard lock(node_mu_);
    node_.reset();
  }
  // The keys and the front end stay as they are (it keeps minting with the version it has);
  // without cell.name the next start builds no node.
  apply(actor, {{"cell.name", ""}, {"cell.etcd_endpoints", ""}});
  {
    std::lock_guard lock(summary_mu_);
    summary_.Clear();
  }
  return st;
}

v1::CellStatusResponse CellLink::status() {
  auto n = need(node());
  v1::CellStatusResponse st;
  try {
    st = to_proto(n->status());
  } catch (...) {
    rethrow_as_mgmt("status");
  }
  // The freshest look there is: the summary of status takes it too.
  std::lock_guard lock(summary_mu_);
  if (node() == n) summary_ = summarize(st);
  return st;
}

v1::CellSummary CellLink::summary() const {
  std::lock_guard lock(summary_mu_);
  v1::CellSummary s = summary_;
  if (refreshing_since_ && !s.name().empty()) {
    const auto waited = std::chrono::steady_clock::now() - *refreshing_since_;
    if (waited > kSlowRefresh) {
      s.set_state("degraded");
      s.set_etcd_healthy(false);
      s.set_reason("etcd has not answered for " +
                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(waited).count()) + " s");
    }
  }
  return s;
}

void CellLink::refresh_summary() {
  auto n = node();
  if (!n) return;
  {
    std::lock_guard lock(summary_mu_);
    refreshing_since_ = std::chrono::steady_clock::now();
  }
  v1::CellSummary s;
  try {
    s = summarize(to_proto(n->status()));
  } catch (const std::exception& e) {
    s.set_state("degraded");
    s.set_reason(e.what());
  }
  std::lock_guard lock(summary_mu_);
  refreshing_since_.reset();
  if (node() == n) summary_ = std::move(s);
}

void CellLink::summary_loop() {
  std::unique_lock lock(summary_mu_);
  while (!stopping_) {
    summary_cv_.wait_for(lock, 1s, [this] { return stopping_; });
    if (stopping_) return;
    lock.unlock();
    refresh_summary();
    lock.lock();
  }
}

}  // namespace edge::mgmt::agent_parts
