// The cell tests' fixture: a real etcd (EtcdServer), one SoftHSM token per member (all in one
// token directory: SoftHSM reads one configuration per process), one hsm::Hsm and one CellNode
// per member, admission through the real edge-hsm binary (EDGE_HSM_PROGRAM) as the token's SO.
// The "front end" of a member is a KeySetMac of the cell's set whose minting version
// switch_minting really pins (it throws when the HSM does not hold that version as active).
#pragma once

#include <edge/cell/cell.h>
#include <edge/cell/etcd.h>
#include <edge/hsm/cell_keys.h>
#include <edge/hsm/hsm.h>
#include <edge/test/process.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "etcd_server.h"

namespace edge::test::cell {

using namespace std::chrono_literals;

// One SoftHSM token directory for the process (SoftHSM reads SOFTHSM2_CONF once) holding one
// token per member. Like tests/support's SoftHsmToken, which this test cannot link beside the
// SIP harness (both define edge::test::read_file, with different semantics).
class TokenDir {
 public:
  TokenDir() {
    if (::access(EDGE_SOFTHSM_MODULE, R_OK) != 0)
      throw std::runtime_error(std::string("SoftHSM2 module missing: ") + EDGE_SOFTHSM_MODULE);
    edge::test::find_program("softhsm2-util", "softhsm2");
    std::filesystem::create_directory(dir_.path() / "tokens");
    conf_ = dir_.path() / "softhsm2.conf";
    write(conf_,
          "directories.tokendir = " + (dir_.path() / "tokens").string() +
              "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
          0644);
    pin_file_ = dir_.path() / "user.pin";
    write(pin_file_, user_pin_ + "\n", 0600);
    so_pin_file_ = dir_.path() / "so.pin";
    write(so_pin_file_, so_pin_ + "\n", 0600);
    env_ = std::make_unique<edge::test::ScopedEnv>("SOFTHSM2_CONF", conf_.string());
  }
  void init_token(const std::string& label) const {
    auto r = edge::test::run_command({"softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin",
                                      so_pin_, "--pin", user_pin_},
                                     {{"SOFTHSM2_CONF", conf_.string()}});
    if (r.exit_code != 0) throw std::runtime_error("softhsm2-util --init-token failed: " + r.err + r.out);
  }
  edge::hsm::HsmConfig config(const std::string& label) const {
    edge::hsm::HsmConfig c;
    c.module_path = EDGE_SOFTHSM_MODULE;
    c.token.label = label;
    c.pin.kind = edge::hsm::PinSource::Kind::file;
    c.pin.location = pin_file_.string();
    c.max_sessions = 4;
    c.backoff_initial = std::chrono::milliseconds(50);
    c.backoff_max = std::chrono::milliseconds(400);
    c.softhsm2_conf = conf_.string();
    return c;
  }
  const std::filesystem::path& pin_file() const noexcept { return pin_file_; }
  const std::filesystem::path& so_pin_file() const noexcept { return so_pin_file_; }

 private:
  static void write(const std::filesystem::path& p, const std::string& content, unsigned mode) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << content;
    f.close();
    if (!f) throw std::runtime_error("cannot write " + p.string());
    ::chmod(p.c_str(), mode);
  }
  edge::test::TempDir dir_{"edge-cell-softhsm"};
  std::filesystem::path conf_, pin_file_, so_pin_file_;
  std::string so_pin_ = "so-pin-0000", user_pin_ = "user-pin-1234";
  std::unique_ptr<edge::test::ScopedEnv> env_;
};

struct Box {
  std::string id, label;
  std::unique_ptr<edge::hsm::Hsm> hsm;
  std::unique_ptr<edge::cell::CellNode> node;
  std::shared_ptr<edge::hsm::KeySetMac> front_end;  // what "the front end" mints with

  std::mutex mu;
  std::uint32_t minting = 0;
  std::vector<std::uint32_t> switches;  // every switch_minting(set, N) call, in order
  std::vector<std::string> events;      // "KIND detail"
  // acks/<N>/ entries in etcd when switch_minting(N) was called (ordering check)
  std::map<std::uint32_t, std::size_t> acks_at_switch;

