// Issue "management agent": edgectl -> gRPC (Unix socket) -> agent -> controlled restart of the real
// edged front end, with Kamailio behind it and registered clients on UDP, TCP, TLS and WS flows.
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <edge/mgmt/v1/agent.pb.h>
#include <atomic>
#include <random>
#include <sstream>
#include <thread>

#include "edge_fixture.h"

namespace edge::test {
namespace {

namespace v1 = edge::mgmt::v1;

// Runs `edgectl --json ARGS` and parses its one JSON document into M.
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

std::uint64_t flows_of(const v1::Status& s, v1::Transport t) {
  for (const auto& f : s.front_end().flows()) {
    if (f.transport() == t) return f.flows();
  }
  return 0;
}

class MgmtApplyTest : public EdgeTest {};

// The everyday rotation: `edgectl keyset rotate sipflow` then `edgectl apply`,
// while clients hold UDP, TCP, TLS and WS flows and in-dialog requests keep
// flowing through the edge. Nothing re-registers: the same flows carry the old
// tokens, every request sent during the drain is answered, and only after the
// apply do new REGISTERs get tokens of the new key version.
TEST_F(MgmtApplyTest, RotationApplyKeepsEveryFlowAndAnswersRequestsDuringTheDrain) {
  struct Client {
    TestUa* ua;
    Transport transport;
    v1::Transport v1_transport;
    Endpoint flow;
    std::string token;
  };
  std::vector<Client> clients = {{&ua("alice"), Transport::tcp, v1::TRANSPORT_TCP, {}, {}},
                                 {&ua("carol"), Transport::tls, v1::TRANSPORT_TLS, {}, {}},
                                 {&ua("dave"), Transport::udp, v1::TRANSPORT_UDP, {}, {}},
                                 {&ua("erin"), Transport::ws, v1::TRANSPORT_WS, {}, {}}};
  for (auto& c : clients) {
    const SipMessage ok = register_through_edge(*c.ua, c.transport);
    ASSERT_EQ(ok.status(), 200) << ok.summary();
    c.token = path_token(ok);
    ASSERT_EQ(token_key_version(c.token), 1u) << c.token;
    c.flow = c.ua->local_endpoint();
  }
  const auto before = edgectl_json<v1::Status>(*edge_, {"status"});
  ASSERT_EQ(before.generation(), 1u);

  // Rotation: the HSM has version 2 at once, but the front end keeps minting 1.
  std::string out;
  ASSERT_EQ(edge_->edgectl({"keyset", "rotate", "sipflow"}, &out), 0) << out;
  {
    const SipMessage again = clients[0].ua->register_with();
    ASSERT_EQ(again.status(), 200) << again.summary();
    EXPECT_EQ(token_key_version(path_token(again)), 1u) << "minted with the new version before apply";
  }

  // In-dialog traffic during the apply: bob (on the core directly) and alice
  // exchange INFO in a call through the edge; each side answers the other.
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  Call call_ab = call(bob, *clients[0].ua);
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, answered{0};
  std::string traffic_error;
  std::thread traffic([&] {
    try {
      TestUa& alice = *clients[0].ua;
      // Bounded and paced (Kamailio keeps each transaction for a while in a
      // 32 MB shared-memory pool): stops when told, or after 3000 round trips.
      for (int i = 0; i < 3000 && !stop.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        alice.send(alice.make_in_dialog(call_ab.callee, "INFO"));
        ++sent;
        const SipMessage info = bob.receive_request("INFO");
        bob.send(bob.make_response(info, 200, "OK"));
        if (alice.receive_response("INFO").status() == 200) ++answered;
      }
    } catch (const std::exception& e) {
      traffic_error = e.what();
    }
  });
  for (int i = 0; i < 500 && sent.load() < 20; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int sent_before = sent.load();
  v1::ApplyResponse applied;
  try {
    applied = edgectl_json<v1::ApplyResponse>(*edge_, {"apply", "--request-id", "rotate-1"});
  } catch (...) {
    stop = true;
    traffic.join();
    throw;
  }
  const int sent_during = sent.load() - sent_before;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  traffic.join();
  EXPECT_EQ(traffic_error, "");
  EXPECT_GT(sent_during, 0) << "no traffic while the apply ran";
  std::cout << sent.load() << " in-dialog INFO sent (" << sent_during << " while edgectl apply ran), "
            << answered.load() << " answered; drain " << applied.drain_ms() << " ms\n";
  EXPECT_EQ(answered.load(), sent.load()) << "an in-dialog request was lost across the apply";
  EXPECT_EQ(applied.generation(), 2u);
  EXPECT_EQ(applied.restart(), v1::RESTART_FRONT_END);

  // Zero flows lost: the same sockets, counted as before, still carrying SIP.
  const auto after = edgectl_json<v1::Status>(*edge_, {"status"});
  EXPECT_EQ(after.generation(), 2u);
  EXPECT_EQ(after.front_end().minting_version(), 2u);
  for (const auto& c : clients) {
    EXPECT_EQ(flows_of(after, c.v1_transport), flows_of(before, c.v1_transport)) << via_token(c.transport);
    EXPECT_EQ(c.ua->local_endpoint(), c.flow);
    if (c.transport != Transport::udp) {
      EXPECT_TRUE(c.ua->is_open()) << via_token(c.transport);
      c.ua->send_ping();
      EXPECT_TRUE(c.ua->wait_pong()) << via_token(c.transport) << " flow did not survive the apply";
    }
  }
  bob.send(bob.make_in_dialog(call_ab.caller, "BYE"));
  const SipMessage bye = clients[0].ua->receive_request("BYE");
  clients[0].ua->send(clients[0].ua->make_response(bye, 200, "OK"));
  EXPECT_EQ(bob.receive_response("BYE").status(), 200);

  // The core still holds version-1 Paths for dave (UDP): a call reaches him on his flow.
  Call c2 = call(bob, *clients[2].ua);
  EXPECT_EQ(clients[2].ua->local_endpoint(), clients[2].flow);
  bob.send(bob.make_in_dialog(c2.caller, "BYE"));
  const SipMessage bye2 = clients[2].ua->receive_request("BYE");
  clients[2].ua->send(clients[2].ua->make_response(bye2, 200, "OK"));
  EXPECT_EQ(bob.receive_response("BYE").status(), 200);

  // New tokens carry the new version, on the same flows.
  for (auto& c : clients) {
    const SipMessage again = c.ua->register_with();
    ASSERT_EQ(again.status(), 200) << again.summary();
    EXPECT_EQ(token_key_version(path_token(again)), 2u) << via_token(c.transport);
    EXPECT_EQ(c.ua->local_endpoint(), c.flow);
  }

  // A retry of the same apply is answered from the first one and changes nothing.
  const auto replay = edgectl_json<v1::ApplyResponse>(*edge_, {"apply", "--request-id", "rotate-1"});
  EXPECT_TRUE(replay.replayed());
  EXPECT_EQ(replay.generation(), 2u);
  EXPECT_EQ(edgectl_json<v1::Status>(*edge_, {"status"}).generation(), 2u);
  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("r403"), 0u);
  EXPECT_EQ(s.number("r430"), 0u);
}

// A change that cannot work (a listener on a port someone else holds) is
// refused by validation: the generation, the listeners and the flows stay.
TEST_F(MgmtApplyTest, ApplyThatFailsValidationChangesNothing) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  const int busy = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(busy, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(5099);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(busy, 1), 0);

