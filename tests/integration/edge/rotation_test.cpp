// Issue "SIP outbound edge front end", test 8: key rotation (edge-hsm keyset rotate + SIGHUP) while
// registered.
#include <ostream>

#include "edge_fixture.h"

namespace edge::test {
namespace {

// The registered flow survives the controlled restart (same connection), the
// core's stored Path (a version-1 token) still reaches the client, and a new
// REGISTER on that flow gets a token of the new key version.
TEST_F(EdgeTest, KeyRotationKeepsFlowsAndOldTokensAndMintsWithTheNewVersion) {
  TestUa& alice = ua("alice");
  const SipMessage reg = register_through_edge(alice, Transport::tcp);
  ASSERT_EQ(reg.status(), 200) << reg.summary();
  const std::string old_token = path_token(reg);
  ASSERT_EQ(token_key_version(old_token), 1u) << old_token;
  const Endpoint flow = alice.local_endpoint();

  std::string out;
  ASSERT_EQ(edge_->edge_hsm({"keyset", "rotate", "sipflow"}, &out), 0) << out;
  ASSERT_TRUE(edge_->reload()) << "SIGHUP did not log event=reloaded";
  const auto reloaded = edge_->events("reloaded");
  ASSERT_FALSE(reloaded.empty());
  EXPECT_EQ(parse_log_fields(reloaded.back())["minting_version"], "2") << reloaded.back();

  // Same connection: still open, still counted, and it still carries SIP.
  EXPECT_TRUE(alice.is_open());
  EXPECT_EQ(edge_->status().number("flows_tcp"), 1u);
  alice.send_ping();
  EXPECT_TRUE(alice.wait_pong()) << "the flow did not survive the reload";

  // The core still holds the version-1 Path: a call through it reaches alice's flow.
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  Call c = call(bob, alice);
  EXPECT_EQ(alice.local_endpoint(), flow);
  const auto rr = c.invite_received.header_values("Record-Route");
  ASSERT_FALSE(rr.empty());
  EXPECT_EQ(uri_user(uri_of(rr[0])), old_token) << "the Route's token is copied into Record-Route";
  bob.send(bob.make_in_dialog(c.caller, "BYE"));
  const SipMessage bye = alice.receive_request("BYE");
  alice.send(alice.make_response(bye, 200, "OK"));
  EXPECT_EQ(bob.receive_response("BYE").status(), 200);

  // A new REGISTER on the same flow: Path with a version-2 token for the same flow.
  const SipMessage again = alice.register_with();
  ASSERT_EQ(again.status(), 200) << again.summary();
  const std::string new_token = path_token(again);
  EXPECT_EQ(token_key_version(new_token), 2u) << new_token;
  EXPECT_NE(new_token, old_token);
  EXPECT_EQ(alice.local_endpoint(), flow);

  // And the new Path works too.
  Call c2 = call(bob, alice);
  const auto rr2 = c2.invite_received.header_values("Record-Route");
  ASSERT_FALSE(rr2.empty());
  EXPECT_EQ(uri_user(uri_of(rr2[0])), new_token);
  alice.send(alice.make_in_dialog(c2.callee, "BYE"));
  const SipMessage bye2 = bob.receive_request("BYE");
  bob.send(bob.make_response(bye2, 200, "OK"));
  EXPECT_EQ(alice.receive_response("BYE").status(), 200);

  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("r403"), 0u);
  EXPECT_EQ(s.number("r430"), 0u);
}

}  // namespace
}  // namespace edge::test
