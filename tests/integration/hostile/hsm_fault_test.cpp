// Issue 8 "HSM faults end to end": edged on SoftHSM behind the PKCS#11 fault shim (tests/support/README.md),
// faults switched on and off through the shim's live control file while clients use the edge.
//
// The policy (docs/operations.md, "When the HSM is away"):
//  - flows whose token is cached keep routing (no HSM call is needed for them);
//  - what needs the HSM (a new token for a REGISTER on a new flow, the verify of a token that is not
//    cached) is answered 503 with Retry-After while the HSM is away;
//  - the state shows in the SIGUSR1 status line (hsm=), in `edgectl status` (hsm.state), in the log
//    (event=hsm_state) and as an HSM_FAULT event on `edgectl events`;
//  - recovery needs no restart: the first HSM call after the back-off rebuilds the sessions;
//  - a refused PIN is never retried (no lockout): exit 6 at start (RestartPreventExitStatus), state
//    pin_incorrect at run time; no C_Login at all when the token flags say a wrong PIN was tried.
#include <google/protobuf/util/json_util.h>

#include <edge/mgmt/v1/agent.pb.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdio>
#include <future>
#include <iterator>
#include <sstream>
#include <thread>

#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

namespace v1 = edge::mgmt::v1;

// A lab SoftHSM token with the key set "sipflow", made by edge-hsm in its own directory (not by edged),
// so edged can be pointed at it through the shim.
void provision_token(const std::filesystem::path& dir) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"init-lab-token"},
                                               std::vector<std::string>{"keyset", "create", "sipflow"}}) {
    ProcessOptions p;
    p.program = find_program("env", "coreutils");
    p.args = {"EDGE_STATE_DIR=" + dir.string(), edge_hsm_program().string()};
    p.args.insert(p.args.end(), args.begin(), args.end());
    p.log_file = dir / "edge-hsm.log";
    ChildProcess tool(p);
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (tool.running() && Clock::now() < deadline) std::this_thread::sleep_for(Millis(20));
    const int rc = tool.stop(Millis(500));
    if (rc != 0) throw std::runtime_error("edge-hsm failed: " + tool.log());
  }
}

// edged options for running on the shim with the token in `dir` (and its PIN file, unless another is given).
void use_shim(EdgedOptions& o, const std::filesystem::path& dir, std::filesystem::path pin_file = {}) {
  if (pin_file.empty()) pin_file = dir / "hsm" / "user-pin";
  o.env = {"SOFTHSM2_CONF=" + (dir / "hsm" / "softhsm2.conf").string(),
           "EDGE_P11SHIM_CONTROL=" + (dir / "shim.control").string(),
           "EDGE_P11SHIM_STATS=" + (dir / "shim.stats").string()};
  o.extra.push_back({"hsm.module", EDGE_P11SHIM_PATH});
  o.extra.push_back({"hsm.token", "edge-lab"});
  o.extra.push_back({"hsm.pin_file", pin_file.string()});
}

// How many calls of `fn` the shim saw in the last edged run (its stats file, written at exit).
unsigned long long shim_calls(const std::filesystem::path& dir, const std::string& fn) {
  std::istringstream in(read_file(dir / "shim.stats"));
  const std::string key = "calls " + fn + " ";
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(key)) return std::stoull(line.substr(key.size()));
  }
  throw std::runtime_error("no 'calls " + fn + "' in the shim's stats file");
}

