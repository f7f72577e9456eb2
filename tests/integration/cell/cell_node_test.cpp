// CellNode against a real etcd, real SoftHSM tokens (one per member) and the real edge-hsm
// binary for admission: joining with approvals both ways, transitive admission, refused
// fingerprints, forged records, the two-phase rotation (waits, removal, take-over,
// catch-up), etcd away, the store's content, retirement and retain.
#include <edge/cell/cell.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "cell_fixture.h"
#include "edge/cell/v1/cell.pb.h"

namespace edge::test::cell {
namespace {

using edge::cell::CellError;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

namespace v1 = edge::cell::v1;

std::vector<std::uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

bool any_contains(const std::vector<std::string>& lines, const std::string& what) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(what) != std::string::npos; });
}

class CellNodeTest : public CellFixture {};

TEST_F(CellNodeTest,
       JoinIsPendingUntilApprovedBothWaysThenTheSameVersionAndAThirdMemberIsAdmittedTransitively) {
  Box& a = box("a");
  a.node->create();
  EXPECT_THAT(a.switch_calls(), ElementsAre(1u));
  EXPECT_EQ(get("minting"), "1");
  a.node->start();

  Box& b = box("b");
  const edge::cell::JoinResult j = b.node->join();
  EXPECT_EQ(j.member_id, "b");
  EXPECT_EQ(j.fingerprint, b.fingerprint());
  ASSERT_EQ(j.members.size(), 2u);  // the founder (with its fingerprint, for the operator) and b
  EXPECT_EQ(j.members[0].id, "a");
  EXPECT_EQ(j.members[0].fingerprint, a.fingerprint());
  EXPECT_EQ(j.members[1].roster_state, "pending");
  b.node->start();
  ASSERT_TRUE(eventually([&] { return b.node->status().state == "pending"; })) << b.node->status().state;
  EXPECT_THAT(b.node->status().reason, HasSubstr("edgectl cell approve b --fingerprint " + j.fingerprint));
  // Until approved, nothing is wrapped for b and b imports nothing.
  const auto passes = a.node->status().loop_passes;
  ASSERT_TRUE(eventually([&] { return a.node->status().loop_passes >= passes + 3; }));
  EXPECT_EQ(count("blobs/1/b"), 0u);
  EXPECT_FALSE(a.trusts("b"));
  EXPECT_TRUE(b.held().empty());
  EXPECT_EQ(b.mints(), 0u);

  a.node->approve("b", j.fingerprint);
  EXPECT_TRUE(a.trusts("b"));
  b.node->approve("a", a.fingerprint());
  ASSERT_TRUE(eventually([&] { return b.mints() == 1; })) << b.node->status().reason;
  EXPECT_EQ(b.held(), std::set<std::uint32_t>{1});
  EXPECT_EQ(b.keys().check_value("lab", 1), a.keys().check_value("lab", 1));
  EXPECT_TRUE(b.saw("CELL_VERSION_IMPORTED version=1 origin=a"));
  ASSERT_TRUE(eventually([&] { return b.node->status().state == "joined"; })) << b.node->status().reason;
  // b's own front end verifies what a's mints (the same key, in two HSMs).
  {
    const std::string msg = "a flow token body";
    edge::hsm::MacTag tag{};
    ASSERT_EQ(a.hsm->mac_for("lab")->sign(1, bytes(msg), tag), edge::hsm::MacStatus::ok);
    EXPECT_EQ(b.hsm->mac_for("lab")->verify(1, bytes(msg), tag), edge::hsm::MacStatus::ok);
  }

  // c: approved by a only, and approving a only; b admits c through a's signed approval and c
  // admits b through a's approval of b.
  Box& c = box("c");
  const edge::cell::JoinResult jc = c.node->join();
  a.node->approve("c", jc.fingerprint);
  c.node->approve("a", a.fingerprint());
  c.node->start();
  ASSERT_TRUE(eventually([&] { return b.trusts("c"); })) << "b does not trust c";
  ASSERT_TRUE(eventually([&] { return c.trusts("b"); })) << "c does not trust b";
  EXPECT_TRUE(b.saw("CELL_ADMITTED member=c"));
  EXPECT_TRUE(c.saw("CELL_ADMITTED member=b"));
  ASSERT_TRUE(eventually([&] { return c.mints() == 1; })) << c.node->status().reason;
  EXPECT_EQ(c.keys().check_value("lab", 1), a.keys().check_value("lab", 1));
  const edge::cell::CellStatus st = c.node->status();
  EXPECT_EQ(st.state, "joined");
  ASSERT_EQ(st.members.size(), 3u);
  for (const auto& m : st.members) {
    EXPECT_EQ(m.roster_state, "approved") << m.id;
    EXPECT_TRUE(m.trusted_here) << m.id;
    EXPECT_TRUE(eventually([&] { return count("members/" + m.id) == 1; })) << m.id;
  }
}

