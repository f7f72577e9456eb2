// Issue 15, a cell of real edged members: a real etcd (Debian etcd-server) on loopback, two edged
// processes with their own lab SoftHSM tokens, a real Kamailio core, edgectl as the operator.
//
//   phone --TCP--> edged A 127.0.0.1:5060 --core link--+
//                                                      +--> Kamailio 127.0.0.1:5080 <--UDP-- bob
//   phone --TCP--> edged B 127.0.0.1:5160 --core link--+
//   A, B <--gRPC--> etcd 127.0.0.1:<free port>     (the cell's store, /edge/cell/c1/)
//
// The core reuses each edge's core link (force_tcp_alias), so a request routed to an edge's address
// comes in on that edge's core link: a request "from the core" in the edge's eyes.
#include <edge/cell/etcd.h>
#include <edge/cell/v1/cell.pb.h>
#include <edge/hsm/cell_keys.h>
#include <edge/mgmt/v1/agent.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <functional>
#include <set>
#include <span>
#include <sstream>
#include <thread>

#include "edge_fixture.h"
#include "etcd_server.h"

namespace edge::test {
namespace {

namespace v1 = edge::mgmt::v1;
using Clock = std::chrono::steady_clock;

// gmock's HasSubstr without gmock (the edge tests link gtest only).
#define EXPECT_CONTAINS(text, needle)                                                                   \
  EXPECT_NE(std::string(text).find(needle), std::string::npos) << "expected '" << (needle) << "' in:\n" \
                                                               << (text)

constexpr const char* kCell = "c1";
constexpr std::uint16_t kPortA = 5060;
constexpr std::uint16_t kPortB = 5160;

template <class M>
M edgectl_json(const EdgedProcess& edge, std::vector<std::string> args) {
  args.insert(args.begin(), "--json");
  std::string out;
  const int rc = edge.edgectl(args, &out);
  if (rc != 0) throw std::runtime_error("edgectl exited " + std::to_string(rc) + ": " + out);
  M m;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  const auto st = google::protobuf::util::JsonStringToMessage(out, &m, o);
  if (!st.ok()) throw std::runtime_error("edgectl --json printed no " + m.GetTypeName() + ": " + out);
  return m;
}

const v1::CellMember* member_of(const v1::CellStatusResponse& s, const std::string& id) {
  for (const auto& m : s.members())
    if (m.id() == id) return &m;
  return nullptr;
}

std::string flip_last_hex(std::string fp) {
  char& c = fp.back();
  c = c == '0' ? '1' : '0';
  return fp;
}

// GET /metrics of the edge whose SIP port is `sip_port` (metrics on sip_port + 4404) with curl.
std::string scrape_metrics(const EdgedProcess& e, std::uint16_t sip_port) {
  ProcessOptions p;
  p.program = find_program("curl", "curl");
  p.args = {"-s", "--max-time", "5", "http://127.0.0.1:" + std::to_string(sip_port + 4404) + "/metrics"};
  static int runs = 0;
  p.log_file = e.state_dir() / ("curl-" + std::to_string(++runs) + ".log");
  ChildProcess tool(p);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (tool.running() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  tool.stop(std::chrono::milliseconds(500));
  return tool.log();
}

class CellTest : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_.start();
    url_ = "http://" + etcd_.endpoint();
    KamailioOptions co;
    core_template_dir_ = std::make_unique<TempDir>("edge-core-template");
    co.config_template = write_aliasing_core_template(core_template_dir_->path());
    core_ = std::make_unique<KamailioProcess>(co);
    dump_.add("kamailio log", [this] { return core_ ? core_->log() : std::string("(not started)"); });
    a_ = start_member("a", kPortA);
    b_ = start_member("b", kPortB);
  }

  void TearDown() override {
    dump_.dump();
    dump_.clear();
    for (auto& u : uas_) u->close();
    uas_.clear();
    for (auto* e : {&a_, &b_, &c_}) {
      if (!*e) continue;
      if ((*e)->running()) {
        EXPECT_EQ((*e)->stop(), 0) << "edged did not exit 0 on SIGTERM:\n" << (*e)->log();
      }
      e->reset();
    }
    core_.reset();
  }

  std::unique_ptr<EdgedProcess> start_member(const std::string& name, std::uint16_t port) {
    EdgedOptions o;
    o.udp_port = port;
    o.tcp_port = port;
    o.tls_port = o.ws_port = o.wss_port = 0;
    // A killed member leaves the live list within 3 s.
    o.extra = {{"cell.lease_ttl_s", "3"}, {"metrics.listen", "127.0.0.1:" + std::to_string(port + 4404)}};
    auto e = std::make_unique<EdgedProcess>(o);
    EdgedProcess* p = e.get();
    dump_.add("edged " + name + " log", [p] { return p->log(); });
    return e;
  }

  TestUa& ua(const std::string& user) {
    uas_.push_back(std::make_unique<TestUa>(user));
    TestUa* u = uas_.back().get();
    dump_.add("UA " + user, [u] { return u->transcript(); });
    return *u;
  }

  v1::CellStatusResponse cell_status(const EdgedProcess& e) {
    return edgectl_json<v1::CellStatusResponse>(e, {"cell", "status"});
  }