// Starts edged with `o`, expecting it to fail at start-up: the fixture's message (exit status, log).
std::string start_expecting_failure(const EdgedOptions& o) {
  try {
    EdgedProcess edge(o);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "edged started";
  return {};
}

class HsmFault : public HostileTest {
 protected:
  EdgedOptions edged_options() override {
    hsm_dir_ = std::make_unique<TempDir>("edge-shim-hsm");
    provision_token(hsm_dir_->path());
    write_file(control(), "");
    EdgedOptions o = HostileTest::edged_options();
    o.tls_port = 0;
    o.wss_port = 0;
    use_shim(o, hsm_dir_->path());
    return o;
  }
  std::filesystem::path control() const { return hsm_dir_->path() / "shim.control"; }
  void fault(const std::string& rules) { write_file(control(), rules); }

  // REGISTER of a new UA on a new flow.
  SipMessage register_new(Transport t = Transport::tcp) {
    TestUa& u = ua("new" + std::to_string(++serial_));
    return register_through_edge(u, t);
  }
  // A request from a new client whose Route carries a token the edge does not hold: a one-character
  // change of the bystander's, so only the HSM can tell (403 when it can, 503 when it is away).
  SipMessage request_with_uncached_token() {
    TestUa& u = ua("peer" + std::to_string(++serial_));
    u.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
    SipMessage m = u.make_invite(bystander_->aor());
    m.set_header("Route", "<sip:" + tamper_token(token_) + "@127.0.0.1:5060;transport=tcp;lr>");
    u.send(m);
    return u.receive_response("INVITE");
  }
  v1::Status edgectl_status() {
    std::string out;
    EXPECT_EQ(edge_->edgectl({"--json", "status"}, &out), 0) << out;
    v1::Status s;
    google::protobuf::util::JsonParseOptions po;
    po.ignore_unknown_fields = true;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(out, &s, po).ok()) << out;
    return s;
  }
  // `edgectl events --count N` in the background (events are not replayed: start it before the fault).
  std::future<std::string> watch_events(int count) {
    auto f = std::async(std::launch::async, [this, count] {
      std::string out;
      edge_->edgectl({"events", "--count", std::to_string(count)}, &out);
      return out;
    });
    std::this_thread::sleep_for(Millis(500));  // let the watch subscribe
    return f;
  }

  void SetUp() override {
    HostileTest::SetUp();
    token_ = path_token(bystander_->register_with());
    ASSERT_FALSE(token_.empty());
  }

  std::unique_ptr<TempDir> hsm_dir_;
  std::string token_;
};

// A session handle that goes invalid mid-traffic (the HSM restarted its session table): the library
// reopens the session and retries once, so clients see nothing.
TEST_F(HsmFault, InvalidatedSessionsAreReopenedWithoutAnError) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    fault("C_Sign CKR_SESSION_HANDLE_INVALID count=1\nC_Verify CKR_SESSION_HANDLE_INVALID count=1\n");
    EXPECT_EQ(register_new().status(), 200);
    EXPECT_EQ(request_with_uncached_token().status(), 403);
  }
  fault("");
  EXPECT_EQ(edge_->status().text("hsm"), "available");
  expect_unharmed();
}