// A member admitted after a rotation gets every version the cell still verifies with, not only the
// one it mints: a token minted with v1 before it joined verifies on it. A version beyond retain is
// not sent to it, and one it destroyed is not imported again from its old blob.
TEST_F(CellNodeTest, AMemberAdmittedAfterARotationHoldsEveryRetainedVersion) {
  retain_ = 2;
  cell_of({"a", "b"});
  Box& a = box("a");
  const std::string msg = "a flow token minted before c joined";
  edge::hsm::MacTag v1_tag{};
  ASSERT_EQ(a.hsm->mac_for("lab")->sign(1, bytes(msg), v1_tag), edge::hsm::MacStatus::ok);
  EXPECT_EQ(a.node->rotate(), 2u);
  ASSERT_TRUE(eventually([&] { return a.node->status().rotation_phase == "done"; }));

  Box& c = box("c");
  const edge::cell::JoinResult j = c.node->join();
  a.node->approve("c", j.fingerprint);
  c.node->approve("a", a.fingerprint());
  c.node->start();
  ASSERT_TRUE(eventually([&] { return c.mints() == 2; })) << c.node->status().reason;
  ASSERT_TRUE(eventually([&] {
    return c.held(true) == std::set<std::uint32_t>{1, 2};
  })) << ::testing::PrintToString(c.held(true));
  EXPECT_TRUE(c.saw("CELL_VERSION_IMPORTED version=1 origin=a"));
  EXPECT_EQ(c.keys().check_value("lab", 1), a.keys().check_value("lab", 1));
  EXPECT_EQ(c.hsm->mac_for("lab")->verify(1, bytes(msg), v1_tag), edge::hsm::MacStatus::ok);

  // v3: with retain 2, v1 is beyond retain everywhere (destroyed, its blob for c stays in etcd)
  // and stays gone; a member admitted now gets v2 and v3 only.
  EXPECT_EQ(box("b").node->rotate(), 3u);
  for (const char* id : {"a", "b", "c"})
    ASSERT_TRUE(eventually([&] {
      return box(id).held() == std::set<std::uint32_t>{2, 3};
    })) << id
        << " " << ::testing::PrintToString(box(id).held());
  EXPECT_EQ(count("blobs/1/c"), 1u);
  Box& d = box("d");
  const edge::cell::JoinResult jd = d.node->join();
  a.node->approve("d", jd.fingerprint);
  d.node->approve("a", a.fingerprint());
  d.node->start();
  ASSERT_TRUE(eventually([&] {
    return d.mints() == 3 && d.held() == std::set<std::uint32_t>{2, 3};
  })) << ::testing::PrintToString(d.held());
  const auto passes = c.node->status().loop_passes;
  ASSERT_TRUE(eventually([&] { return c.node->status().loop_passes >= passes + 3; }));
  EXPECT_EQ(c.held(), (std::set<std::uint32_t>{2, 3}));
  EXPECT_EQ(count("blobs/1/d"), 0u);
  EXPECT_EQ(c.hsm->mac_for("lab")->verify(1, bytes(msg), v1_tag), edge::hsm::MacStatus::unknown_version);
}