  // Polls `cell status --json` on `e` until pred holds; bounded. The last answer in *last.
  bool wait_cell(const EdgedProcess& e, const std::function<bool(const v1::CellStatusResponse&)>& pred,
                 std::chrono::seconds timeout, v1::CellStatusResponse* last = nullptr) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      v1::CellStatusResponse s;
      try {
        s = cell_status(e);
      } catch (const std::exception&) {
      }
      if (last) *last = s;
      if (pred(s)) return true;
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  // Both members live and approved, the same cell minting version, each front end minting it.
  static bool settled(const v1::CellStatusResponse& s, std::uint32_t version) {
    if (s.minting() != version || s.local_minting() != version) return false;
    for (const char* id : {"a", "b"}) {
      const auto* m = member_of(s, id);
      if (m == nullptr || !m->live() || m->roster_state() != "approved" || m->minting() != version)
        return false;
    }
    return true;
  }

  // create on A, join B, approve both ways; returns when both mint v1.
  void form_cell() {
    std::string out;
    ASSERT_EQ(a_->edgectl({"cell", "create", kCell, "--etcd", url_, "--member-id", "a"}, &out), 0) << out;
    const auto join =
        edgectl_json<v1::CellJoinResponse>(*b_, {"cell", "join", kCell, "--etcd", url_, "--member-id", "b"});
    ASSERT_EQ(join.member_id(), "b");
    fp_b_ = join.fingerprint();
    for (const auto& m : join.members())
      if (m.id() == "a") fp_a_ = m.fingerprint();
    ASSERT_EQ(fp_b_.rfind("sha256:", 0), 0u) << fp_b_;
    ASSERT_EQ(fp_a_.rfind("sha256:", 0), 0u) << "join found no member a";
    ASSERT_EQ(a_->edgectl({"cell", "approve", "b", "--fingerprint", fp_b_}, &out), 0) << out;
    ASSERT_EQ(b_->edgectl({"cell", "approve", "a", "--fingerprint", fp_a_}, &out), 0) << out;
    v1::CellStatusResponse last;
    ASSERT_TRUE(wait_cell(
        *b_, [](const auto& s) { return settled(s, 1); }, std::chrono::seconds(60), &last))
        << "B: " << last.DebugString();
    ASSERT_TRUE(wait_cell(
        *a_, [](const auto& s) { return settled(s, 1); }, std::chrono::seconds(30), &last))
        << "A: " << last.DebugString();
  }