// The token is gone for a few seconds, then back. The issue says 30 s; 5 s shows the same behaviour
// (the back-off doubles from 100 ms, so the first rebuild after the token returns comes within about
// the outage's length again) and keeps the test quick.
TEST_F(HsmFault, TokenGoneThenBackKeepsCachedFlowsAndRecoversWithoutARestart) {
  auto events = watch_events(2);
  const auto outage_start = Clock::now();
  fault("* CKR_DEVICE_REMOVED\n");

  // New tokens: 503 with Retry-After, from the edge (not the core).
  const SipMessage r = register_new();
  EXPECT_EQ(r.status(), 503) << r.summary();
  EXPECT_TRUE(r.header("Retry-After").has_value()) << r.summary();
  EXPECT_NE(r.header("Server").value_or(""), kCoreServer);

  fault("* CKR_TOKEN_NOT_PRESENT\n");
  // Uncached verifies: 503 (not 403: the edge cannot tell).
  const SipMessage v = request_with_uncached_token();
  EXPECT_EQ(v.status(), 503) << v.summary();
  EXPECT_TRUE(v.header("Retry-After").has_value());

  // Status shows it.
  EXPECT_EQ(edge_->status().text("hsm"), "unavailable");
  EXPECT_EQ(edgectl_status().hsm().state(), "unavailable");
  EXPECT_TRUE(edge_->wait_for_log("event=hsm_state state=unavailable", Millis(2000))) << edge_->log();

  // The cached flow keeps routing: a call reaches the bystander, its refresh (same flow, cached token)
  // is answered by the core.
  {
    TestUa& caller = ua("caller-during-outage");
    caller.connect(Transport::udp, core_->endpoint(Transport::udp));
    Call c = call(caller, *bystander_);
    caller.send(caller.make_in_dialog(c.caller, "BYE"));
    bystander_->send(bystander_->make_response(bystander_->receive_request("BYE"), 200, "OK"));
    EXPECT_EQ(caller.receive_response("BYE").status(), 200);
  }
  EXPECT_EQ(bystander_->register_with().status(), 200);

  // Keep the token away for 5 s in all, then give it back.
  std::this_thread::sleep_until(outage_start + std::chrono::seconds(5));
  fault("");
  const auto back = Clock::now();
  int status = 0;
  while (Clock::now() - back < std::chrono::seconds(20)) {
    const SipMessage again = register_new();
    status = again.status();
    if (status == 200) {
      EXPECT_FALSE(path_token(again).empty());
      break;
    }
    EXPECT_EQ(status, 503) << again.summary();
    std::this_thread::sleep_for(Millis(500));
  }
  ASSERT_EQ(status, 200) << "no recovery within 20 s of the token's return";
  std::cout << "recovered " << std::chrono::duration_cast<Millis>(Clock::now() - back).count()
            << " ms after the token returned\n";
  EXPECT_EQ(request_with_uncached_token().status(), 403);
  EXPECT_EQ(edge_->status().text("hsm"), "available");
  EXPECT_EQ(edgectl_status().hsm().state(), "available");
  EXPECT_TRUE(edge_->wait_for_log("event=hsm_state state=available", Millis(2000)));

  // Two HSM_FAULT events: away (ok=false), back (ok=true).
  ASSERT_EQ(events.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const std::string ev = events.get();
  EXPECT_NE(ev.find("unavailable"), std::string::npos) << ev;
  EXPECT_NE(ev.find("available"), std::string::npos) << ev;
  expect_unharmed();
}

// A slow HSM (300 ms per sign): registrations take longer but all succeed, and flows with cached tokens
// are not held up behind them for long.
TEST_F(HsmFault, SlowHsmDelaysButDoesNotFail) {
  fault("C_Sign delay_ms=300\nC_Verify delay_ms=300\n");
  std::vector<std::future<int>> regs;
  std::vector<TestUa*> uas;
  for (int i = 0; i < 4; ++i) uas.push_back(&ua("slow" + std::to_string(i)));
  for (TestUa* u : uas) {
    regs.push_back(std::async(std::launch::async,
                              [this, u] { return register_through_edge(*u, Transport::tcp).status(); }));
  }
  const auto start = Clock::now();
  bystander_->send_ping();
  EXPECT_TRUE(bystander_->wait_pong(Millis(3000)));
  for (auto& f : regs) EXPECT_EQ(f.get(), 200);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(request_with_uncached_token().status(), 403);
  fault("");
  for (TestUa* u : uas) u->close();
  expect_unharmed();
}

// A PIN the token refuses at run time (after a fault made the library log in again): not retried (a
// retry loop would lock the token), state pin_incorrect, new tokens 503, cached flows keep routing.
TEST_F(HsmFault, PinRefusedAtRunTimeIsNotRetried) {
  fault("* CKR_DEVICE_REMOVED\n");
  EXPECT_EQ(register_new().status(), 503);
  fault("C_Login CKR_PIN_INCORRECT\n");
  std::string state;
  for (int i = 0; i < 40 && state != "pin_incorrect"; ++i) {
    std::this_thread::sleep_for(Millis(250));
    EXPECT_EQ(register_new().status(), 503);
    state = edge_->status().text("hsm");
  }
  ASSERT_EQ(state, "pin_incorrect") << edge_->log();
  EXPECT_EQ(edgectl_status().hsm().state(), "pin_incorrect");
  EXPECT_TRUE(edge_->wait_for_log("state=pin_incorrect", Millis(2000)));
  // Not retried: more traffic, no more C_Login.
  const std::string before = read_file(hsm_dir_->path() / "shim.stats");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(register_new().status(), 503);
  std::this_thread::sleep_for(Millis(1500));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(register_new().status(), 503);
  EXPECT_EQ(read_file(hsm_dir_->path() / "shim.stats"), before) << "the HSM was asked again";
  // Cached flow still routes.
  EXPECT_EQ(bystander_->register_with().status(), 200);
  fault("");
  expect_unharmed();
}

// HSM admission control end to end (docs/operations.md, "HSM admission control"): a source address that
// spent its mint budget gets 503 with Retry-After for a REGISTER on a new TCP flow, flows that registered
// keep working, and the refusal shows in `edgectl status`, the status line and as an HSM_ADMISSION event.
class HsmAdmission : public HsmFault {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o = HsmFault::edged_options();
    // Three mints for unregistered flows from 127.0.0.1, never refilled: the bystander's and two more.
    o.extra.push_back({"hsm.budget.mint_per_second", "0"});
    o.extra.push_back({"hsm.budget.mint_burst", "3"});
    return o;
  }
};