TEST_F(CellNodeTest, ApproveWithAFingerprintThatDoesNotMatchIsRefusedAndNothingIsAdmittedOrWrapped) {
  Box& a = box("a");
  a.node->create();
  a.node->start();
  Box& b = box("b");
  const edge::cell::JoinResult j = b.node->join();
  b.node->start();
  std::string wrong = j.fingerprint;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  try {
    a.node->approve("b", wrong);
    FAIL() << "approved with a wrong fingerprint";
  } catch (const CellError& e) {
    EXPECT_THAT(e.what(), HasSubstr("fingerprint mismatch"));
    EXPECT_THAT(e.what(), HasSubstr("nothing admitted"));
  }
  // a's own fingerprint is not b's either.
  EXPECT_THROW(a.node->approve("b", a.fingerprint()), CellError);
  // edge-hsm itself refuses a mismatch (the SO act checks the fingerprint in the HSM).
  try {
    v1::RosterEntry r;
    ASSERT_TRUE(r.ParseFromString(get("roster/b").value_or("")));
    hooks(a).admit("b", bytes(r.identity()), wrong);
    FAIL() << "edge-hsm admitted with a wrong fingerprint";
  } catch (const CellError& e) {
    EXPECT_THAT(e.what(), HasSubstr("admitting b failed: "));
    EXPECT_THAT(e.what(), HasSubstr(wrong)) << "edge-hsm's own reason";
  }
  const auto passes = a.node->status().loop_passes;
  ASSERT_TRUE(eventually([&] { return a.node->status().loop_passes >= passes + 3; }));
  EXPECT_FALSE(a.trusts("b"));
  EXPECT_EQ(count("approvals/"), 0u);
  EXPECT_EQ(count("blobs/"), 0u);
  EXPECT_TRUE(b.held().empty());
  EXPECT_EQ(b.node->status().state, "pending");
}

TEST_F(CellNodeTest, ForgedApprovalsAndVersionRecordsInEtcdAreIgnoredReportedAndNeverImported) {
  cell_of({"a", "b"});
  Box& a = box("a");
  Box& b = box("b");

  // An outsider with a real identity of its own, in the roster, never approved by anyone.
  Box& d = box("d");
  d.node->join();  // keys, self-admission, roster PENDING
  const std::string fd = d.fingerprint();
  // 1. An approval of d "by a" with a signature a never made.
  v1::Approval forged;
  forged.set_member("d");
  forged.set_fingerprint(fd);
  forged.set_approver("a");
  forged.set_signature(std::string(256, '\x5a'));
  client_->put("/edge/cell/lab/approvals/a/d", forged.SerializeAsString());
  // 2. An approval of d by d itself (an untrusted signer), really signed by d's key.
  v1::Approval self_signed = forged;
  self_signed.set_approver("d");
  const auto sig = d.keys().sign(bytes("anything d signs"));
  self_signed.set_signature(std::string(sig.begin(), sig.end()));
  client_->put("/edge/cell/lab/approvals/d/d", self_signed.SerializeAsString());
  // 3. a's real version record with a changed field (version 7), and a real blob for b.
  auto rec = edge::hsm::decode_record(bytes(*get("versions/1")));
  ASSERT_TRUE(rec);
  edge::hsm::VersionRecord changed = *rec;
  changed.version = 7;
  const auto enc = edge::hsm::encode_record(changed);
  client_->put("/edge/cell/lab/versions/7", std::string(enc.begin(), enc.end()));
  const auto blob = a.keys().wrap_version_for("lab", 1, "b");
  client_->put("/edge/cell/lab/blobs/7/b", std::string(blob.begin(), blob.end()));
  // 4. A version record signed by d (untrusted at b), generated in d's HSM.
  const edge::hsm::VersionRecord by_d = d.keys().generate_version("d", "lab", 8, 1700000000, 3);
  const auto enc_d = edge::hsm::encode_record(by_d);
  client_->put("/edge/cell/lab/versions/8", std::string(enc_d.begin(), enc_d.end()));
  // 5. The cell's minting moved forward to a version nobody holds, and a rotation record to it.
  client_->put("/edge/cell/lab/minting", "8");

  ASSERT_TRUE(eventually([&] {
    const auto r = b.node->status().refused;
    return any_contains(r, "approvals/a/d") && any_contains(r, "approvals/d/d") &&
           any_contains(r, "versions/7") && any_contains(r, "versions/8");
  })) << ::testing::PrintToString(b.node->status().refused);
  const auto refused = b.node->status().refused;
  EXPECT_TRUE(any_contains(refused, "approvals/a/d: signature by a does not verify"));
  EXPECT_TRUE(any_contains(refused, "versions/8: signer d is not trusted here"));
  const auto passes = b.node->status().loop_passes;
  ASSERT_TRUE(eventually([&] { return b.node->status().loop_passes >= passes + 3; }));
  EXPECT_FALSE(b.trusts("d"));
  EXPECT_FALSE(a.trusts("d"));
  EXPECT_EQ(b.held(), std::set<std::uint32_t>{1});
  EXPECT_EQ(a.held(), std::set<std::uint32_t>{1});
  EXPECT_THAT(b.switch_calls(), ElementsAre(1u));  // minting=8 is not held: no switch
  EXPECT_THAT(a.switch_calls(), ElementsAre(1u));
  EXPECT_EQ(count("blobs/8/"), 0u);
  EXPECT_TRUE(b.saw("CELL_RECORD_REFUSED record=versions/7 reason=signature by a does not verify"));
}