  std::string out;
  // TCP moves to a port another process holds.
  const std::string listeners =
      "udp 127.0.0.1 5060; tcp 127.0.0.1 5099; tls 127.0.0.1 5061; ws 127.0.0.1 5062; wss 127.0.0.1 5063";
  ASSERT_EQ(edge_->edgectl({"property", "set", "listen", listeners}, &out), 0) << out;
  ASSERT_EQ(edge_->edgectl({"property", "set", "sip.flow_timer", "45"}, &out), 0) << out;
  const int rc = edge_->edgectl({"apply"}, &out);
  ::close(busy);
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("5099"), std::string::npos) << out;

  const auto s = edgectl_json<v1::Status>(*edge_, {"status"});
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_TRUE(s.staged_changes()) << "a refused apply keeps the staged changes for the operator to fix";
  EXPECT_EQ(flows_of(s, v1::TRANSPORT_TCP), 1u);
  alice.send_ping();
  EXPECT_TRUE(alice.wait_pong());
  // The flow timer was not applied either: a REGISTER still gets Flow-Timer 30.
  const SipMessage again = alice.register_with();
  ASSERT_EQ(again.status(), 200);
  EXPECT_EQ(again.header("Flow-Timer"), "30");
}

// Issue 17: an apply whose core list names a core that never comes up (a
// mistyped port) fails its health check and rolls back: generation 1 runs
// again, with its one core, and calls keep flowing. The status names the cores.
TEST_F(MgmtApplyTest, AnApplyWithAMistypedCoreFailsItsHealthCheckAndRollsBack) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  std::string out;
  const std::string mistyped = "sip:127.0.0.1:5089;transport=tcp";  // nothing listens there
  ASSERT_EQ(
      edge_->edgectl({"property", "set", "core", "sip:127.0.0.1:5080;transport=tcp, " + mistyped}, &out), 0)
      << out;
  ASSERT_EQ(edge_->edgectl({"property", "set", "core.keepalive_timeout_ms", "500"}, &out), 0) << out;
  const int rc = edge_->edgectl({"apply"}, &out);
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("health check failed"), std::string::npos) << out;
  EXPECT_NE(out.find(mistyped), std::string::npos) << out;
  EXPECT_NE(out.find("rolled back"), std::string::npos) << out;

  const auto s = edgectl_json<v1::Status>(*edge_, {"status"});
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_EQ(s.front_end().state(), "running");
  ASSERT_EQ(s.front_end().cores_size(), 1) << "generation 1's single core";
  EXPECT_EQ(s.front_end().cores(0).uri(), "sip:127.0.0.1:5080;transport=tcp");
  EXPECT_EQ(edgectl_json<v1::Property>(*edge_, {"property", "get", "core"}).value(),
            "sip:127.0.0.1:5080;transport=tcp");
  ASSERT_TRUE(wait_status([](const EdgedStatus& st) { return st.text("core_1_state") == "up"; }));
  // The rollback rebuilt the transports (a core change): flows closed; alice connects again.
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  TestUa& bob = ua("bob");
  bob.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  const Call c = call(bob, alice);
  EXPECT_EQ(c.invite_received.header("Call-ID"), c.invite_sent.header("Call-ID"));
}

