// Agent against a real SoftHSM token and a scripted front end: staging, key sets, apply, confirm, rollback.
#include <edge/mgmt/agent.h>
#include <edge/test/fake_front_end.h>
#include <edge/test/process.h>
#include <edge/test/softhsm_fixture.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace edge::mgmt {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

using edge::test::FakeFrontEnd;

ErrorCode code_of(const std::function<void()>& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const MgmtError& e) {
    if (what != nullptr) *what = e.what();
    return e.code();
  }
  ADD_FAILURE() << "no MgmtError thrown";
  return ErrorCode::internal;
}

v1::SetPropertyRequest set(const std::string& name, const std::string& value) {
  v1::SetPropertyRequest r;
  r.set_name(name);
  r.set_value(value);
  return r;
}

v1::ApplyRequest apply_req(const std::string& id = "", std::uint64_t expected = 0,
                           std::uint32_t confirm = 0) {
  v1::ApplyRequest r;
  r.set_request_id(id);
  r.set_expected_generation(expected);
  r.set_confirm_within_seconds(confirm);
  return r;
}

// Waits (generously) for an event of `kind`.
std::optional<v1::Event> wait_for(EventBus::Subscription& s, v1::Event::Kind kind,
                                  std::chrono::seconds bound = 20s) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < until) {
    if (auto e = s.next(200ms); e && e->kind() == kind) return e;
  }
  return std::nullopt;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm.keysets().create("sipflow");
    agent = make_agent();
    // As edged boots its front end: built from nothing.
    fe.apply(agent->boot_config(), v1::RESTART_LISTENERS);
    agent->attach_front_end(&fe);
  }

  static v1::ApplianceConfig initial() {
    const auto& reg = PropertyRegistry::instance();
    auto c = reg.defaults();
    reg.set(c, "sip.flow_token.key_set", "sipflow");
    reg.set(c, "listen", "udp 127.0.0.1 0");
    reg.set(c, "mgmt.drain_timeout_ms", "100");
    return c;
  }
  std::unique_ptr<Agent> make_agent() {
    AgentOptions o;
    o.state_dir = state.path();
    o.version = "1.2.3";
    return std::make_unique<Agent>(o, hsm, initial());
  }
  std::size_t count(const std::string& call) {
    const auto c = fe.calls();
    return static_cast<std::size_t>(std::count(c.begin(), c.end(), call));
  }
  v1::KeyVersion version_of(const std::string& set, std::uint32_t v) {
    const v1::KeySet ks = agent->get_key_set(set);
    for (const auto& kv : ks.versions()) {
      if (kv.version() == v) return kv;
    }
    ADD_FAILURE() << "no version " << v;
    return {};
  }
  std::string audit_text() { return edge::test::read_file(state.path() / "audit.log"); }

  edge::test::SoftHsmToken token;
  hsm::Hsm hsm{token.config()};
  edge::test::TempDir state{"edge-agent"};
  FakeFrontEnd fe{&hsm};
  Caller op{"uid:1000", v1::ROLE_OPERATOR};
  std::unique_ptr<Agent> agent;
};

TEST_F(AgentTest, FirstBootCommitsGenerationOne) {
  EXPECT_EQ(agent->generation(), 1u);
  const auto gens = agent->list_generations();
  ASSERT_EQ(gens.generations_size(), 1);
  EXPECT_EQ(gens.generations(0).actor(), "edged");
  EXPECT_EQ(gens.generations(0).summary(), "first boot");
  EXPECT_TRUE(gens.generations(0).current());
  const auto st = agent->status();
  EXPECT_EQ(st.version(), "1.2.3");
  EXPECT_EQ(st.generation(), 1u);
  EXPECT_FALSE(st.staged_changes());
  EXPECT_EQ(st.hsm().state(), "available");
  EXPECT_EQ(st.front_end().state(), "running");
}