  // Waits until the core has heard a request on `e`'s core link (its health check), so that the
  // core's alias for the edge's address is the core link.
  void wait_core_link(const EdgedProcess& e) {
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    for (;;) {
      const auto st = edgectl_json<v1::Status>(e, {"status"});
      if (st.front_end().core_connected() && !st.front_end().cores().empty() &&
          st.front_end().cores(0).health_answers() > 0)
        return;
      ASSERT_LT(Clock::now(), deadline) << "no health answer on the core link: " << st.DebugString();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // An in-dialog OPTIONS from bob (UDP, at the core) that the core loose-routes to the edge on
  // `port` with `token` in the Route; the request URI is `target`'s contact.
  SipMessage options_via_core(TestUa& bob, TestUa& target, std::uint16_t port, const std::string& token) {
    SipMessage m = SipMessage::request("OPTIONS", target.contact_uri());
    m.add_header("Via", bob.via(TestUa::new_branch()));
    m.add_header("Max-Forwards", "70");
    m.add_header("Route", "<sip:127.0.0.1:5080;lr>");
    m.add_header("Route", "<sip:" + token + "@127.0.0.1:" + std::to_string(port) + ";transport=tcp;lr>");
    m.add_header("From", "<" + bob.aor() + ">;tag=" + TestUa::new_tag());
    m.add_header("To", "<" + target.aor() + ">;tag=" + TestUa::new_tag());
    m.add_header("Call-ID", TestUa::new_call_id());
    m.add_header("CSeq", std::to_string(++cseq_) + " OPTIONS");
    return m;
  }

  // The request reaches `target` on its flow, which answers 200; bob gets the 200.
  void expect_delivered(TestUa& bob, TestUa& target, std::uint16_t port, const std::string& token) {
    bob.send(options_via_core(bob, target, port, token));
    const SipMessage delivered = target.receive_request("OPTIONS");
    target.send(target.make_response(delivered, 200, "OK"));
    const SipMessage r = bob.receive_response("OPTIONS");
    EXPECT_EQ(r.status(), 200) << r.summary();
  }

  EtcdServer etcd_;
  std::string url_;
  std::unique_ptr<TempDir> core_template_dir_;
  std::unique_ptr<KamailioProcess> core_;
  std::unique_ptr<EdgedProcess> a_, b_, c_;  // c_: a third member, when a test starts one
  std::vector<std::unique_ptr<TestUa>> uas_;
  std::string fp_a_, fp_b_;
  int cseq_ = 0;
  FailureDump dump_;
};

// (a) create on A, join B, approve both ways; a fingerprint that does not match is refused and
// admits nothing; both members then see both live, approved, minting the same version.
TEST_F(CellTest, CreateJoinApproveBothWaysAndAFingerprintMismatchIsRefused) {
  std::string out;
  ASSERT_EQ(a_->edgectl({"cell", "create", kCell, "--etcd", url_, "--member-id", "a"}, &out), 0) << out;
  EXPECT_CONTAINS(out, "member");
  // Usage errors exit 2.
  EXPECT_EQ(b_->edgectl({"cell", "join", kCell}, &out), 2) << out;
  EXPECT_CONTAINS(out, "needs --etcd");
  EXPECT_EQ(b_->edgectl({"cell", "approve", "a"}, &out), 2) << out;

  ASSERT_EQ(b_->edgectl({"cell", "join", kCell, "--etcd", url_, "--member-id", "b"}, &out), 0) << out;
  // The human output: this member's id and fingerprint, the members found, what to approve where.
  EXPECT_CONTAINS(out, "member");
  EXPECT_CONTAINS(out, "fingerprint");
  EXPECT_CONTAINS(out, "edgectl cell approve b --fingerprint sha256:");
  EXPECT_CONTAINS(out, "edgectl cell approve a --fingerprint sha256:");

  const auto sb = cell_status(*b_);
  fp_b_ = sb.fingerprint();
  ASSERT_EQ(fp_b_.rfind("sha256:", 0), 0u) << sb.DebugString();
  const auto sa = cell_status(*a_);
  fp_a_ = sa.fingerprint();
  ASSERT_EQ(fp_a_.rfind("sha256:", 0), 0u) << sa.DebugString();
  ASSERT_NE(member_of(sa, "b"), nullptr) << "A does not see B's join: " << sa.DebugString();
  EXPECT_EQ(member_of(sa, "b")->fingerprint(), fp_b_);
  EXPECT_EQ(member_of(sa, "b")->roster_state(), "pending");
  EXPECT_CONTAINS(out, fp_a_);
  EXPECT_CONTAINS(out, fp_b_);

  // A fingerprint that differs in one digit: refused with the reason (exit 1), nothing admitted.
  EXPECT_EQ(a_->edgectl({"cell", "approve", "b", "--fingerprint", flip_last_hex(fp_b_)}, &out), 1) << out;
  EXPECT_CONTAINS(out, "fingerprint");
  const auto after = cell_status(*a_);
  ASSERT_NE(member_of(after, "b"), nullptr);
  EXPECT_FALSE(member_of(after, "b")->trusted_here()) << after.DebugString();
  EXPECT_EQ(member_of(after, "b")->roster_state(), "pending");
  // B is still waiting and holds no version: nothing was wrapped for it.
  const auto waiting = cell_status(*b_);
  EXPECT_TRUE(waiting.held().empty()) << waiting.DebugString();
  EXPECT_EQ(waiting.local_minting(), 0u);

  ASSERT_EQ(a_->edgectl({"cell", "approve", "b", "--fingerprint", fp_b_}, &out), 0) << out;
  ASSERT_EQ(b_->edgectl({"cell", "approve", "a", "--fingerprint", fp_a_}, &out), 0) << out;

  v1::CellStatusResponse last;
  ASSERT_TRUE(wait_cell(
      *b_, [](const auto& s) { return settled(s, 1); }, std::chrono::seconds(60), &last))
      << "B: " << last.DebugString();
  ASSERT_TRUE(wait_cell(
      *a_, [](const auto& s) { return settled(s, 1); }, std::chrono::seconds(30), &last))
      << "A: " << last.DebugString();
  for (auto* e : {a_.get(), b_.get()}) {
    const auto s = cell_status(*e);
    EXPECT_EQ(s.state(), "joined") << s.DebugString();
    EXPECT_TRUE(s.etcd_healthy());
    EXPECT_EQ(s.key_set(), kCell);
    EXPECT_TRUE(member_of(s, "a")->trusted_here());
    EXPECT_TRUE(member_of(s, "b")->trusted_here());
    // The front end moved to the cell's key set, pinned.
    const auto st = edgectl_json<v1::Status>(*e, {"status"});
    EXPECT_EQ(st.front_end().key_set(), kCell);
    EXPECT_EQ(st.front_end().minting_version(), 1u);
    EXPECT_EQ(st.cell().name(), kCell);
    EXPECT_EQ(st.cell().members(), 2u);
    // The status line of `edgectl status` has the cell summary.
    ASSERT_EQ(e->edgectl({"status"}, &out), 0) << out;
    EXPECT_CONTAINS(out, "cell");
    EXPECT_CONTAINS(out, "c1 as ");
    // /metrics has the cell's gauges.
    const std::string metrics = scrape_metrics(*e, e == a_.get() ? kPortA : kPortB);
    EXPECT_CONTAINS(metrics, "edge_cell_minting_version{cell=\"c1\"} 1");
    EXPECT_CONTAINS(metrics, "edge_cell_local_minting_version{cell=\"c1\"} 1");
    EXPECT_CONTAINS(metrics, "edge_cell_members_live{cell=\"c1\"} 2");
    EXPECT_CONTAINS(metrics, "edge_cell_etcd_up{cell=\"c1\"} 1");
    EXPECT_CONTAINS(metrics, "edge_cell_state{cell=\"c1\",state=\"joined\"} 1");
    // SIGUSR1 logs the cell's line beside the status line.
    const std::size_t before = e->log().size();
    (void)e->status();
    EXPECT_TRUE(e->wait_for_log("event=cell_status cell=c1 member=" + std::string(e == a_.get() ? "a" : "b") +
                                    " state=joined minting=1 local_minting=1",
                                std::chrono::seconds(5), before))
        << e->log().substr(before);
    // While in the cell, a local rotation of its key set is refused with the reason.
    EXPECT_NE(e->edgectl({"keyset", "rotate", kCell}, &out), 0) << out;
    EXPECT_CONTAINS(out, "edgectl cell rotate");
    EXPECT_NE(e->edgectl({"keyset", "retire", kCell, "1"}, &out), 0) << out;
    EXPECT_CONTAINS(out, "cell.retire_after_s");
    EXPECT_NE(e->edgectl({"keyset", "destroy", kCell}, &out), 0) << out;
    EXPECT_CONTAINS(out, "edgectl cell leave");
  }
}

// From two boxes to three: C needs one approval each way with any one member (A); B and C admit each
// other on their own through the approvals signed by A, and C catches up before it mints.
TEST_F(CellTest, AThirdMemberNeedsOneApprovalEachWayWithAnyOneMember) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  constexpr std::uint16_t kPortC = 5260;
  c_ = start_member("c", kPortC);
  EdgedProcess* c = c_.get();
  const auto join =
      edgectl_json<v1::CellJoinResponse>(*c, {"cell", "join", kCell, "--etcd", url_, "--member-id", "c"});
  std::string out;
  ASSERT_EQ(a_->edgectl({"cell", "approve", "c", "--fingerprint", join.fingerprint()}, &out), 0) << out;
  ASSERT_EQ(c->edgectl({"cell", "approve", "a", "--fingerprint", fp_a_}, &out), 0) << out;
  const auto all_three = [](const v1::CellStatusResponse& s) {
    if (s.minting() != 1 || s.local_minting() != 1) return false;
    for (const char* id : {"a", "b", "c"}) {
      const auto* m = member_of(s, id);
      if (m == nullptr || !m->live() || m->roster_state() != "approved" || !m->trusted_here() ||
          m->minting() != 1)
        return false;
    }
    return true;
  };
  v1::CellStatusResponse last;
  for (const EdgedProcess* e : {c, b_.get(), a_.get()}) {
    ASSERT_TRUE(wait_cell(*e, all_three, std::chrono::seconds(60), &last)) << last.DebugString();
  }
  // And a rotation now waits for all three and ends with all three minting v2.
  ASSERT_EQ(b_->edgectl({"cell", "rotate"}, &out), 0) << out;
  for (const EdgedProcess* e : {c, b_.get(), a_.get()}) {
    ASSERT_TRUE(wait_cell(
        *e,
        [](const auto& s) {
          if (s.minting() != 2 || s.local_minting() != 2) return false;
          for (const char* id : {"a", "b", "c"}) {
            const auto* m = member_of(s, id);
            if (m == nullptr || m->minting() != 2) return false;
          }
          return true;
        },
        std::chrono::seconds(60), &last))
        << last.DebugString();
  }
}

// `cell leave`: the member is out of the roster and its loop stops; its HSM keeps the versions and its
// front end the version it mints (its phones keep working); the key set is its own again.
TEST_F(CellTest, LeaveTakesAMemberOutAndLeavesItsKeysAndMinting) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  std::string out;
  ASSERT_EQ(b_->edgectl({"cell", "leave"}, &out), 0) << out;
  EXPECT_CONTAINS(out, "left cell c1 as b");
  EXPECT_EQ(b_->edgectl({"cell", "status"}, &out), 1) << out;
  EXPECT_CONTAINS(out, "not a member of a cell");
  const auto st = edgectl_json<v1::Status>(*b_, {"status"});
  EXPECT_EQ(st.cell().name(), "");
  EXPECT_EQ(st.front_end().key_set(), kCell);
  EXPECT_EQ(st.front_end().minting_version(), 1u);
  v1::CellStatusResponse last;
  ASSERT_TRUE(wait_cell(
      *a_,
      [](const auto& s) {
        const auto* b = member_of(s, "b");
        return b != nullptr && b->roster_state() == "removed" && !b->live();
      },
      std::chrono::seconds(20), &last))
      << last.DebugString();
  // A rotation of the cell no longer waits for b.
  ASSERT_EQ(a_->edgectl({"cell", "rotate"}, &out), 0) << out;
  ASSERT_TRUE(wait_cell(
      *a_, [](const auto& s) { return s.minting() == 2 && s.local_minting() == 2; }, std::chrono::seconds(30),
      &last))
      << last.DebugString();
  // Out of the cell, B's key set is its own: a local rotation is allowed again.
  EXPECT_EQ(b_->edgectl({"keyset", "rotate", kCell}, &out), 0) << out;
  // And B, restarted, starts no cell.
  EXPECT_EQ(b_->stop(), 0);
  b_->restart();
  EXPECT_EQ(edgectl_json<v1::Status>(*b_, {"status"}).cell().name(), "");
}

// (b) A token minted by A verifies on B: for a TCP flow B does not hold it answers 430, and for
// the same token with one character changed 403; and the other way round.
TEST_F(CellTest, TokensOfEachMemberVerifyOnTheOther) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  ASSERT_NO_FATAL_FAILURE(wait_core_link(*a_));
  ASSERT_NO_FATAL_FAILURE(wait_core_link(*b_));

  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, a_->endpoint(Transport::tcp));
  const SipMessage reg_a = alice.register_with();
  ASSERT_EQ(reg_a.status(), 200) << reg_a.summary();
  const std::string token_a = path_token(reg_a);
  ASSERT_EQ(token_key_version(token_a), std::optional<std::uint32_t>(1u));

  TestUa& carol = ua("carol");
  carol.connect(Transport::tcp, b_->endpoint(Transport::tcp));
  const SipMessage reg_b = carol.register_with();
  ASSERT_EQ(reg_b.status(), 200) << reg_b.summary();
  const std::string token_b = path_token(reg_b);
  ASSERT_EQ(token_key_version(token_b), std::optional<std::uint32_t>(1u));

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  // Each token routes through its own member.
  expect_delivered(bob, alice, kPortA, token_a);
  expect_delivered(bob, carol, kPortB, token_b);

  auto answer_of = [&](TestUa& target, std::uint16_t port, const std::string& token) {
    bob.send(options_via_core(bob, target, port, token));
    return bob.receive_response("OPTIONS");
  };
  struct Case {
    TestUa& target;
    std::uint16_t port;
    std::string token;
    const char* what;
  };
  for (const Case& c :
       {Case{alice, kPortB, token_a, "A's token at B"}, Case{carol, kPortA, token_b, "B's token at A"}}) {
    const SipMessage r = answer_of(c.target, c.port, c.token);
    EXPECT_EQ(r.status(), 430) << c.what << ": " << r.summary();
    EXPECT_NE(r.header("Server"), std::optional<std::string>(kCoreServer)) << c.what << ": from the core";
    const SipMessage t = answer_of(c.target, c.port, tamper_token(c.token));
    EXPECT_EQ(t.status(), 403) << c.what << " altered: " << t.summary();
    EXPECT_NE(t.header("Server"), std::optional<std::string>(kCoreServer)) << c.what << ": from the core";
  }
  EXPECT_FALSE(alice.try_receive(Millis(300))) << "a request for alice reached her through B";
  EXPECT_FALSE(carol.try_receive(Millis(300))) << "a request for carol reached her through A";
  EXPECT_EQ(a_->status().number("r430"), 1u);
  EXPECT_EQ(b_->status().number("r430"), 1u);
  EXPECT_EQ(a_->status().number("r403"), 1u);
  EXPECT_EQ(b_->status().number("r403"), 1u);
}