TEST_F(CellNodeTest, RotationAcksFromAllThenEverySwitchThenDoneAndMintingNeverMovesBackwards) {
  cell_of({"a", "b", "c"});
  Box& a = box("a");
  const std::uint32_t n = a.node->rotate();
  EXPECT_EQ(n, 2u);
  for (const char* id : {"a", "b", "c"}) {
    Box& x = box(id);
    ASSERT_TRUE(eventually([&] { return x.mints() == 2; })) << id << ": " << x.node->status().reason;
    EXPECT_THAT(x.switch_calls(), ElementsAre(1u, 2u)) << id;
    std::lock_guard lock(x.mu);
    EXPECT_EQ(x.acks_at_switch[2], 3u) << id << " switched before every member acked";
  }
  ASSERT_TRUE(eventually([&] { return box("b").node->status().rotation_phase == "done"; }));
  const edge::cell::CellStatus st = box("c").node->status();
  EXPECT_EQ(st.minting, 2u);
  EXPECT_EQ(st.rotation_version, 2u);
  EXPECT_EQ(st.rotation_started_by, "a");
  EXPECT_TRUE(st.rotation_waiting_for.empty());
  EXPECT_EQ(box("b").keys().check_value("lab", 2), a.keys().check_value("lab", 2));
  EXPECT_EQ(box("c").keys().check_value("lab", 2), a.keys().check_value("lab", 2));

  // A second rotation, driven from another member.
  EXPECT_EQ(box("c").node->rotate(), 3u);
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(eventually([&] { return box(id).mints() == 3; })) << id;
  ASSERT_TRUE(eventually([&] { return a.node->status().rotation_phase == "done"; }));

  // etcd's minting moved backwards (by hand): nobody switches back.
  client_->put("/edge/cell/lab/minting", "2");
  const auto passes = a.node->status().loop_passes;
  ASSERT_TRUE(eventually([&] { return a.node->status().loop_passes >= passes + 3; }));
  for (const char* id : {"a", "b", "c"}) EXPECT_THAT(box(id).switch_calls(), ElementsAre(1u, 2u, 3u)) << id;
}

TEST_F(CellNodeTest, AStoppedMemberBlocksPhaseOneUntilItIsRemoved) {
  cell_of({"a", "b", "c"});
  Box& a = box("a");
  Box& b = box("b");
  box("c").node->stop();
  EXPECT_EQ(a.node->rotate(), 2u);
  ASSERT_TRUE(eventually([&] { return count("acks/2/") == 2; }));
  ASSERT_TRUE(eventually([&] {
    return a.node->status().rotation_waiting_for == std::vector<std::string>{"c"};
  })) << ::testing::PrintToString(a.node->status().rotation_waiting_for);
  const auto passes = a.node->status().loop_passes;
  ASSERT_TRUE(eventually([&] { return a.node->status().loop_passes >= passes + 5; }));
  EXPECT_EQ(a.node->status().rotation_phase, "prepare");
  EXPECT_EQ(get("minting"), "1");
  EXPECT_THAT(a.switch_calls(), ElementsAre(1u));
  EXPECT_THAT(b.switch_calls(), ElementsAre(1u));
  try {
    b.node->rotate();
    FAIL() << "a second rotation started during phase 1";
  } catch (const CellError& e) {
    EXPECT_THAT(e.what(), HasSubstr("phase prepare"));
  }
  a.node->remove("c");
  EXPECT_FALSE(a.trusts("c"));
  ASSERT_TRUE(eventually([&] { return a.mints() == 2 && b.mints() == 2; }));
  ASSERT_TRUE(eventually([&] { return a.node->status().rotation_phase == "done"; }));
  ASSERT_TRUE(eventually([&] { return !b.trusts("c"); }));
  EXPECT_EQ(count("approvals/a/c") + count("approvals/c/"), 0u);
}

TEST_F(CellNodeTest, TheInitiatorStoppedRightAfterPublishingIsCompletedByTheOthers) {
  cell_of({"a", "b", "c"});
  Box& a = box("a");
  EXPECT_EQ(a.node->rotate(), 2u);
  a.node->stop();
  for (const char* id : {"b", "c"}) ASSERT_TRUE(eventually([&] { return box(id).mints() == 2; })) << id;
  // Done needs every approved member minting 2: a is waited for, then catches up.
  ASSERT_TRUE(eventually(
      [&] { return box("b").node->status().rotation_waiting_for == std::vector<std::string>{"a"}; }));
  EXPECT_EQ(box("b").node->status().rotation_phase, "switch");
  restart(a);
  ASSERT_TRUE(eventually([&] { return a.mints() == 2; }));
  ASSERT_TRUE(eventually([&] { return box("c").node->status().rotation_phase == "done"; }));
}