TEST_F(AgentTest, RotationIsStagedAndMintsOnlyAfterApply) {
  auto events = agent->events().subscribe();
  EXPECT_EQ(fe.minting_version(), 1u);
  const auto ch = agent->rotate_key_set(op, [] {
    v1::RotateKeySetRequest r;
    r.set_name("sipflow");
    return r;
  }());
  EXPECT_TRUE(ch.staged());
  EXPECT_TRUE(wait_for(*events, v1::Event::KEY_SET, 5s));
  // The HSM has version 2 now, but the front end keeps minting with 1.
  EXPECT_EQ(fe.minting_version(), 1u);
  EXPECT_TRUE(version_of("sipflow", 1).minting());
  EXPECT_TRUE(version_of("sipflow", 2).staged_minting());
  EXPECT_FALSE(version_of("sipflow", 2).minting());
  EXPECT_EQ(agent->get_property("sip.flow_token.key_version").staged_value(), "2");
  EXPECT_TRUE(agent->status().staged_changes());

  const auto resp = agent->apply(op, apply_req());
  EXPECT_EQ(resp.generation(), 2u);
  EXPECT_EQ(resp.restart(), v1::RESTART_FRONT_END);
  ASSERT_EQ(resp.changes_size(), 1);
  EXPECT_EQ(resp.changes(0), "sip.flow_token.key_version: 0 -> 2");
  EXPECT_EQ(fe.current().sip().flow_token().key_version(), 2u);
  EXPECT_EQ(fe.minting_version(), 2u);
  hsm::MacTag tag{};
  const std::uint8_t data[] = {1, 2, 3};
  EXPECT_EQ(fe.mac()->sign(2, data, tag), hsm::MacStatus::ok);
  EXPECT_TRUE(version_of("sipflow", 2).minting());
  EXPECT_TRUE(wait_for(*events, v1::Event::APPLY, 5s));
  EXPECT_EQ(agent->generation(), 2u);
  EXPECT_FALSE(agent->status().staged_changes());
}

TEST_F(AgentTest, BadValuesAndMissingKeySetsChangeNothing) {
  std::string what;
  EXPECT_EQ(code_of([&] { agent->set_property(op, set("sip.flow_timer", "0")); }, &what),
            ErrorCode::invalid_argument);
  EXPECT_NE(what.find("sip.flow_timer"), std::string::npos);
  EXPECT_EQ(code_of([&] { agent->set_property(op, set("sip.flowtimer", "5")); }),
            ErrorCode::invalid_argument);
  EXPECT_EQ(code_of([&] { agent->set_property(op, set("com.ibm.ws.sip.key.set", "nosuch")); }, &what),
            ErrorCode::failed_precondition);
  EXPECT_NE(what.find("'nosuch'"), std::string::npos);
  EXPECT_FALSE(agent->status().staged_changes());
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req()); }, &what), ErrorCode::failed_precondition);
  EXPECT_EQ(what, "nothing staged");

  // A key set that disappears behind the agent's back (another tool) after staging.
  hsm.keysets().create("other");
  agent->set_property(op, set("sip.flow_token.key_set", "other"));
  agent->set_property(op, set("sip.flow_timer", "60"));
  hsm.keysets().destroy("other");
  const auto before = fe.calls().size();
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req()); }, &what), ErrorCode::failed_precondition);
  EXPECT_NE(what.find("'other'"), std::string::npos);
  EXPECT_EQ(agent->generation(), 1u);
  EXPECT_EQ(fe.calls().size(), before) << "the front end was touched";
  EXPECT_TRUE(agent->status().staged_changes()) << "a refused apply keeps the staged changes";

  // The front end's own validation refuses without a drain.
  agent->set_property(op, set("sip.flow_token.key_set", "sipflow"));
  fe.validate_reason = "cannot bind udp 127.0.0.1:5060";
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req()); }, &what), ErrorCode::failed_precondition);
  EXPECT_NE(what.find("cannot bind"), std::string::npos);
  EXPECT_EQ(count("drain"), 0u);
  EXPECT_EQ(agent->generation(), 1u);
  EXPECT_NE(audit_text().find("\"result\":\"refused: front end refused: cannot bind"), std::string::npos);
}