// com.ibm.ws.sip.key.set (WebSphere's name) selects the key set like
// sip.flow_token.key_set: refused for a set the HSM does not have, accepted
// once it exists, and after apply the edge mints with it.
TEST_F(MgmtApplyTest, WebSpherePropertyAliasSelectsTheKeySet) {
  std::string out;
  EXPECT_EQ(edge_->edgectl({"property", "set", "com.ibm.ws.sip.key.set", "websphere"}, &out), 3) << out;
  ASSERT_EQ(edge_->edgectl({"keyset", "create", "websphere"}, &out), 0) << out;
  ASSERT_EQ(edge_->edgectl({"property", "set", "com.ibm.ws.sip.key.set", "websphere"}, &out), 0) << out;
  const auto staged = edgectl_json<v1::Property>(*edge_, {"property", "get", "sip.flow_token.key_set"});
  EXPECT_TRUE(staged.staged());
  EXPECT_EQ(staged.staged_value(), "websphere");
  ASSERT_EQ(edge_->edgectl({"apply"}, &out), 0) << out;
  const auto s = edgectl_json<v1::Status>(*edge_, {"status"});
  EXPECT_EQ(s.front_end().key_set(), "websphere");
  EXPECT_EQ(edgectl_json<v1::Property>(*edge_, {"property", "get", "com.ibm.ws.sip.key.set"}).value(),
            "websphere");

  TestUa& alice = ua("alice");
  const SipMessage ok = register_through_edge(alice, Transport::tcp);
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(token_key_version(path_token(ok)), 1u);
  // sipflow is no longer in use and may be destroyed; websphere may not.
  EXPECT_EQ(edge_->edgectl({"keyset", "destroy", "websphere"}, &out), 3) << out;
  EXPECT_EQ(edge_->edgectl({"keyset", "destroy", "sipflow"}, &out), 0) << out;
}