TEST_F(CellNodeTest, ARotationWhoseStarterDiedBeforeItsVersionRecordIsTakenOver) {
  cell_of({"a", "b", "c"});
  Box& a = box("a");
  a.node->stop();
  // What a leaves behind when it dies right after its rotation CAS: the record, no version.
  auto current = client_->get("/edge/cell/lab/rotation");
  ASSERT_TRUE(current);
  v1::Rotation rot;
  rot.set_version(2);
  rot.set_phase(v1::PREPARE);
  rot.set_started_by("a");
  rot.set_started_unix(1700000000);
  ASSERT_TRUE(
      client_->compare_and_swap("/edge/cell/lab/rotation", current->mod_revision, rot.SerializeAsString()));
  ASSERT_TRUE(eventually([&] { return get("versions/2").has_value(); }, 40s));
  const auto rec = edge::hsm::decode_record(bytes(*get("versions/2")));
  ASSERT_TRUE(rec);
  EXPECT_TRUE(rec->origin == "b" || rec->origin == "c") << rec->origin;
  EXPECT_TRUE(box(rec->origin).saw("CELL_ROTATION_TAKEOVER version=2"));
  ASSERT_TRUE(eventually([&] { return count("acks/2/") == 2; }));
  EXPECT_EQ(box("b").node->status().rotation_waiting_for, std::vector<std::string>{"a"});
  restart(a);  // a comes back: imports 2 from the taker's blob, acks; the rotation completes
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(eventually([&] { return box(id).mints() == 2; })) << id;
  ASSERT_TRUE(eventually([&] { return a.node->status().rotation_phase == "done"; }));
  EXPECT_EQ(a.keys().record("lab", 2)->origin, rec->origin);
}

TEST_F(CellNodeTest, AVersionOnlyItsGoneOriginHoldsIsAbandonedForTheNextOne) {
  cell_of({"a", "b", "c"});
  Box& a = box("a");
  a.node->stop();
  // a died after publishing its record of v2 and before wrapping it for anyone.
  auto current = client_->get("/edge/cell/lab/rotation");
  ASSERT_TRUE(current);
  v1::Rotation rot;
  rot.set_version(2);
  rot.set_phase(v1::PREPARE);
  rot.set_started_by("a");
  rot.set_started_unix(1700000000);
  ASSERT_TRUE(
      client_->compare_and_swap("/edge/cell/lab/rotation", current->mod_revision, rot.SerializeAsString()));
  const edge::hsm::VersionRecord v2 = a.keys().generate_version("a", "lab", 2, 1700000000, 3);
  const auto enc = edge::hsm::encode_record(v2);
  ASSERT_TRUE(client_->create("/edge/cell/lab/versions/2", std::string(enc.begin(), enc.end())));
  // The operator removes a: nobody can wrap v2 now, so the rotation goes on with v3.
  box("b").node->remove("a");
  ASSERT_TRUE(eventually([&] { return box("b").node->status().rotation_version == 3; }))
      << box("b").node->status().rotation_version;
  for (const char* id : {"b", "c"}) ASSERT_TRUE(eventually([&] { return box(id).mints() == 3; })) << id;
  ASSERT_TRUE(eventually([&] { return box("c").node->status().rotation_phase == "done"; }));
  EXPECT_TRUE(box("b").saw("CELL_ROTATION_RESTARTED version=3 abandoned=2") ||
              box("c").saw("CELL_ROTATION_RESTARTED version=3 abandoned=2"));
  EXPECT_FALSE(box("b").held().count(2));
  EXPECT_THAT(box("c").switch_calls(), ElementsAre(1u, 3u));
}