TEST_F(AgentTest, FailedHealthCheckRestoresThePreviousConfiguration) {
  auto events = agent->events().subscribe();
  agent->set_property(op, set("sip.flow_timer", "60"));
  fe.unhealthy_times = 1;
  std::string what;
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req()); }, &what), ErrorCode::aborted);
  EXPECT_NE(what.find("health check failed: listener udp"), std::string::npos) << what;
  EXPECT_NE(what.find("rolled back to generation 1"), std::string::npos) << what;
  EXPECT_EQ(agent->generation(), 1u);
  EXPECT_EQ(fe.current().sip().flow_timer(), 30u) << "previous configuration re-applied";
  EXPECT_EQ(count("drain"), 2u);
  const auto e = wait_for(*events, v1::Event::ROLLBACK, 5s);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->ok());
  EXPECT_EQ(agent->list_generations().generations_size(), 1);
  // Still staged: the operator may retry once the cause is fixed.
  EXPECT_EQ(agent->apply(op, apply_req()).generation(), 2u);
  EXPECT_EQ(fe.current().sip().flow_timer(), 60u);
}

TEST_F(AgentTest, UnconfirmedApplyRollsBackAtTheDeadline) {
  auto events = agent->events().subscribe();
  agent->set_property(op, set("sip.flow_timer", "60"));
  const auto resp = agent->apply(op, apply_req("", 0, 1));
  EXPECT_TRUE(resp.pending_confirm());
  EXPECT_EQ(resp.generation(), 2u);
  EXPECT_EQ(fe.current().sip().flow_timer(), 60u);
  EXPECT_EQ(agent->status().pending().generation(), 2u);
  EXPECT_EQ(agent->generation(), 1u);
  EXPECT_TRUE(fs::exists(state.path() / "config" / "pending.cfg"));
  const auto e = wait_for(*events, v1::Event::ROLLBACK);
  ASSERT_TRUE(e) << "no rollback at the deadline";
  EXPECT_EQ(fe.current().sip().flow_timer(), 30u);
  EXPECT_EQ(agent->generation(), 1u);
  EXPECT_FALSE(agent->status().has_pending());
  EXPECT_FALSE(fs::exists(state.path() / "config" / "pending.cfg"));
  EXPECT_EQ(code_of([&] { agent->confirm(op); }), ErrorCode::failed_precondition);
  EXPECT_NE(audit_text().find("confirm_deadline"), std::string::npos);
}

TEST_F(AgentTest, ConfirmInTimeCommits) {
  agent->set_property(op, set("sip.flow_timer", "60"));
  agent->apply(op, apply_req("", 0, 60));
  EXPECT_EQ(code_of([&] {
              agent->set_property(op, set("sip.flow_timer", "90"));
              agent->apply(op, apply_req());
            }),
            ErrorCode::failed_precondition)
      << "no apply on top of an unconfirmed one";
  const auto resp = agent->confirm(op);
  EXPECT_EQ(resp.generation(), 2u);
  EXPECT_EQ(agent->generation(), 2u);
  EXPECT_FALSE(fs::exists(state.path() / "config" / "pending.cfg"));
  EXPECT_EQ(fe.current().sip().flow_timer(), 60u);
  EXPECT_EQ(code_of([&] { agent->confirm(op); }), ErrorCode::failed_precondition);
  // The edit staged while the confirm was pending is still staged.
  EXPECT_EQ(agent->apply(op, apply_req()).generation(), 3u);
  EXPECT_EQ(fe.current().sip().flow_timer(), 90u);
}

TEST_F(AgentTest, RetriedRequestIdIsAnsweredFromTheFirstApply) {
  agent->set_property(op, set("sip.flow_timer", "60"));
  const auto first = agent->apply(op, apply_req("req-1"));
  EXPECT_FALSE(first.replayed());
  agent->set_property(op, set("sip.flow_timer", "90"));
  const auto again = agent->apply(op, apply_req("req-1"));
  EXPECT_TRUE(again.replayed());
  EXPECT_EQ(again.generation(), 2u);
  EXPECT_EQ(agent->generation(), 2u);
  EXPECT_TRUE(agent->status().staged_changes());
  // Remembered across a restart of the agent, from the store.
  agent.reset();
  agent = make_agent();
  const auto after = agent->apply(op, apply_req("req-1"));
  EXPECT_TRUE(after.replayed());
  EXPECT_EQ(after.generation(), 2u);
  EXPECT_EQ(agent->generation(), 2u);
}