// (c) `edgectl cell rotate` on A while in-dialog requests flow through both members: no flow and no
// request is lost, the old tokens keep routing, both members end minting v2 and new registrations
// get v2 tokens that verify on the other member too.
TEST_F(CellTest, RotationUnderTrafficLosesNothingAndBothEndMintingTheNewVersion) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  ASSERT_NO_FATAL_FAILURE(wait_core_link(*a_));
  ASSERT_NO_FATAL_FAILURE(wait_core_link(*b_));

  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, a_->endpoint(Transport::tcp));
  const SipMessage reg_a = alice.register_with();
  ASSERT_EQ(reg_a.status(), 200);
  const std::string token_a = path_token(reg_a);
  TestUa& carol = ua("carol");
  carol.connect(Transport::tcp, b_->endpoint(Transport::tcp));
  const SipMessage reg_b = carol.register_with();
  ASSERT_EQ(reg_b.status(), 200);
  const std::string token_b = path_token(reg_b);
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));

  std::string out;
  ASSERT_EQ(a_->edgectl({"cell", "rotate"}, &out), 0) << out;
  EXPECT_CONTAINS(out, "rotation to v2");

  // Requests through both members, with the old tokens, until both mint v2, and a few rounds more.
  int rounds = 0, after_switch = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(90);
  while (after_switch < 3) {
    ASSERT_LT(Clock::now(), deadline) << "the rotation did not finish: A " << cell_status(*a_).DebugString()
                                      << "\nB " << cell_status(*b_).DebugString();
    expect_delivered(bob, alice, kPortA, token_a);
    expect_delivered(bob, carol, kPortB, token_b);
    if (::testing::Test::HasFailure()) return;
    ++rounds;
    const auto sa = cell_status(*a_);
    const auto sb = cell_status(*b_);
    if (settled(sa, 2) && settled(sb, 2)) ++after_switch;
  }
  EXPECT_GT(rounds, 3);
  for (auto* e : {a_.get(), b_.get()}) {
    const auto st = edgectl_json<v1::Status>(*e, {"status"});
    EXPECT_EQ(st.front_end().minting_version(), 2u);
    std::uint64_t tcp = 0;
    for (const auto& f : st.front_end().flows())
      if (f.transport() == v1::TRANSPORT_TCP) tcp = f.flows();
    EXPECT_EQ(tcp, 1u) << "a flow was lost";
    EXPECT_EQ(e->status().number("r403"), 0u);
    EXPECT_EQ(e->status().number("r430"), 0u);
  }
  // A new registration gets a v2 token; it verifies on the other member (430 there: not its flow).
  TestUa& dave = ua("dave");
  dave.connect(Transport::tcp, a_->endpoint(Transport::tcp));
  const SipMessage reg_d = dave.register_with();
  ASSERT_EQ(reg_d.status(), 200);
  const std::string token_d = path_token(reg_d);
  EXPECT_EQ(token_key_version(token_d), std::optional<std::uint32_t>(2u));
  expect_delivered(bob, dave, kPortA, token_d);
  bob.send(options_via_core(bob, dave, kPortB, token_d));
  EXPECT_EQ(bob.receive_response("OPTIONS").status(), 430);
}