TEST_F(CellNodeTest, EtcdAwayMakesTheCellDegradedWithoutTouchingTheFrontEndAndItCatchesUpAfter) {
  cell_of({"a", "b"});
  Box& a = box("a");
  Box& b = box("b");
  etcd_.stop();
  for (Box* x : {&a, &b}) {
    ASSERT_TRUE(eventually([&] {
      const auto st = x->node->status();
      return st.state == "degraded" && !st.etcd_healthy && !st.reason.empty();
    })) << x->id;
    // The loop's own pass meets the trouble too (its calls are bounded by the etcd deadline).
    EXPECT_TRUE(eventually([&] { return x->saw("CELL_DEGRADED"); })) << x->id;
  }
  // The front end goes on minting and verifying with what the HSM holds.
  {
    const std::string msg = "while etcd is away";
    edge::hsm::MacTag tag{};
    ASSERT_EQ(a.hsm->mac_for("lab")->sign(1, bytes(msg), tag), edge::hsm::MacStatus::ok);
    EXPECT_EQ(b.hsm->mac_for("lab")->verify(1, bytes(msg), tag), edge::hsm::MacStatus::ok);
  }
  EXPECT_THROW(a.node->rotate(), CellError);  // operator acts answer, bounded
  EXPECT_THAT(a.switch_calls(), ElementsAre(1u));
  EXPECT_THAT(b.switch_calls(), ElementsAre(1u));
  etcd_.start();
  for (Box* x : {&a, &b})
    ASSERT_TRUE(eventually([&] { return x->node->status().state == "joined"; }))
        << x->id << " " << x->node->status().reason;
  EXPECT_TRUE(a.saw("CELL_RECOVERED"));

  // b is away (its loop stopped, its lease gone) while a rotates; b catches up when it returns.
  b.node->stop();
  EXPECT_EQ(a.node->rotate(), 2u);
  ASSERT_TRUE(
      eventually([&] { return a.node->status().rotation_waiting_for == std::vector<std::string>{"b"}; }));
  EXPECT_THAT(a.switch_calls(), ElementsAre(1u));
  restart(b);
  ASSERT_TRUE(eventually([&] { return a.mints() == 2 && b.mints() == 2; }));
  ASSERT_TRUE(eventually([&] { return a.node->status().rotation_phase == "done"; }));
}

// Every value under /edge/cell/lab/ is one of the store's public messages; blobs are RSA-2048
// sized; public keys parse as SPKIs; nothing else is there.
TEST_F(CellNodeTest, TheStoreHoldsOnlyPublicMessagesAndWrappedBlobs) {
  cell_of({"a", "b", "c"});
  EXPECT_EQ(box("b").node->rotate(), 2u);
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(eventually([&] { return box(id).mints() == 2; })) << id;
  ASSERT_TRUE(eventually([&] { return box("a").node->status().rotation_phase == "done"; }));
  auto check_identity = [](const std::string& identity, const std::string& fp) {
    const auto parts = edge::hsm::split_identity(bytes(identity));
    EXPECT_EQ(edge::hsm::parse_rsa_spki(parts.transport_spki).modulus.size(), 256u);
    EXPECT_EQ(edge::hsm::parse_rsa_spki(parts.signing_spki).modulus.size(), 256u);
    EXPECT_EQ(edge::hsm::identity_fingerprint(bytes(identity)), fp);
  };
  const std::string prefix = "/edge/cell/lab/";
  std::map<std::string, int> kinds;
  for (const auto& kv : client_->get_prefix(prefix).kvs) {
    const std::string k = kv.key.substr(prefix.size());
    const std::string kind = k.substr(0, k.find('/'));
    ++kinds[kind];
    SCOPED_TRACE(k);
    if (k == "meta") {
      v1::Cell c;
      ASSERT_TRUE(c.ParseFromString(kv.value));
      EXPECT_EQ(c.name(), "lab");
      EXPECT_EQ(c.founder(), "a");
    } else if (kind == "roster") {
      v1::RosterEntry r;
      ASSERT_TRUE(r.ParseFromString(kv.value));
      check_identity(r.identity(), r.fingerprint());
    } else if (kind == "approvals") {
      v1::Approval a;
      ASSERT_TRUE(a.ParseFromString(kv.value));
      EXPECT_EQ(a.signature().size(), 256u);
    } else if (kind == "members") {
      v1::Member m;
      ASSERT_TRUE(m.ParseFromString(kv.value));
      check_identity(m.identity(), m.fingerprint());
      EXPECT_EQ(m.minting(), 2u);
    } else if (kind == "versions") {
      auto rec = edge::hsm::decode_record(bytes(kv.value));
      ASSERT_TRUE(rec);
      EXPECT_EQ(rec->signature.size(), 256u);
      EXPECT_EQ(edge::hsm::encode_record(*rec), bytes(kv.value));  // nothing but the record
    } else if (kind == "blobs") {
      EXPECT_EQ(kv.value.size(), 256u);
    } else if (kind == "acks") {
      v1::Ack a;
      ASSERT_TRUE(a.ParseFromString(kv.value));
      EXPECT_EQ(a.signature().size(), 256u);
      EXPECT_EQ(a.check_value().size(), 16u);
    } else if (k == "rotation") {
      v1::Rotation r;
      ASSERT_TRUE(r.ParseFromString(kv.value));
      EXPECT_EQ(r.phase(), v1::DONE);
    } else if (k == "minting") {
      EXPECT_EQ(kv.value, "2");
    } else if (kind == "audit") {
      v1::AuditEntry e;
      ASSERT_TRUE(e.ParseFromString(kv.value));
      EXPECT_FALSE(e.action().empty());
    } else {
      ADD_FAILURE() << "unexpected key " << k;
    }
  }
  EXPECT_EQ(kinds["roster"], 3);
  EXPECT_EQ(kinds["versions"], 2);
  EXPECT_EQ(kinds["blobs"], 4);  // v1 and v2, each for the two members that did not make it
  EXPECT_EQ(kinds["acks"], 6);
  EXPECT_GT(kinds["audit"], 10);
  // Audit names the acts of every member.
  std::set<std::string> acts;
  for (const auto& kv : client_->get_prefix(prefix + "audit/").kvs) {
    v1::AuditEntry e;
    ASSERT_TRUE(e.ParseFromString(kv.value));
    acts.insert(e.member() + " " + e.action());
  }
  EXPECT_THAT(acts, Contains("a CELL_CREATED"));
  EXPECT_THAT(acts, Contains("a CELL_APPROVED"));
  EXPECT_THAT(acts, Contains("b CELL_VERSION_IMPORTED"));
  EXPECT_THAT(acts, Contains("b CELL_VERSION_GENERATED"));
  EXPECT_THAT(acts, Contains("c CELL_SWITCHED"));
}