TEST_F(AgentTest, StaleExpectedGenerationIsRefused) {
  agent->set_property(op, set("sip.flow_timer", "60"));
  std::string what;
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req("", 5)); }, &what), ErrorCode::failed_precondition);
  EXPECT_EQ(what, "configuration is at generation 1, not 5");
  EXPECT_EQ(agent->apply(op, apply_req("", 1)).generation(), 2u);
}

TEST_F(AgentTest, ConcurrentApplyIsRefusedWhileOneRuns) {
  fe.drain_delay = 1500ms;
  agent->set_property(op, set("sip.flow_timer", "60"));
  auto first = std::async(std::launch::async, [&] { return agent->apply(op, apply_req("a")); });
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!fe.drain_entered && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(fe.drain_entered);
  std::string what;
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req("b")); }, &what), ErrorCode::aborted);
  EXPECT_EQ(what, "another apply is in progress");
  EXPECT_EQ(first.get().generation(), 2u);
  EXPECT_EQ(agent->generation(), 2u);
  EXPECT_EQ(count("drain"), 1u);
}

TEST_F(AgentTest, RetireRefusesTheMintingVersion) {
  v1::RetireKeyVersionRequest retire;
  retire.set_name("sipflow");
  retire.set_version(1);
  std::string what;
  EXPECT_EQ(code_of([&] { agent->retire_key_version(op, retire); }, &what), ErrorCode::failed_precondition);
  EXPECT_NE(what.find("version 1"), std::string::npos);
  v1::RotateKeySetRequest rot;
  rot.set_name("sipflow");
  agent->rotate_key_set(op, rot);
  // Staged to mint with 2, but the running front end still mints with 1.
  EXPECT_EQ(code_of([&] { agent->retire_key_version(op, retire); }), ErrorCode::failed_precondition);
  agent->apply(op, apply_req());
  const auto ch = agent->retire_key_version(op, retire);
  EXPECT_FALSE(ch.key_set().versions(0).active());
  retire.set_version(2);
  EXPECT_EQ(code_of([&] { agent->retire_key_version(op, retire); }), ErrorCode::failed_precondition);
  retire.set_version(9);
  EXPECT_EQ(code_of([&] { agent->retire_key_version(op, retire); }), ErrorCode::not_found);
}

TEST_F(AgentTest, KeySetLifecycleAndDestroyWhileInUse) {
  v1::CreateKeySetRequest create;
  create.set_name("spare");
  const auto ch = agent->create_key_set(op, create);
  EXPECT_EQ(ch.key_set().versions_size(), 1);
  EXPECT_FALSE(ch.key_set().in_use());
  EXPECT_EQ(code_of([&] { agent->create_key_set(op, create); }), ErrorCode::already_exists);
  create.set_name("bad name");
  EXPECT_EQ(code_of([&] { agent->create_key_set(op, create); }), ErrorCode::invalid_argument);
  EXPECT_EQ(agent->list_key_sets().key_sets_size(), 2);

  v1::DestroyKeySetRequest destroy;
  destroy.set_name("sipflow");
  EXPECT_EQ(code_of([&] { agent->destroy_key_set(op, destroy); }), ErrorCode::failed_precondition);
  // Staged use counts too.
  agent->set_property(op, set("sip.flow_token.key_set", "spare"));
  destroy.set_name("spare");
  EXPECT_EQ(code_of([&] { agent->destroy_key_set(op, destroy); }), ErrorCode::failed_precondition);
  agent->discard_staged(op);
  agent->destroy_key_set(op, destroy);
  EXPECT_FALSE(hsm.keysets().exists("spare"));
  EXPECT_EQ(code_of([&] { agent->destroy_key_set(op, destroy); }), ErrorCode::not_found);
  EXPECT_EQ(code_of([&] { agent->get_key_set("spare"); }), ErrorCode::not_found);
  const auto audit = audit_text();
  EXPECT_NE(audit.find("\"action\":\"create_key_set\",\"detail\":\"key set spare"), std::string::npos);
  EXPECT_NE(audit.find("\"action\":\"destroy_key_set\""), std::string::npos);
}

