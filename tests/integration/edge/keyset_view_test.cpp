// Issue 18 ("The key-set view follows the HSM"): a version retired with edge-hsm by another process,
// with no SIGHUP and no management call, stops verifying within hsm.keyset_refresh_ms, including
// tokens the front end verified (and cached) before, and no flow mints with it any more.
#include <ostream>
#include <string>

#include "edge_fixture.h"

namespace edge::test {
namespace {

// edged with hsm.keyset_refresh_ms = RefreshMs (0: no periodic re-read).
template <int RefreshMs>
class KeySetViewTest : public EdgeTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.extra.emplace_back("hsm.keyset_refresh_ms", std::to_string(RefreshMs));
    return o;
  }

  // alice registers over TCP (a version-1 Path) and bob, on the core, calls her through it and
  // hangs up: the edge has verified that Path and holds it in its verified-token cache.
  // Returns the Path's token.
  std::string register_and_verify_once(TestUa& alice, TestUa& bob) {
    const SipMessage reg = register_through_edge(alice, Transport::tcp);
    EXPECT_EQ(reg.status(), 200) << reg.summary();
    std::string token = path_token(reg);
    EXPECT_EQ(token_key_version(token), 1u) << token;
    bob.connect(Transport::udp, core_->endpoint(Transport::udp));
    Call c = call(bob, alice);
    bob.send(bob.make_in_dialog(c.caller, "BYE"));
    const SipMessage bye = alice.receive_request("BYE");
    alice.send(alice.make_response(bye, 200, "OK"));
    EXPECT_EQ(bob.receive_response("BYE").status(), 200);
    return token;
  }
};

using KeySetView = KeySetViewTest<1000>;

TEST_F(KeySetView, RetireWithEdgeHsmWhileRunningGets403ForACachedTokenAndNoFlowMintsWithIt) {
  TestUa& alice = ua("alice");
  TestUa& bob = ua("bob");
  // A call through the core's stored (version-1) Path: the edge verifies the token and caches it.
  register_and_verify_once(alice, bob);
  ASSERT_FALSE(HasFailure());
  const Endpoint flow = alice.local_endpoint();

  // Another process rotates and retires version 1 on the same token; edged is not told.
  const std::size_t log_mark = edge_->log().size();
  std::string out;
  ASSERT_EQ(edge_->edge_hsm({"keyset", "rotate", "sipflow"}, &out), 0) << out;
  ASSERT_EQ(edge_->edge_hsm({"keyset", "retire", "sipflow", "1"}, &out), 0) << out;
  // One re-read may see the rotation alone (added=2) and the next the retirement; wait for the latter.
  ASSERT_TRUE(edge_->wait_for_log(" removed=1 ", std::chrono::milliseconds(10000), log_mark))
      << "the periodic re-read did not notice the retired version";
  const auto changed = edge_->events("key_set_view_changed");
  ASSERT_FALSE(changed.empty());
  const auto fields = parse_log_fields(changed.back());
  EXPECT_EQ(fields.at("removed"), "1") << changed.back();
  EXPECT_EQ(fields.at("minting"), "2") << changed.back();
  EXPECT_TRUE(edge_->events("reloaded").empty()) << "the test must not depend on a reload";

  // The same version-1 Path, verified and cached a moment ago, now gets 403 from the edge.
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const SipMessage r = bob.receive_response("INVITE");
  EXPECT_EQ(r.status(), 403) << r.summary();
  EXPECT_NE(r.header("Server"), std::optional<std::string>(kCoreServer)) << "the 403 must come from the edge";
  bob.send(TestUa::make_ack_for_failure(invite, r));
  EXPECT_FALSE(alice.try_receive(Millis(500))) << "a request with a retired token reached the client";
  EXPECT_EQ(edge_->status().number("r403"), 1u);

  // The flow is still there, and what it is given now is minted with version 2.
  EXPECT_TRUE(alice.is_open());
  const SipMessage again = alice.register_with();
  ASSERT_EQ(again.status(), 200) << again.summary();
  const std::string v2_token = path_token(again);
  EXPECT_EQ(token_key_version(v2_token), 2u) << v2_token;
  EXPECT_EQ(alice.local_endpoint(), flow);

  Call c2 = call(bob, alice);
  const auto rr = c2.invite_received.header_values("Record-Route");
  ASSERT_FALSE(rr.empty());
  EXPECT_EQ(token_key_version(uri_user(uri_of(rr[0]))), 2u) << rr[0];
  bob.send(bob.make_in_dialog(c2.caller, "BYE"));
  const SipMessage bye2 = alice.receive_request("BYE");
  alice.send(alice.make_response(bye2, 200, "OK"));
  EXPECT_EQ(bob.receive_response("BYE").status(), 200);
}

// A rollback goes back to the rules that ran before the last swap, with their own key-set view and
// verified-token cache. A version retired by another process while the change ran must not come
// back with them: the rollback re-reads that view. The periodic re-read is off here, so nothing
// else could notice the retirement.
using KeySetViewRollback = KeySetViewTest<0>;

TEST_F(KeySetViewRollback, AVersionRetiredDuringAnUnconfirmedApplyIsRefusedAfterItsRollback) {
  TestUa& alice = ua("alice");
  TestUa& bob = ua("bob");
  // The version-1 Path is verified (and cached) by the rules that will be the rollback target.
  register_and_verify_once(alice, bob);
  ASSERT_FALSE(HasFailure());

  std::string out;
  ASSERT_EQ(edge_->edgectl({"property", "set", "sip.flow_timer", "50"}, &out), 0) << out;
  ASSERT_EQ(edge_->edgectl({"apply", "--confirm-within", "3"}, &out), 0) << out;
  const std::size_t log_mark = edge_->log().size();
  // While the change waits for its confirmation, another process rotates and retires version 1.
  ASSERT_EQ(edge_->edge_hsm({"keyset", "rotate", "sipflow"}, &out), 0) << out;
  ASSERT_EQ(edge_->edge_hsm({"keyset", "retire", "sipflow", "1"}, &out), 0) << out;
  ASSERT_TRUE(edge_->wait_for_log("event=mgmt_rollback", std::chrono::milliseconds(15000), log_mark))
      << "the unconfirmed apply was not rolled back";
  EXPECT_TRUE(edge_->wait_for_log(" removed=1 ", std::chrono::milliseconds(5000), log_mark))
      << "the rollback did not re-read the key-set view of the rules it went back to";

  // The rolled-back rules had version 1 verified in their cache: now it gets 403 from the edge.
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const SipMessage r = bob.receive_response("INVITE");
  EXPECT_EQ(r.status(), 403) << r.summary();
  EXPECT_NE(r.header("Server"), std::optional<std::string>(kCoreServer)) << "the 403 must come from the edge";
  bob.send(TestUa::make_ack_for_failure(invite, r));
  EXPECT_FALSE(alice.try_receive(Millis(500))) << "a request with a retired token reached the client";

  // The rolled-back configuration runs (Flow-Timer 30 again) and mints with version 2.
  const SipMessage again = alice.register_with();
  ASSERT_EQ(again.status(), 200) << again.summary();
  EXPECT_EQ(again.header("Flow-Timer"), "30");
  EXPECT_EQ(token_key_version(path_token(again)), 2u);
}

}  // namespace
}  // namespace edge::test
