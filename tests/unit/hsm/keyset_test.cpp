// Key sets: create / rotate / retire / list / destroy, retention, and what survives a restart.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/fault_shim.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

using edge::hsm::Hsm;
using edge::hsm::HsmError;
using edge::hsm::KeySetInfo;
using edge::hsm::KeyState;
using edge::hsm::MacStatus;
using edge::hsm::MacTag;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;

std::vector<std::uint32_t> versions_of(const KeySetInfo& info) {
  std::vector<std::uint32_t> v;
  for (const auto& k : info.versions) v.push_back(k.version);
  return v;
}

std::vector<std::uint32_t> minting_flags(const KeySetInfo& info) {
  std::vector<std::uint32_t> v;
  for (const auto& k : info.versions) {
    if (k.minting) v.push_back(k.version);
  }
  return v;
}

class KeySetTest : public ::testing::Test {
 protected:
  void SetUp() override { hsm_ = std::make_unique<Hsm>(token_.config()); }
  edge::hsm::KeySetManager& ks() { return hsm_->keysets(); }

  // Labels of the secret keys actually on the token, read with plain PKCS#11.
  std::vector<std::string> token_labels() {
    hsm_.reset();  // nothing of ours may hold the module while we look
    std::vector<std::string> labels;
    {
      edge::test::RawP11 p11(edge::test::softhsm_module_path());
      auto s = p11.open_session(p11.slot_by_label(token_.label()), false);
      p11.login(s, token_.user_pin());
      CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
      for (auto h : p11.find(s, {{CKA_CLASS, &cls, sizeof cls}})) {
        labels.push_back(edge::test::read_secret_key(p11, s, h).label);
      }
    }
    std::sort(labels.begin(), labels.end());
    hsm_ = std::make_unique<Hsm>(token_.config());
    return labels;
  }

  SoftHsmToken token_;
  std::unique_ptr<Hsm> hsm_;
};

TEST_F(KeySetTest, CreateMakesVersionOneActiveAndMinting) {
  std::int64_t before = std::time(nullptr);
  auto info = ks().create("sipflow", 4);
  EXPECT_EQ(info.name, "sipflow");
  EXPECT_EQ(info.retain, 4u);
  ASSERT_EQ(info.versions.size(), 1u);
  EXPECT_EQ(info.versions[0].version, 1u);
  EXPECT_EQ(info.versions[0].state, KeyState::active);
  EXPECT_TRUE(info.versions[0].minting);
  EXPECT_GE(info.versions[0].created_unix, before - 5);
  EXPECT_LE(info.versions[0].created_unix, std::time(nullptr) + 5);
  EXPECT_EQ(info.minting_version(), 1u);
  EXPECT_TRUE(ks().exists("sipflow"));
  EXPECT_EQ(versions_of(ks().get("sipflow")), std::vector<std::uint32_t>{1});
}

TEST_F(KeySetTest, DefaultRetention) { EXPECT_EQ(ks().create("sipflow").retain, edge::hsm::kDefaultRetain); }

TEST_F(KeySetTest, CreatingTheSameSetTwiceFailsAndKeepsTheFirst) {
  ks().create("sipflow");
  ks().rotate("sipflow");
  try {
    ks().create("sipflow");
    FAIL() << "created an existing key set";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("sipflow"));
  }
  EXPECT_EQ(versions_of(ks().get("sipflow")), (std::vector<std::uint32_t>{1, 2}));
}

TEST_F(KeySetTest, NamesAreValidated) {
  using edge::hsm::valid_key_set_name;
  EXPECT_TRUE(valid_key_set_name("sipflow"));
  EXPECT_TRUE(valid_key_set_name("Sip-Flow_2.prod"));
  EXPECT_TRUE(valid_key_set_name(std::string(64, 'a')));
  EXPECT_FALSE(valid_key_set_name(""));
  EXPECT_FALSE(valid_key_set_name(std::string(65, 'a')));
  EXPECT_FALSE(valid_key_set_name("sip/flow"));  // would forge the "<set>/v<N>" label
  EXPECT_FALSE(valid_key_set_name("sip flow"));
  EXPECT_FALSE(valid_key_set_name("sipflow\n"));
  EXPECT_FALSE(valid_key_set_name("s\xc3\xa9t"));

  for (const char* bad : {"", "sip/flow", "a b", "x/v1"}) {
    EXPECT_THROW(ks().create(bad), HsmError) << "'" << bad << "'";
  }
  EXPECT_THROW(ks().rotate("sip/flow"), HsmError);
  EXPECT_TRUE(ks().list().empty());
  EXPECT_TRUE(token_labels().empty());
}