TEST_F(AgentTest, RollbackCommitsTheOldConfigurationAsANewGeneration) {
  agent->set_property(op, set("sip.flow_timer", "60"));
  agent->apply(op, apply_req());
  agent->set_property(op, set("sip.flow_timer", "90"));
  agent->apply(op, apply_req());
  agent->set_property(op, set("log.level", "debug"));  // dropped by the rollback

  v1::RollbackRequest rb;
  rb.set_generation(1);
  const auto resp = agent->rollback(op, rb);
  EXPECT_EQ(resp.generation(), 4u);
  EXPECT_EQ(agent->generation(), 4u);
  EXPECT_EQ(fe.current().sip().flow_timer(), 30u);
  EXPECT_FALSE(agent->status().staged_changes());
  const auto gens = agent->list_generations();
  ASSERT_EQ(gens.generations_size(), 4);
  EXPECT_EQ(gens.generations(3).rolled_back_from(), 3u);
  EXPECT_TRUE(gens.generations(3).current());

  // 0: the one before the committed one (generation 3, flow timer 90).
  rb.set_generation(0);
  EXPECT_EQ(agent->rollback(op, rb).generation(), 5u);
  EXPECT_EQ(fe.current().sip().flow_timer(), 90u);
  rb.set_generation(99);
  EXPECT_EQ(code_of([&] { agent->rollback(op, rb); }), ErrorCode::not_found);
}

TEST_F(AgentTest, LiveChangeIsAppliedWithoutADrain) {
  agent->set_property(op, set("log.level", "debug"));
  const auto resp = agent->apply(op, apply_req());
  EXPECT_EQ(resp.restart(), v1::RESTART_NONE);
  EXPECT_EQ(count("drain"), 0u);
  EXPECT_EQ(fe.current().log_level(), "debug");
}

TEST_F(AgentTest, RestartReadsTheCommittedGenerationAndDropsAPendingOne) {
  agent->set_property(op, set("sip.flow_timer", "60"));
  agent->apply(op, apply_req());
  agent->set_property(op, set("sip.flow_timer", "90"));
  agent->apply(op, apply_req("", 0, 600));
  ASSERT_TRUE(fs::exists(state.path() / "config" / "pending.cfg"));
  // The daemon dies before the operator confirms.
  agent->shutdown();
  agent.reset();
  agent = make_agent();
  EXPECT_EQ(agent->generation(), 2u);
  EXPECT_EQ(agent->boot_config().sip().flow_timer(), 60u);
  EXPECT_FALSE(agent->status().has_pending());
  EXPECT_FALSE(fs::exists(state.path() / "config" / "pending.cfg"));
  EXPECT_NE(audit_text().find("pending generation 3 was never confirmed"), std::string::npos);
}

TEST_F(AgentTest, RestartFrontEndKeepsTheGeneration) {
  auto events = agent->events().subscribe();
  agent->restart_front_end(op);
  EXPECT_EQ(count("drain"), 1u);
  EXPECT_EQ(count("start"), 1u);
  EXPECT_EQ(agent->generation(), 1u);
  const auto e = wait_for(*events, v1::Event::RESTART, 5s);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->ok());
}

TEST_F(AgentTest, HsmStateChangesReachWatchers) {
  auto events = agent->events().subscribe();
  agent->report_hsm_state("unavailable", "C_Sign failed: CKR_DEVICE_ERROR");
  const auto e = wait_for(*events, v1::Event::HSM_FAULT, 5s);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->ok());
  EXPECT_NE(e->message().find("CKR_DEVICE_ERROR"), std::string::npos);
}

TEST_F(AgentTest, WithoutAFrontEndApplyValidatesAndCommits) {
  agent->attach_front_end(nullptr);
  agent->set_property(op, set("sip.flow_timer", "45"));
  const auto resp = agent->apply(op, apply_req());
  EXPECT_EQ(resp.generation(), 2u);
  EXPECT_EQ(resp.restart(), v1::RESTART_FRONT_END);
  EXPECT_EQ(fe.calls().size(), 1u) << "only the fixture's own apply";
}

