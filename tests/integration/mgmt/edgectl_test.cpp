// build/bin/edgectl as a subprocess against MgmtServer in this process: output formats and exit codes.
#include <edge/test/process.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <future>

#include "mgmt_fixture.h"

namespace edge::test {
namespace {
namespace v1 = mgmt::v1;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class EdgectlTest : public MgmtFixture {
 protected:
  CommandResult edgectl(std::vector<std::string> args) {
    args.insert(args.begin(), {EDGECTL_PROGRAM, "--socket", (state_dir() / "mgmt.sock").string()});
    return run_command(args);
  }
  CommandResult edgectl_tls(const CertFiles& client, std::vector<std::string> args) {
    args.insert(args.begin(),
                {EDGECTL_PROGRAM, "--tcp", "127.0.0.1:" + std::to_string(server_->tcp_port()), "--cert",
                 client.cert.string(), "--key", client.key.string(), "--ca", pki_->ca_file().string()});
    return run_command(args);
  }
};

std::size_t lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST_F(EdgectlTest, StatusHumanAndJson) {
  start_server();
  CommandResult human = edgectl({"status"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_THAT(human.out, HasSubstr("version:"));
  EXPECT_THAT(human.out, HasSubstr("9.9.9-test"));
  EXPECT_THAT(human.out, HasSubstr("generation:"));

  CommandResult json = edgectl({"--json", "status"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(lines(json.out), 1u);  // one document, one line
  v1::Status parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_EQ(parsed.version(), "9.9.9-test");
  EXPECT_EQ(parsed.generation(), 1u);
  EXPECT_THAT(json.out, HasSubstr("\"staged_changes\":false"));  // defaults are printed for scripts
}

TEST_F(EdgectlTest, PropertySetByWebSphereAliasShowsInStagedConfig) {
  hsm_->keysets().create("flow2");
  start_server();
  CommandResult set = edgectl({"property", "set", "com.ibm.ws.sip.key.set", "flow2"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_THAT(set.out, HasSubstr("sip.flow_token.key_set"));

  CommandResult staged = edgectl({"config", "show", "--staged"});
  ASSERT_EQ(staged.exit_code, 0) << staged.err;
  EXPECT_THAT(staged.out, HasSubstr("sip.flow_token.key_set = flow2\n"));
  EXPECT_THAT(staged.out, HasSubstr("# staged: sip.flow_token.key_set"));

  CommandResult committed = edgectl({"config", "show"});
  ASSERT_EQ(committed.exit_code, 0) << committed.err;
  EXPECT_THAT(committed.out, HasSubstr("sip.flow_token.key_set = flow\n"));

  CommandResult applied = edgectl({"apply", "--request-id", "cli-1"});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_THAT(applied.out, HasSubstr("generation:"));
  EXPECT_EQ(front_end_.current().sip().flow_token().key_set(), "flow2");
}

TEST_F(EdgectlTest, RefusedChangeExitsThreeWithOneLine) {
  start_server();
  CommandResult r = edgectl({"property", "set", "sip.no_such_property", "1"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_THAT(r.err, StartsWith("edgectl: INVALID_ARGUMENT: "));
  EXPECT_TRUE(r.out.empty());

  CommandResult nothing = edgectl({"apply"});
  EXPECT_EQ(nothing.exit_code, 3);
  EXPECT_THAT(nothing.err, StartsWith("edgectl: FAILED_PRECONDITION: "));
}

TEST_F(EdgectlTest, UnreachableAgentExitsFive) {
  CommandResult r =
      run_command({EDGECTL_PROGRAM, "--socket", (dir_.path() / "absent.sock").string(), "status"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_THAT(r.err, StartsWith("edgectl: UNAVAILABLE: "));
}

TEST_F(EdgectlTest, UsageErrorsExitTwo) {
  for (const auto& args : std::vector<std::vector<std::string>>{{},
                                                                {"frobnicate"},
                                                                {"keyset", "frobnicate"},
                                                                {"keyset", "retire", "flow", "one"},
                                                                {"apply", "--retain", "3"},
                                                                {"status", "--bogus"},
                                                                {"property", "set", "only-a-name"}}) {
    std::vector<std::string> argv = {EDGECTL_PROGRAM};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run_command(argv);
    EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(args) << ": " << r.err;
    EXPECT_THAT(r.err, StartsWith("edgectl: usage: "));
  }
}

TEST_F(EdgectlTest, HelpDescribesCommands) {
  CommandResult all = run_command({EDGECTL_PROGRAM, "--help"});
  EXPECT_EQ(all.exit_code, 0);
  EXPECT_THAT(all.out, HasSubstr("keyset list"));
  CommandResult apply = run_command({EDGECTL_PROGRAM, "help", "apply"});
  EXPECT_EQ(apply.exit_code, 0);
  EXPECT_THAT(apply.out, HasSubstr("--confirm-within"));
}

TEST_F(EdgectlTest, EventsStreamsOneJsonLinePerEvent) {
  start_server();
  auto watch = std::async(std::launch::async, [this] {
    return edgectl({"--json", "events", "--count", "2"});
  });
  // The watcher subscribes at some point after it starts: keep making events until it has seen two.
  for (int i = 0; i < 100 && watch.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready; ++i)
    ASSERT_EQ(edgectl({"property", "set", "sip.flow_timer", std::to_string(40 + i)}).exit_code, 0);
  ASSERT_EQ(watch.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  CommandResult r = watch.get();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(lines(r.out), 2u) << r.out;
  v1::Event ev;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out.substr(0, r.out.find('\n')), &ev).ok())
      << r.out;
  EXPECT_EQ(ev.kind(), v1::Event::PROPERTY_STAGED);
  EXPECT_EQ(ev.actor(), "uid:0");
}

TEST_F(EdgectlTest, MutualTlsRolesAndExitFour) {
  start_server();
  CommandResult ops = edgectl_tls(ops_, {"keyset", "list"});
  ASSERT_EQ(ops.exit_code, 0) << ops.err;
  EXPECT_THAT(ops.out, HasSubstr("NAME"));
  EXPECT_THAT(ops.out, HasSubstr("flow"));

  CommandResult viewer = edgectl_tls(watcher_, {"property", "set", "sip.flow_timer", "60"});
  EXPECT_EQ(viewer.exit_code, 4);
  EXPECT_THAT(viewer.err, StartsWith("edgectl: PERMISSION_DENIED: "));

  CommandResult foreign = edgectl_tls(foreign_ops_, {"status"});
  EXPECT_EQ(foreign.exit_code, 5) << foreign.err;
}

}  // namespace
}  // namespace edge::test