TEST_F(KeySetTest, OperationsOnAMissingSetFail) {
  EXPECT_FALSE(ks().exists("nope"));
  EXPECT_THROW(ks().get("nope"), HsmError);
  EXPECT_THROW(ks().rotate("nope"), HsmError);
  EXPECT_THROW(ks().retire("nope", 1), HsmError);
  EXPECT_THROW(ks().destroy("nope"), HsmError);
  EXPECT_TRUE(token_labels().empty());
}

TEST_F(KeySetTest, RotateAddsTheNewMintingVersion) {
  ks().create("sipflow", 5);
  auto v2 = ks().rotate("sipflow");
  EXPECT_EQ(v2.version, 2u);
  EXPECT_EQ(v2.state, KeyState::active);
  EXPECT_TRUE(v2.minting);
  auto v3 = ks().rotate("sipflow");
  EXPECT_EQ(v3.version, 3u);

  auto info = ks().get("sipflow");
  EXPECT_EQ(versions_of(info), (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_EQ(minting_flags(info), std::vector<std::uint32_t>{3});
  EXPECT_EQ(info.minting_version(), 3u);
  for (const auto& v : info.versions) EXPECT_EQ(v.state, KeyState::active) << v.version;
}

TEST_F(KeySetTest, MintingVersionIsTheNewestActiveOne) {
  ks().create("sipflow", 5);
  ks().rotate("sipflow");
  ks().rotate("sipflow");
  ks().retire("sipflow", 3);
  auto info = ks().get("sipflow");
  EXPECT_EQ(info.minting_version(), 2u);
  EXPECT_EQ(minting_flags(info), std::vector<std::uint32_t>{2});
  EXPECT_EQ(info.versions[2].state, KeyState::retired);

  ks().retire("sipflow", 1);
  EXPECT_EQ(ks().get("sipflow").minting_version(), 2u);
  ks().retire("sipflow", 2);
  info = ks().get("sipflow");
  EXPECT_EQ(info.minting_version(), 0u) << "every version is retired";
  EXPECT_TRUE(minting_flags(info).empty());

  // A rotation brings a minting version back.
  EXPECT_EQ(ks().rotate("sipflow").version, 4u);
  EXPECT_EQ(ks().get("sipflow").minting_version(), 4u);
}

TEST_F(KeySetTest, RetireUnknownVersionFails) {
  ks().create("sipflow");
  EXPECT_THROW(ks().retire("sipflow", 7), HsmError);
  EXPECT_THROW(ks().retire("sipflow", 0), HsmError);
  EXPECT_EQ(ks().get("sipflow").versions[0].state, KeyState::active);
}

TEST_F(KeySetTest, RetentionDestroysTheOldestBeyondRetain) {
  ks().create("sipflow", 2);
  ks().rotate("sipflow");
  EXPECT_EQ(versions_of(ks().get("sipflow")), (std::vector<std::uint32_t>{1, 2}));
  ks().rotate("sipflow");
  EXPECT_EQ(versions_of(ks().get("sipflow")), (std::vector<std::uint32_t>{2, 3}));
  ks().rotate("sipflow");
  EXPECT_EQ(versions_of(ks().get("sipflow")), (std::vector<std::uint32_t>{3, 4}));
  // Gone from the token, not just hidden.
  EXPECT_EQ(token_labels(), (std::vector<std::string>{"sipflow/v3", "sipflow/v4"}));
  // Version numbers are never reused.
  EXPECT_EQ(ks().rotate("sipflow").version, 5u);
}

TEST_F(KeySetTest, ListShowsEverySetAndDestroyRemovesOnlyOne) {
  ks().create("a", 3);
  ks().create("ab", 3);  // a prefix of another name must not confuse anything
  ks().create("a.b", 3);
  ks().rotate("ab");

  auto list = ks().list();
  std::vector<std::string> names;
  for (const auto& s : list) names.push_back(s.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "a.b", "ab"}));
  for (const auto& s : list) {
    EXPECT_EQ(versions_of(s),
              s.name == "ab" ? (std::vector<std::uint32_t>{1, 2}) : (std::vector<std::uint32_t>{1}))
        << s.name;
  }

  ks().destroy("a");
  EXPECT_FALSE(ks().exists("a"));
  EXPECT_TRUE(ks().exists("ab"));
  EXPECT_TRUE(ks().exists("a.b"));
  EXPECT_EQ(versions_of(ks().get("ab")), (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(token_labels(), (std::vector<std::string>{"a.b/v1", "ab/v1", "ab/v2"}));

  // The name can be used again, from version 1.
  EXPECT_EQ(versions_of(ks().create("a")), std::vector<std::uint32_t>{1});
}

TEST_F(KeySetTest, EveryRetainedVersionVerifiesAndARetiredOneDoesNot) {
  ks().create("sipflow", 3);
  auto mac = hsm_->mac_for("sipflow");
  auto data = edge::test::sample_data();
  MacTag t1{}, t2{}, t3{};
  ASSERT_EQ(mac->sign(1, data, t1), MacStatus::ok);
  ks().rotate("sipflow");
  mac->refresh();
  ASSERT_EQ(mac->sign(2, data, t2), MacStatus::ok);
  ks().rotate("sipflow");
  mac->refresh();
  ASSERT_EQ(mac->sign(3, data, t3), MacStatus::ok);
  EXPECT_EQ(mac->minting_version(), 3u);

  EXPECT_EQ(mac->verify(1, data, t1), MacStatus::ok);
  EXPECT_EQ(mac->verify(2, data, t2), MacStatus::ok);
  EXPECT_EQ(mac->verify(3, data, t3), MacStatus::ok);
  // A tag only verifies under its own version.
  EXPECT_EQ(mac->verify(2, data, t1), MacStatus::mismatch);

  auto epoch = mac->epoch();
  ks().retire("sipflow", 2);
  mac->refresh();
  EXPECT_NE(mac->epoch(), epoch) << "caches of verified tokens must be dropped";
  EXPECT_EQ(mac->verify(2, data, t2), MacStatus::retired_version);
  MacTag again{};
  EXPECT_EQ(mac->sign(2, data, again), MacStatus::retired_version);
  EXPECT_EQ(mac->verify(1, data, t1), MacStatus::ok);
  EXPECT_EQ(mac->verify(3, data, t3), MacStatus::ok);

  // Retention: one more rotation pushes v1 out; its tags now name an unknown version.
  ks().rotate("sipflow");
  epoch = mac->epoch();
  mac->refresh();
  EXPECT_NE(mac->epoch(), epoch);
  EXPECT_EQ(mac->verify(1, data, t1), MacStatus::unknown_version);
  EXPECT_EQ(mac->verify(3, data, t3), MacStatus::ok);
}

// A restart: every edge_hsm object goes away (the shim shows SoftHSM really was
// finalised), a new Hsm opens the same token, and nothing held in memory helps.
TEST(KeySetRestart, KeySetsAndTheirTagsSurviveARestart) {
  SoftHsmToken token;
  edge::test::FaultShim shim(token);
  auto data = edge::test::sample_data(40, 9);
  MacTag t1{}, t2{}, t3{};
  KeySetInfo before;
  {
    Hsm hsm(shim.config());
    hsm.keysets().create("sipflow", 3);
    auto mac = hsm.mac_for("sipflow");
    ASSERT_EQ(mac->sign(1, data, t1), MacStatus::ok);
    hsm.keysets().rotate("sipflow");
    hsm.keysets().rotate("sipflow");
    mac->refresh();
    ASSERT_EQ(mac->sign(2, data, t2), MacStatus::ok);
    ASSERT_EQ(mac->sign(3, data, t3), MacStatus::ok);
    hsm.keysets().retire("sipflow", 2);
    hsm.keysets().create("other", 2);
    before = hsm.keysets().get("sipflow");
  }
  EXPECT_GE(shim.calls("C_Finalize"), 1u) << "the module was not finalised: not a real restart";

  Hsm hsm(shim.config());
  auto after = hsm.keysets().get("sipflow");
  EXPECT_EQ(after.retain, 3u);
  ASSERT_EQ(versions_of(after), versions_of(before));
  for (std::size_t i = 0; i < after.versions.size(); ++i) {
    EXPECT_EQ(after.versions[i].state, before.versions[i].state) << i;
    EXPECT_EQ(after.versions[i].created_unix, before.versions[i].created_unix) << i;
    EXPECT_EQ(after.versions[i].minting, before.versions[i].minting) << i;
  }
  EXPECT_EQ(after.minting_version(), 3u);
  EXPECT_TRUE(hsm.keysets().exists("other"));
  EXPECT_EQ(hsm.keysets().get("other").retain, 2u);

  auto mac = hsm.mac_for("sipflow");
  EXPECT_EQ(mac->minting_version(), 3u);
  EXPECT_EQ(mac->verify(1, data, t1), MacStatus::ok);
  EXPECT_EQ(mac->verify(2, data, t2), MacStatus::retired_version);
  EXPECT_EQ(mac->verify(3, data, t3), MacStatus::ok);
  MacTag again{};
  ASSERT_EQ(mac->sign(3, data, again), MacStatus::ok);
  EXPECT_EQ(again, t3) << "same key, same data, same tag";

  // Management after the restart continues the numbering and the retention.
  EXPECT_EQ(hsm.keysets().rotate("sipflow").version, 4u);
  EXPECT_EQ(versions_of(hsm.keysets().get("sipflow")), (std::vector<std::uint32_t>{2, 3, 4}));
}

// Peak resident memory of this process so far (VmHWM), in bytes.
std::size_t peak_rss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// Writes, with plain PKCS#11, a key that looks exactly like version `version` of `set`
// (label "<set>/v<N>", CKA_ID "EKS1" | version | created | retain | name, as keyset.h
// describes them): what another tool, a restore or a corruption could leave on a token.
void plant_version(const SoftHsmToken& token, const std::string& set, std::uint32_t version) {
  edge::test::RawP11 p11(edge::test::softhsm_module_path());
  auto s = p11.open_session(p11.slot_by_label(token.label()), true);
  p11.login(s, token.user_pin());
  std::vector<std::uint8_t> id = {'E', 'K', 'S', '1'};
  for (int i = 3; i >= 0; --i) id.push_back(static_cast<std::uint8_t>(version >> (8 * i)));
  auto now = static_cast<std::uint64_t>(std::time(nullptr));
  for (int i = 7; i >= 0; --i) id.push_back(static_cast<std::uint8_t>(now >> (8 * i)));
  for (std::uint8_t b : {0, 0, 0, 3}) id.push_back(b);
  for (char c : set) id.push_back(static_cast<std::uint8_t>(c));
  auto key = p11.generate_hmac_key(s, set + "/v" + std::to_string(version));
  CK_ATTRIBUTE a{CKA_ID, id.data(), id.size()};
  edge::test::p11_check(p11.f().C_SetAttributeValue(s, key, &a, 1), "C_SetAttributeValue(CKA_ID)");
}

std::size_t secret_keys_on(const SoftHsmToken& token) {
  edge::test::RawP11 p11(edge::test::softhsm_module_path());
  auto s = p11.open_session(p11.slot_by_label(token.label()), false);
  p11.login(s, token.user_pin());
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  return p11.find(s, {{CKA_CLASS, &cls, sizeof cls}}).size();
}

// A key on the token that looks like one of ours but carries a version far beyond the
// others (restored from elsewhere, written by another tool, corrupted): the set must stay
// usable, and memory use must not follow the version *number*. (With a version near 2^32
// the same flaw ends in std::bad_alloc out of mac_for(); 2^23 keeps the test safe to run.)
TEST(KeySetForeignObjects, AHugeVersionNumberDoesNotBreakTheSet) {
  SoftHsmToken token;
  auto data = edge::test::sample_data();
  MacTag t1{};
  {
    Hsm hsm(token.config());
    hsm.keysets().create("sipflow", 3);
    ASSERT_EQ(hsm.mac_for("sipflow")->sign(1, data, t1), MacStatus::ok);
  }
  plant_version(token, "sipflow", 1u << 23);

  Hsm hsm(token.config());
  const std::size_t before = peak_rss();
  ASSERT_GT(before, 0u) << "cannot read VmHWM";
  std::shared_ptr<edge::hsm::KeySetMac> mac;
  try {
    mac = hsm.mac_for("sipflow");
  } catch (const std::bad_alloc&) {
    FAIL() << "mac_for allocated in proportion to the highest version number";
  }
  const std::size_t grown = peak_rss() - before;
  EXPECT_LT(grown, std::size_t{64} << 20)
      << "mac_for took " << (grown >> 20) << " MiB for a set of two keys: memory follows the version number";
  ASSERT_NE(mac, nullptr);
  EXPECT_EQ(mac->verify(1, data, t1), MacStatus::ok);
  MacTag t{};
  EXPECT_EQ(mac->sign(1u << 23, data, t), MacStatus::ok);
  EXPECT_EQ(mac->minting_version(), 1u << 23);
}

// Version numbers are 32-bit: a rotation past the last one must be refused, not wrap to
// version 0 (which no listing shows) and leave an invisible key behind.
TEST(KeySetForeignObjects, RotationPastTheLastVersionNumberIsRefused) {
  SoftHsmToken token;
  {
    Hsm hsm(token.config());
    hsm.keysets().create("sipflow", 3);
  }
  plant_version(token, "sipflow", 0xFFFFFFFFu);
  const auto keys_before = secret_keys_on(token);
  {
    Hsm hsm(token.config());
    EXPECT_EQ(hsm.keysets().get("sipflow").minting_version(), 0xFFFFFFFFu);
    try {
      auto v = hsm.keysets().rotate("sipflow");
      ADD_FAILURE() << "rotate past 4294967295 returned version " << v.version;
    } catch (const HsmError&) {
    }
  }
  EXPECT_EQ(secret_keys_on(token), keys_before) << "rotate left a key no listing shows";
}

// Management done by another process (the edge-hsm tool) while our view is in use:
// the HSM itself tells the running view, before any refresh().
class KeySetOtherProcess : public KeySetTest {
 protected:
  edge::test::CommandResult tool(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        EDGE_HSM_TOOL,  "--module",   edge::test::softhsm_module_path(), "--token",
        token_.label(), "--pin-file", token_.pin_file().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return edge::test::run_command(argv, token_.child_env());
  }
};

TEST_F(KeySetOtherProcess, RetiredElsewhereStopsVerifyingAtOnce) {
  ks().create("sipflow", 3);
  ks().rotate("sipflow");
  auto mac = hsm_->mac_for("sipflow");
  auto data = edge::test::sample_data();
  MacTag t1{};
  ASSERT_EQ(mac->sign(1, data, t1), MacStatus::ok);
  auto epoch = mac->epoch();

  auto r = tool({"keyset", "retire", "sipflow", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  EXPECT_EQ(mac->verify(1, data, t1), MacStatus::retired_version);
  EXPECT_NE(mac->epoch(), epoch);
  MacTag again{};
  EXPECT_EQ(mac->sign(1, data, again), MacStatus::retired_version);
  EXPECT_EQ(mac->minting_version(), 2u);
  EXPECT_EQ(hsm_->state(), edge::hsm::HsmState::available) << "a retired key is not an HSM fault";
}

TEST_F(KeySetOtherProcess, DestroyedElsewhereIsAnUnknownVersion) {
  ks().create("sipflow", 1);
  auto mac = hsm_->mac_for("sipflow");
  auto data = edge::test::sample_data();
  MacTag t1{};
  ASSERT_EQ(mac->sign(1, data, t1), MacStatus::ok);
  auto epoch = mac->epoch();

  auto r = tool({"keyset", "rotate", "sipflow"});  // retain 1: v1 is destroyed
  ASSERT_EQ(r.exit_code, 0) << r.err;

  EXPECT_EQ(mac->verify(1, data, t1), MacStatus::unknown_version);
  EXPECT_NE(mac->epoch(), epoch);
  EXPECT_EQ(hsm_->state(), edge::hsm::HsmState::available);
  mac->refresh();
  EXPECT_EQ(mac->minting_version(), 2u);
  MacTag t2{};
  EXPECT_EQ(mac->sign(2, data, t2), MacStatus::ok);
}

TEST_F(KeySetOtherProcess, SetsMadeElsewhereAreSeenByOurManager) {
  auto r = tool({"keyset", "create", "fromtool", "--retain", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(tool({"keyset", "rotate", "fromtool"}).exit_code, 0);
  auto info = ks().get("fromtool");
  EXPECT_EQ(info.retain, 4u);
  EXPECT_EQ(versions_of(info), (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(info.minting_version(), 2u);
  auto mac = hsm_->mac_for("fromtool");
  MacTag t{};
  EXPECT_EQ(mac->sign(2, edge::test::sample_data(), t), MacStatus::ok);
}

}  // namespace