// (d) A member that is down during phase 1 blocks the switch, and status names it; removed, the
// rotation completes on the member left.
TEST_F(CellTest, AMemberDownDuringPhaseOneBlocksTheSwitchUntilRemoved) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  b_->kill9();
  v1::CellStatusResponse last;
  ASSERT_TRUE(wait_cell(
      *a_,
      [](const auto& s) {
        const auto* b = member_of(s, "b");
        return b != nullptr && !b->live();
      },
      std::chrono::seconds(20), &last))
      << last.DebugString();
  std::string out;
  ASSERT_EQ(a_->edgectl({"cell", "rotate"}, &out), 0) << out;
  // Phase 1 waits for b, and says so; the cell keeps minting v1.
  ASSERT_TRUE(wait_cell(
      *a_,
      [](const auto& s) {
        return s.rotation_version() == 2 && s.rotation_phase() == "prepare" &&
               std::find(s.rotation_waiting_for().begin(), s.rotation_waiting_for().end(), "b") !=
                   s.rotation_waiting_for().end();
      },
      std::chrono::seconds(20), &last))
      << last.DebugString();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  last = cell_status(*a_);
  EXPECT_EQ(last.rotation_phase(), "prepare") << last.DebugString();
  EXPECT_EQ(last.minting(), 1u);
  EXPECT_EQ(last.local_minting(), 1u);
  ASSERT_EQ(a_->edgectl({"cell", "status"}, &out), 0) << out;
  EXPECT_CONTAINS(out, "waiting for");

  ASSERT_EQ(a_->edgectl({"cell", "remove", "b"}, &out), 0) << out;
  ASSERT_TRUE(wait_cell(
      *a_,
      [](const auto& s) {
        return s.minting() == 2 && s.local_minting() == 2 && s.rotation_phase() == "done";
      },
      std::chrono::seconds(30), &last))
      << last.DebugString();
  ASSERT_NE(member_of(last, "b"), nullptr);
  EXPECT_EQ(member_of(last, "b")->roster_state(), "removed");
  EXPECT_FALSE(member_of(last, "b")->trusted_here());
  b_.reset();  // killed: nothing to stop
}