// Confirmed commit: `apply --confirm-within 1` runs the change at once; without
// `edgectl confirm` the agent puts the previous generation back by itself.
// With a confirm in time the change is committed.
TEST_F(MgmtApplyTest, UnconfirmedApplyRollsBackAtItsDeadlineAndConfirmCommits) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  std::string out;
  ASSERT_EQ(edge_->edgectl({"property", "set", "sip.flow_timer", "50"}, &out), 0) << out;
  const auto pending = edgectl_json<v1::ApplyResponse>(*edge_, {"apply", "--confirm-within", "1"});
  EXPECT_TRUE(pending.pending_confirm());
  SipMessage during = alice.register_with();
  ASSERT_EQ(during.status(), 200);
  EXPECT_EQ(during.header("Flow-Timer"), "50") << "the change runs while it waits for confirmation";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  v1::Status s;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = edgectl_json<v1::Status>(*edge_, {"status"});
  } while (s.has_pending() && s.pending().generation() != 0 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_EQ(edgectl_json<v1::Property>(*edge_, {"property", "get", "sip.flow_timer"}).value(), "30");
  SipMessage after = alice.register_with();
  ASSERT_EQ(after.status(), 200);
  EXPECT_EQ(after.header("Flow-Timer"), "30") << "not rolled back at the deadline";
  EXPECT_TRUE(edge_->wait_for_log("event=mgmt_rollback", std::chrono::seconds(2))) << edge_->log();

  // Now with a confirm in time.
  ASSERT_EQ(edge_->edgectl({"property", "set", "sip.flow_timer", "55"}, &out), 0) << out;
  ASSERT_EQ(edge_->edgectl({"apply", "--confirm-within", "30"}, &out), 0) << out;
  ASSERT_EQ(edge_->edgectl({"confirm"}, &out), 0) << out;
  EXPECT_EQ(edgectl_json<v1::Status>(*edge_, {"status"}).generation(), 2u);
  const SipMessage confirmed = alice.register_with();
  EXPECT_EQ(confirmed.header("Flow-Timer"), "55");
  // Every change is in the audit log, none with a secret.
  const std::string audit = read_file(edge_->state_dir() / "audit.log");
  EXPECT_NE(audit.find("\"action\":\"apply\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"action\":\"confirm_deadline\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"action\":\"confirm\""), std::string::npos) << audit;
  EXPECT_EQ(audit.find(read_file(edge_->state_dir() / "hsm" / "user-pin")), std::string::npos);
}

// kill -9 at many moments of an apply, then a start on the same state: edged
// always comes up in one of the two generations (never a torn one), with the
// configuration of that generation.
class MgmtCrashTest : public ::testing::Test {};