// Reads answer from snapshots: an apply held inside the front end (in its
// drain, or in its apply with the front end's own lock held) delays neither
// status nor the key-set views. The bound is generous; this checks that they
// do not wait at all, not how fast they are.
// An audit log that cannot take a record (here: a directory in its place,
// which stops writes even for root) refuses changes before they are made.
TEST_F(AgentTest, AChangeIsRefusedWhileTheAuditLogCannotBeWritten) {
  const fs::path log = state.path() / "audit.log";
  fs::remove(log);
  fs::create_directory(log);
  const std::uint64_t gen = agent->generation();
  const auto versions = agent->get_key_set("sipflow").versions_size();

  std::string what;
  EXPECT_EQ(code_of([&] { agent->set_property(op, set("sip.flow_timer", "61")); }, &what),
            ErrorCode::unavailable);
  EXPECT_NE(what.find("audit.log: Is a directory"), std::string::npos) << what;
  EXPECT_NE(what.find("nothing was changed"), std::string::npos) << what;
  EXPECT_TRUE(agent->get_config().staged().empty()) << "staged although it could not be audited";

  v1::RotateKeySetRequest rot;
  rot.set_name("sipflow");
  EXPECT_EQ(code_of([&] { agent->rotate_key_set(op, rot); }, &what), ErrorCode::unavailable);
  EXPECT_EQ(agent->get_key_set("sipflow").versions_size(), versions) << "the HSM was changed";
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req()); }, &what), ErrorCode::unavailable);
  EXPECT_EQ(agent->generation(), gen);

  // Writable again: the same change goes through and is on record.
  fs::remove(log);
  agent->set_property(op, set("sip.flow_timer", "61"));
  EXPECT_NE(
      audit_text().find("\"action\":\"set_property\",\"detail\":\"sip.flow_timer = 61\",\"result\":\"ok\""),
      std::string::npos)
      << audit_text();
}

// The record of a change that was made fails (the log is replaced while the
// apply runs): the error says the change is in effect and its record missing.
TEST_F(AgentTest, AChangeWhoseRecordFailsSaysItIsInEffect) {
  const std::uint64_t before = agent->generation();
  agent->set_property(op, set("sip.flow_timer", "62"));
  std::promise<void> release;
  fe.apply_entered = false;
  fe.apply_gate = release.get_future().share();
  auto applying = std::async(std::launch::async, [&] {
    std::string what;
    const ErrorCode code = code_of([&] { agent->apply(op, apply_req()); }, &what);
    return std::make_pair(code, what);
  });
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!fe.apply_entered && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  const bool held = fe.apply_entered;
  const fs::path log = state.path() / "audit.log";
  fs::remove(log);
  fs::create_directory(log);
  release.set_value();
  const auto [code, what] = applying.get();
  fe.apply_gate = {};

  ASSERT_TRUE(held) << "the apply never reached the front end";
  EXPECT_EQ(code, ErrorCode::internal);
  EXPECT_NE(what.find("apply was done and is in effect"), std::string::npos) << what;
  EXPECT_NE(what.find("its audit record was not written"), std::string::npos) << what;
  EXPECT_NE(what.find("audit.log: Is a directory"), std::string::npos) << what;
  // What the error says is what the box is in: committed and running.
  EXPECT_EQ(agent->generation(), before + 1);
  EXPECT_EQ(fe.current().sip().flow_timer(), 62u);
}

TEST_F(AgentTest, StatusAndKeySetsDoNotWaitForAnApplyInProgress) {
  for (const std::string step : {"drain", "apply"}) {
    SCOPED_TRACE("apply held in " + step);
    std::promise<void> release;
    std::shared_future<void>& gate = step == "drain" ? fe.drain_gate : fe.apply_gate;
    std::atomic<bool>& entered = step == "drain" ? fe.drain_entered : fe.apply_entered;
    entered = false;
    gate = release.get_future().share();
    const std::uint64_t before = agent->generation();
    agent->set_property(op, set("sip.flow_timer", std::to_string(40 + before)));
    auto applying = std::async(std::launch::async, [&] { return agent->apply(op, apply_req()); });
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!entered && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    const bool held = entered;

    auto status = std::async(std::launch::async, [&] { return agent->status(); });
    auto key_sets = std::async(std::launch::async, [&] { return agent->list_key_sets(); });
    auto key_set = std::async(std::launch::async, [&] { return agent->get_key_set("sipflow"); });
    const bool status_answered = status.wait_for(5s) == std::future_status::ready;
    const bool key_sets_answered = key_sets.wait_for(5s) == std::future_status::ready;
    const bool key_set_answered = key_set.wait_for(5s) == std::future_status::ready;
    // Release before any assertion can return, so the apply (and a read that did wait) ends.
    release.set_value();
    const auto applied = applying.get();
    gate = {};

    ASSERT_TRUE(held) << "the apply never reached the front end's " << step;
    EXPECT_TRUE(status_answered) << "status waited for the apply";
    EXPECT_TRUE(key_sets_answered) << "list_key_sets waited for the apply";
    EXPECT_TRUE(key_set_answered) << "get_key_set waited for the apply";
    const v1::Status st = status.get();
    EXPECT_EQ(st.generation(), before) << "not committed while the apply was held";
    EXPECT_TRUE(st.staged_changes());
    // The front end's last snapshot: taken before the drain, or after it.
    EXPECT_EQ(st.front_end().state(), step == "drain" ? "running" : "draining");
    const auto sets = key_sets.get();
    ASSERT_EQ(sets.key_sets_size(), 1);
    EXPECT_TRUE(sets.key_sets(0).in_use());
    EXPECT_TRUE(sets.key_sets(0).versions(0).minting());
    EXPECT_TRUE(key_set.get().versions(0).minting());
    EXPECT_EQ(applied.generation(), before + 1);
    EXPECT_EQ(agent->status().front_end().state(), "running");
  }
}