TEST_F(CellNodeTest, OldVersionsAreRetiredAfterRetireAfterAndDestroyedBeyondRetain) {
  retire_after_ = 1s;
  retain_ = 2;
  cell_of({"a", "b"});
  EXPECT_EQ(box("a").node->rotate(), 2u);
  for (const char* id : {"a", "b"}) {
    Box& x = box(id);
    ASSERT_TRUE(eventually([&] { return x.mints() == 2; })) << id;
    ASSERT_TRUE(eventually([&] { return x.held(true) == std::set<std::uint32_t>{2}; })) << id;
    EXPECT_EQ(x.held(), (std::set<std::uint32_t>{1, 2})) << id;
    EXPECT_TRUE(x.saw("CELL_VERSION_RETIRED version=1"));
    const std::string msg = "old token";
    edge::hsm::MacTag tag{};
    EXPECT_EQ(x.hsm->mac_for("lab")->sign(1, bytes(msg), tag), edge::hsm::MacStatus::retired_version) << id;
  }
  ASSERT_TRUE(eventually([&] { return box("a").node->status().rotation_phase == "done"; }));
  EXPECT_EQ(box("b").node->rotate(), 3u);
  for (const char* id : {"a", "b"}) {
    Box& x = box(id);
    ASSERT_TRUE(eventually([&] { return x.mints() == 3; })) << id;
    ASSERT_TRUE(eventually([&] { return x.held() == std::set<std::uint32_t>{2, 3}; })) << id;
    // destroy_version takes the copies first, the record last: wait for all of it.
    EXPECT_TRUE(eventually([&] { return !x.keys().record("lab", 1).has_value(); })) << id;
    ASSERT_TRUE(eventually([&] { return x.held(true) == std::set<std::uint32_t>{3}; })) << id;
  }
}

}  // namespace
}  // namespace edge::test::cell

