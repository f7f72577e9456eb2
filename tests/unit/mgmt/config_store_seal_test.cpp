// ConfigStore sealed by the HSM's config store key (real SoftHSM): an edited generation whose SHA-256
// was recomputed is refused, unsealed and renamed files are refused, a store from before the seal is
// sealed once, a store sealed by a key the HSM lacks is refused as a whole, a planted key is refused.
#include <edge/hsm/hsm.h>
#include <edge/hsm/store_key.h>
#include <edge/mgmt/agent.h>
#include <edge/mgmt/config_store.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>
#include <edge/test/fake_front_end.h>
#include <edge/test/process.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <memory>
#include <string>

#include "store_test_util.h"

namespace edge::mgmt {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using store_test::gen;
using store_test::gen_file;

std::string sha256(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return {reinterpret_cast<const char*>(md), len};
}

// What an attacker with write access to the state directory does: decode the
// envelope, change the configuration, recompute the SHA-256, keep (or drop) the seal.
void edit_and_rehash(const fs::path& file, std::uint32_t flow_timer, bool drop_seal = false) {
  v1::StoreEnvelope env;
  ASSERT_TRUE(env.ParseFromString(edge::test::read_file(file)));
  v1::StoredGeneration g;
  ASSERT_TRUE(g.ParseFromString(env.generation()));
  g.mutable_config()->mutable_sip()->set_flow_timer(flow_timer);
  env.set_generation(g.SerializeAsString());
  env.set_sha256(sha256(env.generation()));
  if (drop_seal) env.clear_hsm_seal();
  edge::test::write_file(file, env.SerializeAsString());
}

class SealedStoreTest : public ::testing::Test {
 protected:
  edge::test::SoftHsmToken token;
  hsm::Hsm hsm{token.config()};
  std::unique_ptr<StoreSeal> seal = hsm_store_seal(hsm);
  edge::test::TempDir tmp{"edge-sealed-store"};
  fs::path dir = tmp.path() / "config";
};

TEST_F(SealedStoreTest, AnEditedGenerationWithItsDigestRecomputedIsRefused) {
  {
    ConfigStore s(dir, 10, seal.get());
    EXPECT_EQ(s.adopt_seal(), 0u) << "an empty store has nothing to seal";
    EXPECT_TRUE(seal->key_exists());
    s.commit(gen(1, 30));
    s.commit(gen(2, 45));
  }
  edit_and_rehash(gen_file(dir, 2), 600);

  // The SHA-256 alone (what the store checked before the seal) takes the edit.
  ConfigStore unsealed(dir);
  ASSERT_TRUE(unsealed.latest());
  EXPECT_EQ(unsealed.latest()->config().sip().flow_timer(), 600u);

  ConfigStore s(dir, 10, seal.get());
  EXPECT_EQ(s.adopt_seal(), 0u);
  const StoreCheck c = s.check();
  EXPECT_TRUE(c.newest_refused());
  EXPECT_EQ(c.newest_on_disk, 2u);
  EXPECT_EQ(c.newest_good, 1u);
  ASSERT_EQ(c.refused.size(), 1u);
  EXPECT_EQ(c.refused[0].file, "gen-0000000002.cfg");
  EXPECT_THAT(c.refused[0].reason, HasSubstr("seal mismatch"));
  ASSERT_TRUE(s.latest());
  EXPECT_EQ(s.latest()->generation(), 1u);
  EXPECT_FALSE(s.get(2));
  // The refused file stays as evidence: the next generation is 3.
  EXPECT_EQ(s.next_generation(), 3u);
  EXPECT_THROW(s.commit(gen(2, 50)), MgmtError);
  s.commit(gen(3, 50));
  EXPECT_TRUE(fs::exists(gen_file(dir, 2)));
  const StoreCheck after = s.check();
  EXPECT_FALSE(after.newest_refused());
  EXPECT_EQ(after.refused.size(), 1u);
}

TEST_F(SealedStoreTest, AFileWithoutASealOrRenamedFromPendingIsRefused) {
  {
    ConfigStore s(dir, 10, seal.get());
    s.adopt_seal();
    s.commit(gen(1));
    s.commit(gen(2));
    s.write_pending(gen(3, 90));
  }
  edit_and_rehash(gen_file(dir, 2), 77, /*drop_seal=*/true);
  // An unconfirmed change made committed by a rename: its seal is a pending file's.
  fs::rename(dir / "pending.cfg", gen_file(dir, 3));

  ConfigStore s(dir, 10, seal.get());
  const StoreCheck c = s.check();
  EXPECT_EQ(c.newest_on_disk, 3u);
  EXPECT_EQ(c.newest_good, 1u);
  ASSERT_EQ(c.refused.size(), 2u);
  EXPECT_EQ(c.refused[0].generation, 3u);
  EXPECT_THAT(c.refused[0].reason, HasSubstr("seal mismatch"));
  EXPECT_EQ(c.refused[1].generation, 2u);
  EXPECT_THAT(c.refused[1].reason, HasSubstr("not sealed"));
  EXPECT_EQ(s.latest()->generation(), 1u);
}

TEST_F(SealedStoreTest, AStoreFromBeforeTheSealIsSealedOnceAndThenVerifies) {
  {
    ConfigStore legacy(dir);  // as every release before the seal wrote it
    legacy.commit(gen(1, 30));
    legacy.commit(gen(2, 40));
    legacy.write_pending(gen(3, 50));
  }
  EXPECT_FALSE(seal->key_exists());
  ConfigStore s(dir, 10, seal.get());
  EXPECT_EQ(s.adopt_seal(), 3u);
  EXPECT_TRUE(seal->key_exists());
  EXPECT_EQ(s.adopt_seal(), 0u) << "sealed once";
  const StoreCheck c = s.check();
  EXPECT_TRUE(c.refused.empty());
  EXPECT_EQ(c.newest_good, 2u);
  EXPECT_EQ(s.latest()->config().sip().flow_timer(), 40u);
  ASSERT_TRUE(s.pending());
  EXPECT_EQ(s.pending()->config().sip().flow_timer(), 50u);
  // From now on an unsealed file is an edit.
  {
    ConfigStore legacy(dir);
    legacy.commit(gen(3, 60));
  }
  EXPECT_THAT(s.check().refused.at(0).reason, HasSubstr("not sealed"));
}

TEST(SealedStoreOtherToken, AStoreSealedByAKeyThisHsmLacksIsRefusedWhole) {
  // Two tokens of one SoftHSM (it reads its configuration and slots once per
  // process, so both exist before any Hsm opens the module).
  edge::test::SoftHsmToken token;
  token.init_extra_token("edge-other-box");
  hsm::Hsm hsm{token.config()};
  hsm::HsmConfig oc = token.config();
  oc.token.label = "edge-other-box";
  oc.token.serial.clear();
  oc.token.uri.clear();
  hsm::Hsm other_hsm{oc};
  edge::test::TempDir tmp{"edge-sealed-store"};
  const fs::path dir = tmp.path() / "config";
  auto seal = hsm_store_seal(hsm);
  {
    ConfigStore s(dir, 10, seal.get());
    s.adopt_seal();
    s.commit(gen(1));
  }
  // Another token (replaced, or the HSM settings pointed elsewhere) has no key:
  // sealing the store with a new one would launder whatever its files say.
  auto other_seal = hsm_store_seal(other_hsm);
  ConfigStore s(dir, 10, other_seal.get());
  try {
    s.adopt_seal();
    FAIL() << "a sealed store was adopted by a new key";
  } catch (const MgmtError& e) {
    EXPECT_EQ(e.code(), ErrorCode::failed_precondition);
    EXPECT_THAT(e.what(), HasSubstr("holds no config store key"));
  }
  EXPECT_FALSE(other_seal->key_exists()) << "no key was created";
  // And a key of its own does not verify the files.
  other_seal->create_key();
  EXPECT_THAT(s.check().refused.at(0).reason, HasSubstr("seal mismatch"));
}

TEST_F(SealedStoreTest, APlantedStoreKeyIsRefusedAndNeverSeals) {
  {
    edge::test::RawP11 p11(edge::test::softhsm_module_path());
    const CK_SESSION_HANDLE rs = p11.open_session(p11.slot_by_label(token.label()), true);
    p11.login(rs, token.user_pin());
    const std::vector<unsigned char> value(32, 0x42);
    p11.create_known_hmac_key(rs, std::string(hsm::kStoreKeyLabel), {'E', 'C', 'S', '1'}, value);
    p11.f().C_CloseSession(rs);
  }
  try {
    seal->key_exists();
    FAIL() << "a planted store key was taken";
  } catch (const MgmtError& e) {
    EXPECT_THAT(e.what(), HasSubstr("CKA_LOCAL"));
  }
  ConfigStore s(dir, 10, seal.get());
  EXPECT_THROW(s.adopt_seal(), MgmtError);
  EXPECT_THROW(s.commit(gen(1)), MgmtError) << "nothing is sealed with a key someone knows";
}

TEST_F(SealedStoreTest, TheKeyIsGeneratedInsideNeverExtractableAndSignVerifyOnly) {
  seal->create_key();
  EXPECT_THROW(seal->create_key(), MgmtError) << "one key per token";
  edge::test::RawP11 p11(edge::test::softhsm_module_path());
  const CK_SESSION_HANDLE rs = p11.open_session(p11.slot_by_label(token.label()), false);
  p11.login(rs, token.user_pin());
  const auto found = p11.find_by_label(rs, hsm::kStoreKeyLabel);
  ASSERT_EQ(found.size(), 1u);
  CK_BBOOL local = CK_FALSE, never_extractable = CK_FALSE, extractable = CK_TRUE, sensitive = CK_FALSE,
           modifiable = CK_TRUE, encrypt = CK_TRUE, wrap = CK_TRUE, derive = CK_TRUE, sign = CK_FALSE;
  CK_ATTRIBUTE a[] = {
      {CKA_LOCAL, &local, sizeof local},
      {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof never_extractable},
      {CKA_EXTRACTABLE, &extractable, sizeof extractable},
      {CKA_SENSITIVE, &sensitive, sizeof sensitive},
      {CKA_MODIFIABLE, &modifiable, sizeof modifiable},
      {CKA_ENCRYPT, &encrypt, sizeof encrypt},
      {CKA_WRAP, &wrap, sizeof wrap},
      {CKA_DERIVE, &derive, sizeof derive},
      {CKA_SIGN, &sign, sizeof sign},
  };
  ASSERT_EQ(p11.f().C_GetAttributeValue(rs, found[0], a, 9), CKR_OK);
  EXPECT_TRUE(local);
  EXPECT_TRUE(never_extractable);
  EXPECT_FALSE(extractable);
  EXPECT_TRUE(sensitive);
  EXPECT_FALSE(modifiable);
  EXPECT_FALSE(encrypt);
  EXPECT_FALSE(wrap);
  EXPECT_FALSE(derive);
  EXPECT_TRUE(sign);
  CK_BYTE value[64];
  CK_ATTRIBUTE v{CKA_VALUE, value, sizeof value};
  EXPECT_EQ(p11.f().C_GetAttributeValue(rs, found[0], &v, 1), CKR_ATTRIBUTE_SENSITIVE);
  p11.f().C_CloseSession(rs);
}

// The agent over a sealed store: what an operator sees when the newest generation is refused.
class SealedAgentTest : public SealedStoreTest {
 protected:
  void SetUp() override {
    hsm.keysets().create("sipflow");
    start();
  }
  void start() {
    AgentOptions o;
    o.state_dir = state.path();
    auto c = PropertyRegistry::instance().defaults();
    PropertyRegistry::instance().set(c, "sip.flow_token.key_set", "sipflow");
    PropertyRegistry::instance().set(c, "mgmt.drain_timeout_ms", "100");
    agent = std::make_unique<Agent>(o, hsm, c);
    fe.apply(agent->boot_config(), v1::RESTART_LISTENERS);
    agent->attach_front_end(&fe);
  }
  void stop() {
    agent->shutdown();
    agent.reset();
  }
  void apply_flow_timer(const std::string& value) {
    v1::SetPropertyRequest r;
    r.set_name("sip.flow_timer");
    r.set_value(value);
    agent->set_property(op, r);
    agent->apply(op, v1::ApplyRequest());
  }
  std::optional<v1::Event> next_of(EventBus::Subscription& s, v1::Event::Kind kind) {
    for (int i = 0; i < 10; ++i) {
      if (auto e = s.next(std::chrono::milliseconds(100)); e && e->kind() == kind) return e;
    }
    return std::nullopt;
  }