// The agent decides the restart class from the property registry and passes
// it to the front end; a restore passes the class of the change back, and
// the configuration the front end already has is a front-end restart.
TEST_F(AgentTest, TheAgentDecidesTheRestartClassItPassesToTheFrontEnd) {
  const auto classes_since = [&](std::size_t n) {
    const auto all = fe.classes();
    return std::vector<v1::RestartClass>(all.begin() + static_cast<std::ptrdiff_t>(n), all.end());
  };
  using Classes = std::vector<v1::RestartClass>;
  std::size_t seen = fe.classes().size();

  agent->set_property(op, set("log.level", "debug"));
  EXPECT_EQ(agent->apply(op, apply_req()).restart(), v1::RESTART_NONE);
  EXPECT_EQ(classes_since(seen), Classes{v1::RESTART_NONE});
  seen = fe.classes().size();

  agent->set_property(op, set("sip.flow_timer", "60"));
  EXPECT_EQ(agent->apply(op, apply_req()).restart(), v1::RESTART_FRONT_END);
  EXPECT_EQ(classes_since(seen), Classes{v1::RESTART_FRONT_END});
  seen = fe.classes().size();

  // The worst class of the changed properties wins.
  agent->set_property(op, set("listen", "udp 127.0.0.1 0; tcp 127.0.0.1 0"));
  agent->set_property(op, set("sip.flow_timer", "90"));
  EXPECT_EQ(agent->apply(op, apply_req()).restart(), v1::RESTART_LISTENERS);
  EXPECT_EQ(classes_since(seen), Classes{v1::RESTART_LISTENERS});
  seen = fe.classes().size();

  // RestartFrontEnd (and SIGHUP): the same configuration again.
  agent->restart_front_end(op);
  EXPECT_EQ(classes_since(seen), Classes{v1::RESTART_FRONT_END});
  seen = fe.classes().size();

  // A failed health check: the restore is the change back, of the same class.
  agent->set_property(op, set("listen", "udp 127.0.0.1 0"));
  fe.unhealthy_times = 1;
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req()); }), ErrorCode::aborted);
  EXPECT_EQ(classes_since(seen), (Classes{v1::RESTART_LISTENERS, v1::RESTART_LISTENERS}));
  seen = fe.classes().size();

  // A swap that failed left the front end on what it had: putting that back
  // is the same configuration again.
  fe.apply_failures = 1;
  EXPECT_EQ(code_of([&] { agent->apply(op, apply_req()); }), ErrorCode::aborted);
  EXPECT_EQ(classes_since(seen), (Classes{v1::RESTART_LISTENERS, v1::RESTART_FRONT_END}));
  seen = fe.classes().size();

  // A process-class value waits for the next start of edged: the front end is not called.
  agent->discard_staged(op);
  agent->set_property(op, set("mgmt.socket", "other.sock"));
  EXPECT_EQ(agent->apply(op, apply_req()).restart(), v1::RESTART_PROCESS);
  EXPECT_TRUE(classes_since(seen).empty());
}

}  // namespace
}  // namespace edge::mgmt
