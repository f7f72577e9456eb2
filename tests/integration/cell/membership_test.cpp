// Membership against a real etcd: members register on leases and are listed; one that leaves
// is gone at once; a second appliance with the same id and another transport key is refused
// (conflict), never overwriting; while etcd is down a member is degraded, not stopped, and it
// is joined again when etcd returns.
#include <edge/cell/etcd.h>
#include <edge/cell/membership.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "etcd_server.h"

namespace {

using edge::cell::EtcdClient;
using edge::cell::MemberInfo;
using edge::cell::Membership;
using edge::cell::MembershipState;
using edge::test::EtcdServer;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

MemberInfo member(const std::string& id, const std::string& fingerprint) {
  MemberInfo m;
  m.id = id;
  m.fingerprint = fingerprint;
  m.identity = {0x30, 0x82, 0x01, 0x22};  // public material only; its content is not checked here
  m.version = "9.9.9-test";
  m.joined_unix = 1700000000;
  return m;
}

std::vector<std::string> ids(const std::vector<MemberInfo>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.push_back(m.id);
  return out;
}

class MembershipTest : public ::testing::Test {
 protected:
  void SetUp() override { etcd_.start(); }
  EtcdServer etcd_;
};

TEST_F(MembershipTest, MembersAreListedWhileTheyLiveAndOneThatLeavesIsGoneAtOnce) {
  EtcdClient c(etcd_.options());
  auto a = std::make_unique<Membership>(c, "lab", member("edge-a", "sha256:aa"), 6s);
  Membership b(c, "lab", member("edge-b", "sha256:bb"), 6s);
  ASSERT_TRUE(a->wait_for(MembershipState::joined, 5s)) << a->status().reason;
  ASSERT_TRUE(b.wait_for(MembershipState::joined, 5s)) << b.status().reason;
  const auto listed = edge::cell::list_members(c, "lab");
  EXPECT_THAT(ids(listed), ::testing::ElementsAre("edge-a", "edge-b"));
  EXPECT_EQ(listed[0].fingerprint, "sha256:aa");
  EXPECT_EQ(listed[0].identity.size(), 4u);
  EXPECT_NE(a->status().lease, 0);
  EXPECT_TRUE(edge::cell::list_members(c, "other-cell").empty());

  a.reset();  // leaves: the lease is revoked, the record goes with it
  EXPECT_THAT(ids(edge::cell::list_members(c, "lab")), ::testing::ElementsAre("edge-b"));
}

TEST_F(MembershipTest, AnotherApplianceWithTheSameIdIsRefusedAndNothingIsOverwritten) {
  EtcdClient c(etcd_.options());
  Membership first(c, "lab", member("edge-a", "sha256:aa"), 6s);
  ASSERT_TRUE(first.wait_for(MembershipState::joined, 5s));
  Membership impostor(c, "lab", member("edge-a", "sha256:ff"), 6s);
  ASSERT_TRUE(impostor.wait_for(MembershipState::conflict, 5s))
      << edge::cell::to_string(impostor.status().state);
  EXPECT_THAT(impostor.status().reason, HasSubstr("sha256:aa"));
  const auto listed = edge::cell::list_members(c, "lab");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].fingerprint, "sha256:aa") << "the first registration stands";
  EXPECT_EQ(first.status().state, MembershipState::joined);
}

TEST_F(MembershipTest, WhileEtcdIsDownAMemberIsDegradedAndItJoinsAgainWhenEtcdReturns) {
  edge::cell::EtcdOptions o = etcd_.options();
  o.call_timeout = 500ms;
  EtcdClient c(o);
  std::vector<std::string> seen;
  std::mutex mu;
  Membership a(c, "lab", member("edge-a", "sha256:aa"), 3s, [&](const edge::cell::MembershipStatus& s) {
    std::lock_guard lock(mu);
    seen.emplace_back(edge::cell::to_string(s.state));
  });
  ASSERT_TRUE(a.wait_for(MembershipState::joined, 5s));
  etcd_.stop();
  ASSERT_TRUE(a.wait_for(MembershipState::degraded, 5s))
      << "etcd gone, still " << to_string(a.status().state);
  EXPECT_THAT(a.status().reason, HasSubstr("etcd"));
  // Longer than the lease: whatever etcd kept, the member comes back as joined.
  std::this_thread::sleep_for(3500ms);
  etcd_.start();
  ASSERT_TRUE(a.wait_for(MembershipState::joined, 10s)) << a.status().reason;
  EXPECT_THAT(ids(edge::cell::list_members(c, "lab")), ::testing::ElementsAre("edge-a"));
  std::lock_guard lock(mu);
  EXPECT_THAT(seen, ::testing::ElementsAre("joined", "degraded", "joined"));
}

TEST_F(MembershipTest, UpdateRewritesTheRecordOnItsLeaseKeepingTheIdentity) {
  EtcdClient c(etcd_.options());
  Membership a(c, "lab", member("edge-a", "sha256:aa"), 6s);
  ASSERT_TRUE(a.wait_for(MembershipState::joined, 5s));
  const std::int64_t lease = a.status().lease;
  MemberInfo next = member("edge-a", "sha256:aa");
  next.identity = {0x01};  // ignored: the identity is the one the member registered with
  next.fingerprint = "sha256:changed";
  next.held = {1, 2};
  next.minting = 2;
  next.state = "approved";
  a.update(next);
  std::vector<MemberInfo> listed;
  for (int i = 0; i < 100; ++i) {
    listed = edge::cell::list_members(c, "lab");
    if (listed.size() == 1 && listed[0].minting == 2) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_THAT(listed[0].held, ::testing::ElementsAre(1u, 2u));
  EXPECT_EQ(listed[0].minting, 2u);
  EXPECT_EQ(listed[0].state, "approved");
  EXPECT_EQ(listed[0].fingerprint, "sha256:aa");
  EXPECT_EQ(listed[0].identity.size(), 4u);
  EXPECT_EQ(a.status().lease, lease);
  EXPECT_EQ(c.get("/edge/cell/lab/members/edge-a")->lease, lease) << "still on the member's lease";
}

TEST(MembershipArguments, InvalidNamesAndAShortLeaseAreRefused) {
  edge::cell::EtcdOptions o;
  o.endpoints = {"127.0.0.1:1"};
  EtcdClient c(o);
  EXPECT_THROW(Membership(c, "no/slash", member("edge-a", "x"), 6s), std::invalid_argument);
  EXPECT_THROW(Membership(c, "lab", member("", "x"), 6s), std::invalid_argument);
  EXPECT_THROW(Membership(c, "lab", member("edge-a", "x"), 2s), std::invalid_argument);
}

}  // namespace