  edge::hsm::CellKeys keys() { return edge::hsm::CellKeys(*hsm); }
  std::set<std::uint32_t> held(bool active_only = false) {
    std::set<std::uint32_t> out;
    if (!hsm->keysets().exists("lab")) return out;
    for (const auto& v : hsm->keysets().get("lab").versions)
      if (!active_only || v.state == edge::hsm::KeyState::active) out.insert(v.version);
    return out;
  }
  bool trusts(const std::string& member) {
    for (const auto& p : keys().peers())
      if (p.member == member && p.trusted) return true;
    return false;
  }
  std::uint32_t mints() {
    std::lock_guard lock(mu);
    return minting;
  }
  std::vector<std::uint32_t> switch_calls() {
    std::lock_guard lock(mu);
    return switches;
  }
  // Whether an event starting with `kind_prefix` arrived, waiting up to 5 s for it: the node
  // emits an event after the state change a test waits for (a peer is trusted in the HSM before
  // CELL_ADMITTED is reported), so a check right after that state may otherwise run first.
  bool saw(const std::string& kind_prefix) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      {
        std::lock_guard lock(mu);
        for (const auto& e : events)
          if (e.rfind(kind_prefix, 0) == 0) return true;
      }
      if (std::chrono::steady_clock::now() >= end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::string fingerprint() { return keys().transport_public_key().fingerprint; }
};

// Waits (bounded) until `p` holds; polls every 50 ms.
template <typename P>
bool eventually(P&& p, std::chrono::milliseconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (p()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return p();
}

class CellFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_.start();
    // Every token before the first Hsm: SoftHSM lists the tokens of its directory at C_Initialize.
    for (const char* id : {"a", "b", "c", "d"}) tokens_.init_token(std::string("cell-") + id);
    client_ = std::make_unique<edge::cell::EtcdClient>(etcd_.options());
  }
  void TearDown() override {
    for (auto& [id, b] : boxes_)
      if (b->node) b->node->stop();
  }

  edge::cell::CellConfig config(const std::string& id) {
    edge::cell::CellConfig c;
    c.cell = "lab";
    c.member_id = id;
    c.etcd = etcd_.options();
    c.lease_ttl = 3s;
    c.poll = 200ms;
    c.retire_after = retire_after_;
    c.retain = retain_;
    c.version = "9.9.9-test";
    return c;
  }

  Box& box(const std::string& id) {
    auto it = boxes_.find(id);
    if (it != boxes_.end()) return *it->second;
    auto b = std::make_unique<Box>();
    b->id = id;
    b->label = "cell-" + id;
    b->hsm = std::make_unique<edge::hsm::Hsm>(tokens_.config(b->label));
    b->node = std::make_unique<edge::cell::CellNode>(*b->hsm, config(id), hooks(*b));
    return *boxes_.emplace(id, std::move(b)).first->second;
  }

  // A new CellNode for the box (as after a restart of edged), same HSM and front end.
  void restart(Box& b) {
    b.node->stop();
    b.node = std::make_unique<edge::cell::CellNode>(*b.hsm, config(b.id), hooks(b));
    b.node->start();
  }

  edge::cell::CellHooks hooks(Box& b) {
    edge::cell::CellHooks h;
    h.admit = edge::cell::admit_with_edge_hsm(
        EDGE_HSM_PROGRAM,
        {"--module", EDGE_SOFTHSM_MODULE, "--token", b.label, "--pin-file", tokens_.pin_file().string()},
        tokens_.so_pin_file(), 20s);
    h.switch_minting = [this, &b](const std::string& set, std::uint32_t version) {
      if (set != "lab") throw std::runtime_error("switch to another set: " + set);
      auto acks = client_->get_prefix("/edge/cell/lab/acks/" + std::to_string(version) + "/").kvs.size();
      auto mac = b.hsm->mac_for(set);
      mac->set_minting_version(version);  // throws unless the HSM holds it as active
      std::lock_guard lock(b.mu);
      if (version <= b.minting) throw std::runtime_error("minting would move backwards");
      b.front_end = mac;
      b.minting = version;
      b.switches.push_back(version);
      b.acks_at_switch[version] = acks;
    };
    h.minting = [&b] { return b.mints(); };
    h.event = [&b](const std::string& kind, const std::string& detail) {
      std::lock_guard lock(b.mu);
      b.events.push_back(kind + " " + detail);
    };
    return h;
  }

  // `founder` creates the cell; every other member joins, is approved by the founder and
  // approves the founder; all run their loops and hold v1 and mint it.
  void cell_of(const std::vector<std::string>& ids) {
    Box& a = box(ids.at(0));
    a.node->create();
    a.node->start();
    for (std::size_t i = 1; i < ids.size(); ++i) {
      Box& b = box(ids[i]);
      const edge::cell::JoinResult j = b.node->join();
      a.node->approve(b.id, j.fingerprint);
      b.node->approve(a.id, a.fingerprint());
      b.node->start();
    }
    for (const std::string& id : ids) {
      Box& b = box(id);
      ASSERT_TRUE(eventually([&] { return b.mints() == 1 && b.node->status().state == "joined"; }))
          << id << ": " << b.node->status().state << " " << b.node->status().reason;
    }
    for (const std::string& x : ids)
      for (const std::string& y : ids)
        ASSERT_TRUE(eventually([&] { return box(x).trusts(y); })) << x << " trusts " << y;
  }

  std::optional<std::string> get(const std::string& rest) {
    auto kv = client_->get("/edge/cell/lab/" + rest);
    if (!kv) return std::nullopt;
    return kv->value;
  }
  std::size_t count(const std::string& rest) {
    return client_->get_prefix("/edge/cell/lab/" + rest).kvs.size();
  }

  EtcdServer etcd_;
  TokenDir tokens_;
  std::unique_ptr<edge::cell::EtcdClient> client_;
  std::map<std::string, std::unique_ptr<Box>> boxes_;
  std::chrono::seconds retire_after_{7200};
  std::uint32_t retain_ = 3;
};

}  // namespace edge::test::cell
