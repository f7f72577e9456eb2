// Issue "appliance": production mode provisions nothing and refuses to start, with the reason and the
// exit code of docs/operations.md, when the configuration, a real HSM module or the key set is missing.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "edged_process.h"

namespace edge::test {
namespace {

TEST(EdgedProduction, RefusesToStartWithoutACommittedConfiguration) {
  EdgedOptions o;
  o.write_config = false;
  o.args = {"--production"};
  const std::string why = start_failure(o);
  EXPECT_NE(why.find("status 3"), std::string::npos) << why;
  EXPECT_NE(why.find("production mode: no committed configuration"), std::string::npos) << why;
}

TEST(EdgedProduction, RefusesTheLabHsm) {
  EdgedOptions o;
  o.args = {"--production"};
  const std::string why = start_failure(o);
  EXPECT_NE(why.find("status 4"), std::string::npos) << why;
  EXPECT_NE(why.find("needs a real HSM module"), std::string::npos) << why;
}

// Issue 18: a TLS core link that would take any certificate (no tls.ca, no pin)
// lets anyone on the path be the core; production mode refuses it with the reason.
TEST(EdgedProduction, RefusesAnUnauthenticatedTlsCoreLink) {
  EdgedOptions o;
  o.core = "sip:127.0.0.1:5081;transport=tls";
  o.args = {"--production"};
  const std::string why = start_failure(o);
  EXPECT_NE(why.find("status 3"), std::string::npos) << why;
  EXPECT_NE(why.find("production mode: the TLS link to the core is not authenticated"), std::string::npos)
      << why;
}

// With a pin (or tls.ca) the core check passes and start-up goes on to the next
// production rule (here: the lab HSM), so the refusal above is the core link's.
TEST(EdgedProduction, APinnedTlsCoreLinkPassesTheCoreCheck) {
  EdgedOptions o;
  o.core = "sip:127.0.0.1:5081;transport=tls";
  o.extra = {{"core.tls_pin_sha256", std::string(64, 'a')}};
  o.args = {"--production"};
  const std::string why = start_failure(o);
  EXPECT_EQ(why.find("TLS link to the core"), std::string::npos) << why;
  EXPECT_NE(why.find("needs a real HSM module"), std::string::npos) << why;
}

// Runs `edge-hsm ARGS...` on the state dir `dir` (the provisioning tool, not edged).
void run_edge_hsm(const std::filesystem::path& dir, std::vector<std::string> args, const std::string& log) {
  ProcessOptions p;
  p.program = find_program("env", "coreutils");
  p.args = {"EDGE_STATE_DIR=" + dir.string(), edge_hsm_program().string()};
  p.args.insert(p.args.end(), args.begin(), args.end());
  p.log_file = dir / log;
  ChildProcess tool(p);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (tool.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(tool.stop(std::chrono::milliseconds(500)), 0) << tool.log();
}

// Production options on a SoftHSM token made by edge-hsm init-lab-token in `dir`,
// the module named by `module`.
EdgedOptions production_on_softhsm(const TempDir& dir, const std::string& module) {
  EdgedOptions o;
  o.tls_port = 0;
  o.wss_port = 0;
  o.key_set = "prodflow";
  o.args = {"--production"};
  o.env = {"SOFTHSM2_CONF=" + (dir.path() / "hsm" / "softhsm2.conf").string()};
  o.extra = {{"hsm.module", module},
             {"hsm.token", "edge-lab"},
             {"hsm.pin_file", (dir.path() / "hsm" / "user-pin").string()}};
  return o;
}

// Issue 18: production refuses a software token named by its path, not only
// the literal softhsm-lab, and says why and how to accept it.
TEST(EdgedProduction, RefusesASoftHsmModulePath) {
  TempDir dir("edge-production");
  run_edge_hsm(dir.path(), {"init-lab-token"}, "init.log");
  const std::string why = start_failure(production_on_softhsm(dir, EDGE_SOFTHSM_MODULE));
  EXPECT_NE(why.find("status 4"), std::string::npos) << why;
  EXPECT_NE(why.find("production mode refuses a software token (module path"), std::string::npos) << why;
  EXPECT_NE(why.find("hsm.allow_software_token"), std::string::npos) << why;
}

// The same module under a name that says nothing (a copy of libsofthsm2.so):
// what the module reports (C_GetInfo) gives it away.
TEST(EdgedProduction, RefusesASoftHsmModuleUnderAnotherName) {
  TempDir dir("edge-production");
  run_edge_hsm(dir.path(), {"init-lab-token"}, "init.log");
  const auto renamed = dir.path() / "libvendor-pkcs11.so";
  std::filesystem::copy_file(EDGE_SOFTHSM_MODULE, renamed);
  const std::string why = start_failure(production_on_softhsm(dir, renamed.string()));
  EXPECT_NE(why.find("status 4"), std::string::npos) << why;
  EXPECT_NE(why.find("production mode refuses a software token (the module reports manufacturer"),
            std::string::npos)
      << why;
}

// A real PKCS#11 module (SoftHSM2's, named by path as an operator would, and
// accepted with hsm.allow_software_token, logged as a warning) with a token
// that exists: edged starts only once the configured key set is there, and it
// provisions nothing itself (no lab certificate, no key set).
TEST(EdgedProduction, StartsOnlyWhenTheKeySetExistsInTheHsm) {
  TempDir dir("edge-production");
  // The token and its PIN file come from the provisioning tool, not from edged.
  run_edge_hsm(dir.path(), {"init-lab-token"}, "init.log");
  EdgedOptions o = production_on_softhsm(dir, EDGE_SOFTHSM_MODULE);
  o.extra.emplace_back("hsm.allow_software_token", "true");
  const std::string why = start_failure(o);
  EXPECT_NE(why.find("status 4"), std::string::npos) << why;
  EXPECT_NE(why.find("key set 'prodflow' does not exist"), std::string::npos) << why;

  run_edge_hsm(dir.path(), {"keyset", "create", "prodflow"}, "create.log");

  EdgedProcess edge(o);
  EXPECT_TRUE(edge.events("lab_token_created").empty());
  EXPECT_TRUE(edge.events("lab_certificate_created").empty());
  EXPECT_TRUE(edge.events("key_set_created").empty());
  const auto allowed = edge.events("software_token_allowed");
  ASSERT_EQ(allowed.size(), 1u) << edge.log();
  EXPECT_NE(allowed[0].find(" warning "), std::string::npos) << allowed[0];
  EXPECT_EQ(parse_log_fields(allowed[0])["module"], EDGE_SOFTHSM_MODULE);
  const auto started = edge.events("started");
  ASSERT_FALSE(started.empty());
  EXPECT_EQ(parse_log_fields(started.back())["key_set"], "prodflow");
  EXPECT_EQ(edge.stop(), 0) << edge.log();
}

// Lab mode: the first start provisions everything and commits generation 1
// from the embedded default; a later start on the same state finds it all and
// provisions nothing. No log line ever carries the PIN.
TEST(EdgedFirstBoot, ProvisionsOnceThenStartsInTheCommittedGeneration) {
  EdgedOptions o;
  o.write_config = false;  // the embedded lab default
  EdgedProcess edge(o);
  for (const char* e : {"first_boot", "lab_token_created", "key_set_created", "lab_certificate_created"}) {
    EXPECT_EQ(edge.events(e).size(), 1u) << e << "\n" << edge.log();
  }
  EXPECT_EQ(parse_log_fields(edge.events("started").back())["generation"], "1");
  const std::string first_log = edge.log();
  ASSERT_EQ(edge.stop(), 0) << first_log;

  edge.restart();
  for (const char* e : {"first_boot", "lab_token_created", "key_set_created", "lab_certificate_created"}) {
    EXPECT_TRUE(edge.events(e).empty()) << e << " on a later start\n" << edge.log();
  }
  EXPECT_EQ(parse_log_fields(edge.events("started").back())["generation"], "1");
  EXPECT_EQ(parse_log_fields(edge.events("started").back())["key_set"], "sipflow");
  std::string pin = read_file(edge.state_dir() / "hsm" / "user-pin");
  while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
  ASSERT_GE(pin.size(), 8u);
  EXPECT_EQ(first_log.find(pin), std::string::npos);
  EXPECT_EQ(edge.log().find(pin), std::string::npos);
  EXPECT_EQ(edge.stop(), 0) << edge.log();
}

}  // namespace
}  // namespace edge::test