// (d) The member that started a rotation is killed right after starting it: the other member takes
// the rotation on (imports, acknowledges, switches); the starter, back, catches up before it mints.
TEST_F(CellTest, TheStarterKilledMidRotationTheOtherCompletesIt) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  std::string out;
  ASSERT_EQ(a_->edgectl({"cell", "rotate"}, &out), 0) << out;
  a_->kill9();
  v1::CellStatusResponse last;
  // B holds v2 (generated by A, or by B itself when A died before publishing it) and has acknowledged.
  ASSERT_TRUE(wait_cell(
      *b_,
      [](const auto& s) {
        return std::find(s.held().begin(), s.held().end(), 2u) != s.held().end() && s.rotation_version() == 2;
      },
      std::chrono::seconds(30), &last))
      << last.DebugString();
  a_->restart();
  ASSERT_TRUE(wait_cell(
      *b_, [](const auto& s) { return settled(s, 2); }, std::chrono::seconds(60), &last))
      << "B: " << last.DebugString();
  ASSERT_TRUE(wait_cell(
      *a_, [](const auto& s) { return settled(s, 2); }, std::chrono::seconds(30), &last))
      << "A: " << last.DebugString();
  EXPECT_TRUE(wait_cell(
      *a_, [](const auto& s) { return s.rotation_phase() == "done"; }, std::chrono::seconds(20), &last))
      << last.DebugString();
}