  edge::test::TempDir state{"edge-sealed-agent"};
  edge::test::FakeFrontEnd fe{&hsm};
  Caller op{"uid:1000", v1::ROLE_OPERATOR};
  std::unique_ptr<Agent> agent;
};

TEST_F(SealedAgentTest, ACorruptNewestGenerationIsReportedAndTheNewestThatVerifiesRuns) {
  EXPECT_EQ(agent->status().config_store().state(), "ok");
  EXPECT_TRUE(agent->status().config_store().sealed());
  const std::uint32_t first = agent->boot_config().sip().flow_timer();
  apply_flow_timer("45");
  ASSERT_EQ(agent->generation(), 2u);
  stop();
  edit_and_rehash(gen_file(state.path() / "config", 2), 600);

  start();
  EXPECT_EQ(agent->generation(), 1u) << "the edited generation is not run";
  EXPECT_EQ(agent->boot_config().sip().flow_timer(), first);
  const v1::ConfigStoreStatus cs = agent->status().config_store();
  EXPECT_EQ(cs.state(), "newest_refused");
  EXPECT_EQ(cs.newest_on_disk(), 2u);
  EXPECT_EQ(cs.newest_good(), 1u);
  ASSERT_EQ(cs.refused_size(), 1);
  EXPECT_THAT(cs.refused(0).reason(), HasSubstr("seal mismatch"));
  // A watcher that connects later still hears of it, first.
  auto watcher = agent->events().subscribe();
  const auto e = watcher->next(std::chrono::milliseconds(100));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), v1::Event::CONFIG_STORE);
  EXPECT_FALSE(e->ok());
  EXPECT_THAT(e->message(), HasSubstr("generation on disk, 2, is refused; running generation 1"));
  EXPECT_THAT(edge::test::read_file(state.path() / "audit.log"), HasSubstr("config_store_corrupt"));

  // The next change does not overwrite the evidence and clears the alarm.
  apply_flow_timer("50");
  EXPECT_EQ(agent->generation(), 3u);
  EXPECT_EQ(agent->status().config_store().state(), "degraded");
  EXPECT_TRUE(fs::exists(gen_file(state.path() / "config", 2)));
  auto later = agent->events().subscribe();
  EXPECT_FALSE(next_of(*later, v1::Event::CONFIG_STORE)) << "no standing alarm any more";
  stop();
  start();
  EXPECT_EQ(agent->generation(), 3u);
  EXPECT_EQ(agent->boot_config().sip().flow_timer(), 50u);
}

TEST_F(SealedAgentTest, AStoreWhereNothingVerifiesStopsTheStartInsteadOfSeedingAgain) {
  stop();
  edit_and_rehash(gen_file(state.path() / "config", 1), 600);
  try {
    start();
    FAIL() << "the agent started from a store where nothing verifies";
  } catch (const MgmtError& e) {
    EXPECT_EQ(e.code(), ErrorCode::failed_precondition);
    EXPECT_THAT(e.what(), HasSubstr("no generation of the config store"));
  }
  EXPECT_FALSE(fs::exists(gen_file(state.path() / "config", 2))) << "nothing was seeded";
}

}  // namespace
}  // namespace edge::mgmt