namespace edge::test::cell {
namespace {

TEST_F(CellNodeTest, AMemberThatLeavesIsNoLongerTrustedOrWaitedFor) {
  cell_of({"a", "b"});
  Box& a = box("a");
  Box& b = box("b");
  b.node->leave();
  EXPECT_EQ(b.node->status().state, "left");
  v1::RosterEntry r;
  ASSERT_TRUE(r.ParseFromString(get("roster/b").value_or("")));
  EXPECT_EQ(r.state(), v1::REMOVED);
  ASSERT_TRUE(eventually([&] { return !a.trusts("b"); }));
  EXPECT_TRUE(a.saw("CELL_MEMBER_REMOVED member=b"));
  EXPECT_EQ(a.node->rotate(), 2u);
  ASSERT_TRUE(eventually([&] { return a.mints() == 2; }));
  ASSERT_TRUE(eventually([&] { return a.node->status().rotation_phase == "done"; }));
  EXPECT_EQ(count("blobs/2/b"), 0u) << "nothing is wrapped for a member that left";
  EXPECT_THAT(b.switch_calls(), ElementsAre(1u));  // its keys and front end stay as they were
  EXPECT_EQ(b.held(), std::set<std::uint32_t>{1});
}

// A second box configured with a member's id (its own HSM, so another identity) is refused at join
// with the reason; the member keeps its roster entry, its trust and its versions, and the impostor
// gets nothing wrapped.
TEST_F(CellNodeTest, ASecondBoxWithAMembersIdIsRefusedAndTheMemberKeepsItsPlace) {
  cell_of({"a", "b"});
  Box& a = box("a");
  const std::string roster_b = get("roster/b").value_or("");
  Box impostor;
  impostor.id = "b";
  impostor.label = "cell-d";
  impostor.hsm = std::make_unique<edge::hsm::Hsm>(tokens_.config(impostor.label));
  impostor.node = std::make_unique<edge::cell::CellNode>(*impostor.hsm, config("b"), hooks(impostor));
  try {
    impostor.node->join();
    FAIL() << "a second box joined under b's id";
  } catch (const CellError& e) {
    EXPECT_THAT(e.what(), HasSubstr("member id 'b' is in the roster with another identity"));
    EXPECT_THAT(e.what(), HasSubstr("choose another cell.member_id"));
  }
  EXPECT_EQ(get("roster/b").value_or(""), roster_b);
  const auto passes = a.node->status().loop_passes;
  ASSERT_TRUE(eventually([&] { return a.node->status().loop_passes >= passes + 3; }));
  EXPECT_TRUE(a.trusts("b"));
  EXPECT_EQ(count("blobs/1/b"), 1u);  // the one b imported when it joined, nothing new
  EXPECT_TRUE(impostor.held().empty());
  EXPECT_EQ(box("b").node->status().state, "joined");
  impostor.node->stop();
}

// admit_with_edge_hsm's child: the identity reaches it in a 0600 file that is gone afterwards,
// its stderr is the reason, and one that does not finish is killed at the deadline.
TEST(CellAdmitWithEdgeHsm, TheIdentityFileIsPrivateTheReasonIsStderrAndAHangingChildIsKilled) {
  edge::test::TempDir dir("edge-cell-admit");
  const auto script = dir.path() / "fake-edge-hsm";
  {
    std::ofstream f(script);
    // Prints the mode of the --public-key file and its size, then fails; "hang" sleeps instead.
    f << "#!/bin/sh\n"
         "while [ $# -gt 0 ]; do case \"$1\" in --public-key) k=\"$2\"; shift;; --token) t=\"$2\"; shift;; "
         "esac; "
         "shift; done\n"
         "echo \"$k\" > "
      << (dir.path() / "seen").string()
      << "\n"
         "[ \"$t\" = hang ] && exec sleep 30\n"
         "echo \"edge-hsm: mode $(stat -c %a \"$k\") size $(stat -c %s \"$k\")\" >&2\n"
         "exit 1\n";
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  const std::vector<std::uint8_t> identity(588, 0x30);
  auto admit = edge::cell::admit_with_edge_hsm(script, {"--token", "t"}, dir.path() / "so.pin", 10s);
  try {
    admit("b", identity, "sha256:00");
    FAIL() << "a failing child admitted";
  } catch (const CellError& e) {
    EXPECT_THAT(e.what(), HasSubstr("admitting b failed: mode 600 size 588"));
  }
  std::ifstream seen(dir.path() / "seen");
  std::string path;
  std::getline(seen, path);
  ASSERT_FALSE(path.empty());
  EXPECT_FALSE(std::filesystem::exists(path)) << "the identity file is removed afterwards";

  auto hang = edge::cell::admit_with_edge_hsm(script, {"--token", "hang"}, dir.path() / "so.pin", 300ms);
  const auto start = std::chrono::steady_clock::now();
  try {
    hang("b", identity, "sha256:00");
    FAIL() << "a hanging child admitted";
  } catch (const CellError& e) {
    EXPECT_THAT(e.what(), HasSubstr("did not finish within 300 ms"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "the wait is bounded";
}

}  // namespace
}  // namespace edge::test::cell