// (d) etcd stopped: calls through both members are unaffected, the cell is degraded (status says
// why), and when etcd is back the members recover and a rotation completes.
TEST_F(CellTest, EtcdDownLeavesCallsAloneAndTheCellCatchesUpWhenItReturns) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  ASSERT_NO_FATAL_FAILURE(wait_core_link(*a_));
  ASSERT_NO_FATAL_FAILURE(wait_core_link(*b_));
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, a_->endpoint(Transport::tcp));
  const SipMessage reg_a = alice.register_with();
  ASSERT_EQ(reg_a.status(), 200);
  TestUa& carol = ua("carol");
  carol.connect(Transport::tcp, b_->endpoint(Transport::tcp));
  const SipMessage reg_b = carol.register_with();
  ASSERT_EQ(reg_b.status(), 200);
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));

  etcd_.stop();
  v1::CellStatusResponse last;
  for (const auto* e : {a_.get(), b_.get()}) {
    ASSERT_TRUE(wait_cell(
        *e, [](const auto& s) { return s.state() == "degraded" && !s.etcd_healthy(); },
        std::chrono::seconds(20), &last))
        << last.DebugString();
    EXPECT_FALSE(last.reason().empty());
  }
  for (int i = 0; i < 5; ++i) {
    expect_delivered(bob, alice, kPortA, path_token(reg_a));
    expect_delivered(bob, carol, kPortB, path_token(reg_b));
  }
  // A new registration still gets a token, and it verifies on the other member.
  TestUa& dave = ua("dave");
  dave.connect(Transport::tcp, b_->endpoint(Transport::tcp));
  const SipMessage reg_d = dave.register_with();
  ASSERT_EQ(reg_d.status(), 200);
  bob.send(options_via_core(bob, dave, kPortA, path_token(reg_d)));
  EXPECT_EQ(bob.receive_response("OPTIONS").status(), 430);
  // The summary in `edgectl status` says so too (it never waits for etcd).
  for (auto* e : {a_.get(), b_.get()}) {
    v1::Status st;
    const auto until = Clock::now() + std::chrono::seconds(10);
    do {
      st = edgectl_json<v1::Status>(*e, {"status"});
      if (st.cell().state() == "degraded") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    } while (Clock::now() < until);
    EXPECT_EQ(st.cell().state(), "degraded") << st.cell().DebugString();
    EXPECT_FALSE(st.cell().etcd_healthy());
  }
  // A rotation cannot start without etcd: refused with the reason.
  std::string out;
  EXPECT_EQ(a_->edgectl({"cell", "rotate"}, &out), 1) << out;

  etcd_.start();
  for (const auto* e : {a_.get(), b_.get()}) {
    ASSERT_TRUE(wait_cell(
        *e, [](const auto& s) { return s.state() == "joined" && s.etcd_healthy(); }, std::chrono::seconds(30),
        &last))
        << last.DebugString();
  }
  ASSERT_EQ(a_->edgectl({"cell", "rotate"}, &out), 0) << out;
  ASSERT_TRUE(wait_cell(
      *b_, [](const auto& s) { return settled(s, 2); }, std::chrono::seconds(60), &last))
      << last.DebugString();
  ASSERT_TRUE(wait_cell(
      *a_, [](const auto& s) { return settled(s, 2); }, std::chrono::seconds(30), &last))
      << last.DebugString();
  expect_delivered(bob, alice, kPortA, path_token(reg_a));
  expect_delivered(bob, carol, kPortB, path_token(reg_b));
}