TEST_F(MgmtCrashTest, KillNineDuringApplyStartsInTheOldOrTheNewGeneration) {
  EdgedOptions o;
  o.wss_port = 0;
  EdgedProcess edge(o);
  std::mt19937 rng(20261126);
  std::uniform_int_distribution<int> delay_us(0, 60'000);
  std::uint64_t generation = 1;
  int saw_old = 0, saw_new = 0;
  for (int round = 0; round < 12; ++round) {
    const std::string timer = std::to_string(40 + round);
    std::string out;
    ASSERT_EQ(edge.edgectl({"property", "set", "sip.flow_timer", timer}, &out), 0) << out;
    std::thread apply([&] {
      std::string ignored;
      edge.edgectl({"apply"}, &ignored);
    });
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    edge.kill9();
    apply.join();
    ASSERT_NO_THROW(edge.restart()) << "round " << round;
    const auto s = edgectl_json<v1::Status>(edge, {"status"});
    const auto p = edgectl_json<v1::Property>(edge, {"property", "get", "sip.flow_timer"});
    if (s.generation() == generation) {
      ++saw_old;
      EXPECT_NE(p.value(), timer) << "round " << round;
    } else {
      ASSERT_EQ(s.generation(), generation + 1) << "round " << round;
      EXPECT_EQ(p.value(), timer) << "round " << round;
      ++saw_new;
      generation = s.generation();
    }
    EXPECT_FALSE(s.staged_changes()) << "staged changes live in memory only";
    for (const auto& e : std::filesystem::directory_iterator(edge.state_dir() / "config")) {
      EXPECT_NE(e.path().extension(), ".tmp") << "a temporary file survived the start";
    }
  }
  std::cout << "kill -9 rounds: " << saw_old << " came back in the old generation, " << saw_new
            << " in the new one\n";
  EXPECT_EQ(edge.stop(), 0);
}

// A health check that fails after the swap puts the previous generation back
// by itself. The HSM is SoftHSM behind our fault shim: the apply's validation
// mints and verifies with the new key version (C_Sign x2, both pass), then the
// shim fails every later C_Sign, so the health check's mint with the new
// version fails: the agent restores generation 1 and reports why.
TEST(MgmtFaultTest, HealthCheckFailureRollsBackByItself) {
  TempDir hsm_dir("edge-shim-hsm");
  for (const std::vector<std::string>& args : {std::vector<std::string>{"init-lab-token"},
                                               std::vector<std::string>{"keyset", "create", "sipflow"}}) {
    ProcessOptions p;
    p.program = find_program("env", "coreutils");
    p.args = {"EDGE_STATE_DIR=" + hsm_dir.path().string(), edge_hsm_program().string()};
    p.args.insert(p.args.end(), args.begin(), args.end());
    p.log_file = hsm_dir.path() / "edge-hsm.log";
    ChildProcess tool(p);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (tool.running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(tool.stop(std::chrono::milliseconds(500)), 0) << tool.log();
  }
  const auto control = hsm_dir.path() / "shim.control";
  write_file(control, "");
  EdgedOptions o;
  o.tls_port = 0;
  o.wss_port = 0;
  o.env = {"SOFTHSM2_CONF=" + (hsm_dir.path() / "hsm" / "softhsm2.conf").string(),
           "EDGE_P11SHIM_CONTROL=" + control.string()};
  o.extra = {{"hsm.module", EDGE_P11SHIM_PATH},
             {"hsm.token", "edge-lab"},
             {"hsm.pin_file", (hsm_dir.path() / "hsm" / "user-pin").string()}};
  EdgedProcess edge(o);
  std::string out;
  ASSERT_EQ(edge.edgectl({"keyset", "rotate", "sipflow"}, &out), 0) << out;
  ASSERT_EQ(edge.edgectl({"property", "set", "sip.flow_timer", "77"}, &out), 0) << out;
  write_file(control, "C_Sign CKR_DEVICE_ERROR after=2\n");
  const int rc = edge.edgectl({"apply"}, &out);
  write_file(control, "");
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("ABORTED"), std::string::npos) << out;
  EXPECT_NE(out.find("health"), std::string::npos) << out;
  EXPECT_NE(out.find("rolled back"), std::string::npos) << out;

  // Generation 1 is running again: minting with v1, the old Flow-Timer.
  const auto s = edgectl_json<v1::Status>(edge, {"status"});
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_EQ(s.front_end().minting_version(), 1u);
  EXPECT_EQ(s.front_end().state(), "running");
  EXPECT_EQ(edgectl_json<v1::Property>(edge, {"property", "get", "sip.flow_timer"}).value(), "30");
  EXPECT_TRUE(edge.wait_for_log("event=mgmt_rollback", std::chrono::seconds(2))) << edge.log();
  EXPECT_EQ(edge.stop(), 0) << edge.log();
}

// The config store's seal end to end: someone with write access to the state
// directory edits the newest generation and recomputes its SHA-256 while edged
// is stopped. The next start runs the generation before, and says so in the log,
// in edgectl status and in the audit log.
TEST(EdgedConfigStore, AnEditedNewestGenerationIsRefusedAndReported) {
  EdgedOptions o;
  o.tls_port = 0;
  o.wss_port = 0;
  EdgedProcess edge(o);
  std::string out;
  ASSERT_EQ(edge.edgectl({"property", "set", "sip.flow_timer", "45"}, &out), 0) << out;
  ASSERT_EQ(edge.edgectl({"apply"}, &out), 0) << out;
  ASSERT_EQ(edgectl_json<v1::Status>(edge, {"status"}).config_store().state(), "ok");
  ASSERT_EQ(edge.stop(), 0) << edge.log();

  const auto file = edge.state_dir() / "config" / "gen-0000000002.cfg";
  mgmt::v1::StoreEnvelope env;
  ASSERT_TRUE(env.ParseFromString(read_file(file)));
  mgmt::v1::StoredGeneration g;
  ASSERT_TRUE(g.ParseFromString(env.generation()));
  g.mutable_config()->mutable_sip()->set_flow_timer(3600);
  env.set_generation(g.SerializeAsString());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ASSERT_EQ(EVP_Digest(env.generation().data(), env.generation().size(), md, &len, EVP_sha256(), nullptr), 1);
  env.set_sha256(std::string(reinterpret_cast<const char*>(md), len));
  write_file(file, env.SerializeAsString());

  edge.restart();
  EXPECT_TRUE(edge.wait_for_log("event=config_store_corrupt newest=2 running=1", std::chrono::seconds(5)))
      << edge.log();
  const auto s = edgectl_json<v1::Status>(edge, {"status"});
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_EQ(s.config_store().state(), "newest_refused");
  ASSERT_EQ(s.config_store().refused_size(), 1);
  EXPECT_NE(s.config_store().refused(0).reason().find("seal mismatch"), std::string::npos);
  EXPECT_EQ(edgectl_json<v1::Property>(edge, {"property", "get", "sip.flow_timer"}).value(), "30");
  ASSERT_EQ(edge.edgectl({"status"}, &out), 0) << out;
  EXPECT_NE(out.find("newest_refused (generation 2 refused, running 1)"), std::string::npos) << out;
  EXPECT_NE(read_file(edge.state_dir() / "audit.log").find("config_store_corrupt"), std::string::npos);
  EXPECT_EQ(edge.stop(), 0) << edge.log();
}

}  // namespace
}  // namespace edge::test