TEST_F(HsmAdmission, ASourceOverItsMintBudgetGets503AndTheRefusalIsReported) {
  auto events = watch_events(1);
  EXPECT_EQ(register_new().status(), 200);
  EXPECT_EQ(register_new().status(), 200);
  const SipMessage refused = register_new();
  EXPECT_EQ(refused.status(), 503);
  EXPECT_TRUE(refused.header("Retry-After").has_value());
  // Registered flows are not budgeted: the bystander still reaches the core and back.
  bystander_->send_ping();
  EXPECT_TRUE(bystander_->wait_pong(Millis(3000)));

  const v1::Status s = edgectl_status();
  EXPECT_EQ(s.front_end().hsm_work().refused_budget(), 1u);
  EXPECT_GE(s.front_end().hsm_work().parked(), 3u);
  EXPECT_GE(s.front_end().hsm_work().threads(), 1u);
  ASSERT_EQ(events.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const std::string ev = events.get();
  EXPECT_NE(ev.find("hsm-admission failed"), std::string::npos) << ev;
  EXPECT_NE(ev.find("source budget 1"), std::string::npos) << ev;
  EXPECT_TRUE(edge_->wait_for_log("event=hsm_busy", Millis(2000)));
  const EdgedStatus line = edge_->status();
  EXPECT_EQ(line.number("hsm_refused_budget"), 1u);
  EXPECT_EQ(line.number("hsm_resume_dropped"), 0u);
}

// A PIN the token refuses at start: edged exits 6 (not 4: the unit must not restart it) and says why,
// without a PIN in the log.
TEST(HsmFaultAtStart, WrongPinExitsSixWithAClearMessage) {
  TempDir dir("edge-shim-pin");
  provision_token(dir.path());
  write_file(dir.path() / "shim.control", "C_Login CKR_PIN_INCORRECT\n");
  EdgedOptions o;
  o.tls_port = 0;
  o.wss_port = 0;
  use_shim(o, dir.path());
  const std::string why = start_expecting_failure(o);
  EXPECT_NE(why.find("status 6"), std::string::npos) << why;
  EXPECT_NE(why.find("event=hsm_pin_refused"), std::string::npos) << why;
  EXPECT_NE(why.find("CKR_PIN_INCORRECT"), std::string::npos) << why;
  std::string pin = read_file(dir.path() / "hsm" / "user-pin");
  pin = pin.substr(0, pin.find('\n'));
  ASSERT_FALSE(pin.empty());
  EXPECT_EQ(why.find(pin), std::string::npos) << "the PIN reached the log";
}

// No PIN lockout, counted at the token (the shim counts every C_Login that reaches SoftHSM, no faults
// injected): a really wrong PIN at start-up spends exactly one C_Login and exits 6, which the unit lists
// in RestartPreventExitStatus (no restart loop). The operator's next start, even with the right PIN,
// spends none: SoftHSM now reports CKF_USER_PIN_COUNT_LOW, edged refuses to try, names the flag in the
// log and in systemd's STATUS=, and exits 6 again. One C_Login per operator action, never a loop.
TEST(HsmFaultAtStart, WrongPinSpendsOneLoginAndTheNextStartNone) {
  TempDir dir("edge-shim-count");
  provision_token(dir.path());
  write_file(dir.path() / "shim.control", "");
  const auto wrong_pin = dir.path() / "wrong-pin";
  write_file(wrong_pin, "000000\n");
  std::filesystem::permissions(wrong_pin,
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  EdgedOptions o;
  o.tls_port = 0;
  o.wss_port = 0;
  use_shim(o, dir.path(), wrong_pin);
  std::string why = start_expecting_failure(o);
  EXPECT_NE(why.find("status 6"), std::string::npos) << why;
  EXPECT_NE(why.find("CKR_PIN_INCORRECT"), std::string::npos) << why;
  EXPECT_EQ(shim_calls(dir.path(), "C_Login"), 1u) << why;

  // The unit does not restart edged on this exit status.
  const std::string unit = read_file(EDGE_SYSTEMD_UNIT);
  const auto at = unit.find("\nRestartPreventExitStatus=");
  ASSERT_NE(at, std::string::npos);
  std::istringstream codes(unit.substr(at + 26, unit.find('\n', at + 1) - at - 26));
  std::vector<std::string> listed{std::istream_iterator<std::string>(codes),
                                  std::istream_iterator<std::string>()};
  EXPECT_NE(std::find(listed.begin(), listed.end(), "6"), listed.end()) << unit.substr(at, 40);

  // The operator fixes the PIN file and starts edged again: no C_Login while the flag is up.
  std::filesystem::remove(dir.path() / "shim.stats");
  EdgedOptions again;
  again.tls_port = 0;
  again.wss_port = 0;
  use_shim(again, dir.path());
  again.env.push_back("NOTIFY_SOCKET=" + (dir.path() / "notify.sock").string());
  const int notify = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(notify, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", (dir.path() / "notify.sock").c_str());
  ASSERT_EQ(::bind(notify, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  why = start_expecting_failure(again);
  EXPECT_NE(why.find("status 6"), std::string::npos) << why;
  EXPECT_NE(why.find("event=hsm_pin_refused"), std::string::npos) << why;
  EXPECT_NE(why.find("CKF_USER_PIN_COUNT_LOW"), std::string::npos) << why;
  EXPECT_NE(why.find("not attempted"), std::string::npos) << why;
  EXPECT_EQ(shim_calls(dir.path(), "C_Login"), 0u) << why;
  // edged has exited: its STATUS= datagram, if sent, is queued on the socket.
  char buf[4096];
  const ssize_t n = ::recv(notify, buf, sizeof buf, MSG_DONTWAIT);
  ::close(notify);
  ASSERT_GT(n, 0) << "no sd_notify STATUS= before the exit";
  const std::string status(buf, static_cast<std::size_t>(n));
  EXPECT_NE(status.find("STATUS=HSM PIN refused"), std::string::npos) << status;
  EXPECT_NE(status.find("CKF_USER_PIN_COUNT_LOW"), std::string::npos) << status;
}

}  // namespace
}  // namespace edge::test::hostile