// Runs pkcs11-tool (Debian opensc) on `e`'s lab token and returns its output.
std::string pkcs11_objects(const EdgedProcess& e, const std::string& type) {
  ProcessOptions p;
  p.program = find_program("env", "coreutils");
  const std::string pin = read_file(e.state_dir() / "hsm" / "user-pin");
  p.args = {"SOFTHSM2_CONF=" + (e.state_dir() / "hsm" / "softhsm2.conf").string(),
            find_program("pkcs11-tool", "opensc").string(),
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "edge-lab",
            "--login",
            "--pin",
            std::string(pin.substr(0, pin.find_last_not_of("\r\n") + 1)),
            "--list-objects",
            "--type",
            type};
  static int runs = 0;
  p.log_file = e.state_dir() / ("pkcs11-tool-" + std::to_string(++runs) + ".log");
  ChildProcess tool(p);
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (tool.running() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int rc = tool.stop(std::chrono::milliseconds(500));
  if (rc != 0) throw std::runtime_error("pkcs11-tool exited " + std::to_string(rc) + ": " + tool.log());
  return tool.log();
}

// pkcs11-tool's objects: label -> the words of its "Access:" line.
std::map<std::string, std::vector<std::string>> access_by_label(const std::string& listing) {
  std::map<std::string, std::vector<std::string>> out;
  std::istringstream in(listing);
  std::string label;
  for (std::string line; std::getline(in, line);) {
    const auto key = line.find_first_not_of(' ');
    if (key == std::string::npos) continue;
    const std::string t = line.substr(key);
    if (t.rfind("label:", 0) == 0) {
      label = t.substr(t.find_first_not_of(' ', 6));
    } else if (t.rfind("Access:", 0) == 0 && !label.empty()) {
      std::vector<std::string> words;
      std::string rest = t.substr(7);
      std::istringstream parts(rest);
      for (std::string w; std::getline(parts, w, ',');) {
        const auto a = w.find_first_not_of(' ');
        const auto b = w.find_last_not_of(' ');
        if (a != std::string::npos) words.push_back(w.substr(a, b - a + 1));
      }
      out[label] = words;
    }
  }
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& w) {
  return std::find(v.begin(), v.end(), w) != v.end();
}

// (e) The cell's keys as another PKCS#11 client reads them on every member's token, and what etcd
// holds: public data or wrapped blobs of RSA-2048 size, nothing else.
TEST_F(CellTest, KeysAreSensitiveAndNotExtractableAndEtcdHoldsNoKey) {
  ASSERT_NO_FATAL_FAILURE(form_cell());
  std::string out;
  ASSERT_EQ(a_->edgectl({"cell", "rotate"}, &out), 0) << out;
  v1::CellStatusResponse last;
  ASSERT_TRUE(wait_cell(
      *b_, [](const auto& s) { return settled(s, 2); }, std::chrono::seconds(60), &last))
      << last.DebugString();
  ASSERT_TRUE(wait_cell(
      *a_, [](const auto& s) { return settled(s, 2); }, std::chrono::seconds(30), &last))
      << last.DebugString();

  for (const auto* e : {a_.get(), b_.get()}) {
    const std::string secret = pkcs11_objects(*e, "secrkey");
    const auto keys = access_by_label(secret);
    for (const std::string v : {"c1/v1", "c1/v2"}) {
      // The verify copy: what mints and verifies. Unwrapped (CKA_LOCAL false, so CKA_NEVER_EXTRACTABLE
      // and CKA_ALWAYS_SENSITIVE false as PKCS#11 has it for an unwrapped key): sensitive, not extractable.
      ASSERT_TRUE(keys.count(v)) << v << " missing:\n" << secret;
      EXPECT_TRUE(has(keys.at(v), "sensitive")) << v << ":\n" << secret;
      EXPECT_FALSE(has(keys.at(v), "extractable")) << v << ":\n" << secret;
      // The escrow copy: sensitive too (extractable only under a trusted key; never in clear).
      const std::string escrow = v + "/escrow";
      ASSERT_TRUE(keys.count(escrow)) << escrow << " missing:\n" << secret;
      EXPECT_TRUE(has(keys.at(escrow), "sensitive")) << escrow << ":\n" << secret;
    }
    const std::string priv = pkcs11_objects(*e, "privkey");
    const auto pk = access_by_label(priv);
    for (const std::string l : {"cell/transport", "cell/sign"}) {
      ASSERT_TRUE(pk.count(l)) << l << " missing:\n" << priv;
      EXPECT_TRUE(has(pk.at(l), "sensitive")) << l << ":\n" << priv;
      EXPECT_TRUE(has(pk.at(l), "never extractable")) << l << ":\n" << priv;
      EXPECT_FALSE(has(pk.at(l), "extractable")) << l << ":\n" << priv;
    }
  }

  // Every value under /edge/cell/ is one of the store's public records or a 256-byte blob.
  edge::cell::EtcdClient etcd(etcd_.options());
  const auto all = etcd.get_prefix("/edge/cell/");
  ASSERT_FALSE(all.kvs.empty());
  const std::string prefix = std::string("/edge/cell/") + kCell + "/";
  std::set<std::string> blob_keys;
  int versions = 0;
  for (const auto& kv : all.kvs) {
    ASSERT_EQ(kv.key.rfind(prefix, 0), 0u) << kv.key;
    const std::string rest = kv.key.substr(prefix.size());
    const std::string family = rest.substr(0, rest.find('/'));
    const auto parses = [&](google::protobuf::Message&& m) { return m.ParseFromString(kv.value); };
    if (family == "blobs") {
      EXPECT_EQ(kv.value.size(), 256u) << kv.key;
      blob_keys.insert(rest);
    } else if (family == "versions") {
      const auto* p = reinterpret_cast<const std::uint8_t*>(kv.value.data());
      const auto rec = edge::hsm::decode_record(std::span<const std::uint8_t>(p, kv.value.size()));
      ASSERT_TRUE(rec.has_value()) << kv.key;
      EXPECT_EQ(rec->set, kCell);
      EXPECT_EQ(rec->signature.size(), 256u) << kv.key;
      ++versions;
    } else if (family == "meta") {
      EXPECT_TRUE(parses(edge::cell::v1::Cell())) << kv.key;
    } else if (family == "roster") {
      EXPECT_TRUE(parses(edge::cell::v1::RosterEntry())) << kv.key;
    } else if (family == "approvals") {
      EXPECT_TRUE(parses(edge::cell::v1::Approval())) << kv.key;
    } else if (family == "members") {
      EXPECT_TRUE(parses(edge::cell::v1::Member())) << kv.key;
    } else if (family == "acks") {
      EXPECT_TRUE(parses(edge::cell::v1::Ack())) << kv.key;
    } else if (family == "rotation") {
      EXPECT_TRUE(parses(edge::cell::v1::Rotation())) << kv.key;
    } else if (family == "audit") {
      EXPECT_TRUE(parses(edge::cell::v1::AuditEntry())) << kv.key;
    } else if (family == "minting") {
      EXPECT_EQ(kv.value.find_first_not_of("0123456789"), std::string::npos) << kv.key;
    } else {
      ADD_FAILURE() << "a key outside the store's table: " << kv.key;
    }
  }
  EXPECT_EQ(versions, 2);
  // What was wrapped for b (a, the origin, unwrapped its own copies in its HSM: no blob for it).
  EXPECT_TRUE(blob_keys.count("blobs/1/b")) << ::testing::PrintToString(blob_keys);
  EXPECT_TRUE(blob_keys.count("blobs/2/b")) << ::testing::PrintToString(blob_keys);
}

}  // namespace
}  // namespace edge::test
