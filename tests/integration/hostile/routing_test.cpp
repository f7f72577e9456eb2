// Issue 17, routing, against the real edged with Kamailio behind it: a strict-routed BYE is restored
// (RFC 3261 §16.4), an outbound proxy URI with a user part that is no token is loose routing
// (docs/token-format.md, "Token-shaped user parts"), and a request that our headers take over the core
// link's limit gets 513 from the edge while the core link stays up.
#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

class EdgeRouting : public HostileTest {};

// alice's phone strict-routes (RFC 2543): it puts the first URI of its route set (the edge's
// Record-Route URI with alice's token) in the Request-URI and bob's Contact at the end of Route. The
// edge restores it; bob gets the BYE for his own Contact, and alice the 200.
TEST_F(EdgeRouting, AStrictRoutedByeIsRestoredAndReachesTheCallee) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  TestUa& bob = ua("bob");
  ASSERT_EQ(register_through_edge(bob, Transport::tcp).status(), 200);
  Call c = call(alice, bob);
  ASSERT_GE(c.caller.route_set.size(), 2u) << "the edge and the core recorded the route";

  SipMessage bye = alice.make_in_dialog(c.caller, "BYE");
  bye.set_request_uri(uri_of(c.caller.route_set.front()));
  bye.remove_header("Route");
  for (std::size_t i = 1; i < c.caller.route_set.size(); ++i) bye.add_header("Route", c.caller.route_set[i]);
  bye.add_header("Route", "<" + c.caller.remote_target + ">");
  alice.send(bye);

  const SipMessage got = bob.receive_request("BYE");
  EXPECT_EQ(got.request_uri(), c.caller.remote_target) << got.summary();
  EXPECT_TRUE(got.header_values("Route").empty()) << got.summary();
  bob.send(bob.make_response(got, 200, "OK"));
  EXPECT_EQ(alice.receive_response("BYE").status(), 200);
  alice.close();
  bob.close();
  expect_unharmed();
}

// An outbound proxy configured as sip:alice@<edge>;lr: the Route is popped and the INVITE goes to the
// core, which sends it to bob through the edge (the core's Via is in it).
TEST_F(EdgeRouting, AnOutboundProxyUriWithAUserPartIsLooseRoutedThroughTheCore) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  TestUa& bob = ua("bob");
  ASSERT_EQ(register_through_edge(bob, Transport::tcp).status(), 200);
  SipMessage inv = alice.make_invite(bob.aor());
  const Endpoint edge = edge_->endpoint(Transport::tcp);
  inv.set_header("Route", "<sip:alice@" + edge.host_port() + ";transport=tcp;lr>");
  alice.send(inv);
  const SipMessage got = bob.receive_request("INVITE");
  EXPECT_EQ(got.header_values("Via").size(), 4u) << "edge, core, edge, alice: " << got.summary();
  bob.send(bob.make_response(got, 486, "Busy Here", TestUa::new_tag()));
  const SipMessage busy = alice.receive_response("INVITE");
  EXPECT_EQ(busy.status(), 486);
  alice.send(TestUa::make_ack_for_failure(inv, busy));
  alice.close();
  bob.close();
  expect_unharmed();
}

// A MESSAGE that arrives within limits.max_message_size (65535) but that our Via and received/rport
// take over it: 513 from the edge (not the core), nothing sent to the core; the core link and the
// bystander's calls go on.
TEST_F(EdgeRouting, ARequestOurHeadersTakeOverTheCoreLinksLimitGets513) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  SipMessage m = alice.make_invite(bystander_->aor());
  const std::size_t without_body = m.to_string().size();
  m.set_body(std::string(65'535 - without_body - 40, 'v'), "text/plain");
  ASSERT_LE(m.to_string().size(), 65'535u) << "the edge reads it";
  alice.send(m);
  const SipMessage r = alice.receive_response("INVITE");
  EXPECT_EQ(r.status(), 513) << r.summary();
  EXPECT_NE(r.header("Server").value_or(""), kCoreServer) << "the core answered, not the edge";
  EXPECT_FALSE(bystander_->try_receive(Millis(300))) << "the oversized INVITE reached the callee";
  alice.send(TestUa::make_ack_for_failure(m, r));
  alice.close();
  expect_unharmed();
}

}  // namespace
}  // namespace edge::test::hostile
