// Issue "SIP outbound edge front end", test 2: a call reaches the registered client over its own flow.
#include <ostream>

#include "edge_fixture.h"

namespace edge::test {
namespace {

class CallThroughEdge : public EdgeTest, public ::testing::WithParamInterface<Transport> {};

std::string transport_name(const ::testing::TestParamInfo<Transport>& p) {
  return std::string(via_token(p.param));
}

// bob (UDP, straight to the core) calls alice (registered through the edge):
// core lookup -> Route: <Path URI> -> edge -> the flow alice opened (the TestUa
// has exactly one socket / connection, so receiving on it proves "same flow").
// 200/ACK, then BYE from each side in turn (two calls) along the Record-Route set.
TEST_P(CallThroughEdge, InviteArrivesOnTheClientsOwnFlowAndByeWorksBothWays) {
  const Transport t = GetParam();
  TestUa& alice = ua("alice");
  const SipMessage reg = register_through_edge(alice, t);
  ASSERT_EQ(reg.status(), 200) << reg.summary();
  const std::string token = path_token(reg);
  ASSERT_FALSE(token.empty());
  const Endpoint alice_flow = alice.local_endpoint();

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));

  for (const bool bob_hangs_up : {true, false}) {
    SCOPED_TRACE(bob_hangs_up ? "BYE from the caller" : "BYE from the callee");
    const Call c = call(bob, alice);
    const SipMessage& in = c.invite_received;
    EXPECT_EQ(in.request_uri(), alice.contact_uri())
        << "the core put the registered Contact in the Request-URI";
    EXPECT_FALSE(in.has_header("Route")) << "the edge removed its own Route (the Path URI)";
    const auto vias = in.header_values("Via");
    ASSERT_GE(vias.size(), 3u) << "edge, core, bob";
    EXPECT_TRUE(vias[0].starts_with("SIP/2.0/" + std::string(via_token(t)) + " ")) << vias[0];
    EXPECT_NE(vias[0].find("127.0.0.1:" + std::to_string(edge_->endpoint(t).port)), std::string::npos)
        << vias[0];
    // The edge stays on the path (RFC 5626 §5.3.1): its top Record-Route carries the
    // flow's token (the Route URI copied without ;ob, or RFC 5658's UA-facing value).
    const auto rr = in.header_values("Record-Route");
    ASSERT_GE(rr.size(), 2u) << "the edge's and the core's";
    EXPECT_EQ(uri_user(uri_of(rr[0])), token) << rr[0];
    EXPECT_FALSE(uri_param(uri_of(rr[0]), "ob")) << rr[0];
    EXPECT_TRUE(uri_param(uri_of(rr[0]), "lr")) << rr[0];
    if (t == Transport::ws || t == Transport::wss) {
      // RFC 7118 §5.2: "ws" for WebSocket, secure or not; only the Via says WSS.
      EXPECT_EQ(uri_param(uri_of(rr[0]), "transport"), "ws") << rr[0];
    }
    EXPECT_EQ(alice.local_endpoint(), alice_flow);

    Dialog bob_dialog = c.caller;
    Dialog alice_dialog = c.callee;
    if (bob_hangs_up) {
      bob.send(bob.make_in_dialog(bob_dialog, "BYE"));
      const SipMessage bye = alice.receive_request("BYE");
      EXPECT_FALSE(bye.has_header("Route")) << "every Route value was the edge's or the core's";
      alice.send(alice.make_response(bye, 200, "OK"));
      EXPECT_EQ(bob.receive_response("BYE").status(), 200);
    } else {
      // alice's route set is the Record-Route list as received: edge (token), core...
      ASSERT_FALSE(alice_dialog.route_set.empty());
      EXPECT_EQ(uri_user(uri_of(alice_dialog.route_set.front())), token);
      alice.send(alice.make_in_dialog(alice_dialog, "BYE"));
      const SipMessage bye = bob.receive_request("BYE");
      EXPECT_FALSE(bye.has_header("Route"));
      bob.send(bob.make_response(bye, 200, "OK"));
      const SipMessage ok = alice.receive_response("BYE");
      EXPECT_EQ(ok.status(), 200) << ok.summary();
    }
  }
  EXPECT_TRUE(alice.is_open());
  EXPECT_EQ(alice.local_endpoint(), alice_flow);
  const EdgedStatus s = edge_->status();
  EXPECT_GE(s.number("requests_from_core"), 4u) << "INVITE, ACK, BYE, INVITE, ACK";
  EXPECT_EQ(s.number("r403"), 0u);
  EXPECT_EQ(s.number("r430"), 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, CallThroughEdge,
                         ::testing::Values(Transport::udp, Transport::tcp, Transport::tls, Transport::ws,
                                           Transport::wss),
                         transport_name);

// Both parties behind the edge (alice over WS, bob over TCP): bob's INVITE goes
// client -> edge -> core -> edge -> alice, the edge record-routes on both
// legs, and in-dialog requests travel edge -> core -> edge in both directions.
TEST_F(EdgeTest, CallBetweenTwoClientsOfTheEdge) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::ws).status(), 200);
  TestUa& bob = ua("bob");
  const SipMessage bob_reg = register_through_edge(bob, Transport::tcp);
  ASSERT_EQ(bob_reg.status(), 200);

  const Call c = call(bob, alice);
  // bob's route set (Record-Route reversed) starts with the edge carrying bob's
  // token and ends with the edge's WS-facing value carrying alice's (RFC 5658).
  ASSERT_GE(c.caller.route_set.size(), 3u);
  EXPECT_EQ(uri_user(uri_of(c.caller.route_set.front())), path_token(bob_reg)) << c.caller.route_set.front();
  EXPECT_EQ(uri_param(uri_of(c.caller.route_set.back()), "transport"), "ws") << c.caller.route_set.back();

  Dialog alice_dialog = c.callee;
  alice.send(alice.make_in_dialog(alice_dialog, "INFO"));
  const SipMessage info = bob.receive_request("INFO");
  bob.send(bob.make_response(info, 200, "OK"));
  EXPECT_EQ(alice.receive_response("INFO").status(), 200);

  Dialog bob_dialog = c.caller;
  bob.send(bob.make_in_dialog(bob_dialog, "BYE"));
  const SipMessage bye = alice.receive_request("BYE");
  alice.send(alice.make_response(bye, 200, "OK"));
  EXPECT_EQ(bob.receive_response("BYE").status(), 200);
}

}  // namespace
}  // namespace edge::test

namespace edge::test {
namespace {

// The harness's Kamailio config as it is: to reach the Path URI
// (127.0.0.1:5060;transport=tcp) Kamailio opens a TCP connection of its own to
// the edge's listener instead of using the connection edged opened to it.
class StockCore : public EdgeTest {
 protected:
  CoreRouting core_routing() override { return CoreRouting::stock; }
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.log_level = "debug";  // what edged decided, on failure
    return o;
  }
};

// The edge must deliver the core's request over the client's flow whichever
// connection the core uses to reach the Path URI (RFC 5626 §5.3: the request did
// not arrive on the flow its token names, so it is "incoming" and goes down
// that flow). It must not send it back to the core: that loops until
// Max-Forwards runs out.
TEST_F(StockCore, CallReachesTheClientWhenTheCoreConnectsToTheEdgeItself) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const auto in = alice.try_receive(Millis(3000));
  if (in && in->is_request() && in->method() == "INVITE") {
    alice.send(alice.make_response(*in, 486, "Busy Here", TestUa::new_tag()));
    const SipMessage r = bob.receive_response("INVITE");
    EXPECT_EQ(r.status(), 486) << r.summary();
    bob.send(TestUa::make_ack_for_failure(invite, r));
    return;
  }
  ADD_FAILURE() << "the INVITE never reached alice's flow";
  // What happened instead: how often the INVITE went through the core, and what bob got.
  std::optional<SipMessage> final;
  try {
    final = bob.receive_response("INVITE", Millis(3000));
  } catch (const TimeoutError&) {
  }
  const std::string log = core_->log();
  std::size_t passes = 0;
  for (std::size_t at = log.find("core: INVITE "); at != std::string::npos;
       at = log.find("core: INVITE ", at + 1)) {
    ++passes;
  }
  ADD_FAILURE() << "the INVITE passed through the core " << passes
                << " times (1 expected); bob's final response: "
                << (final ? final->summary() + " Server: " + final->header("Server").value_or("-")
                          : "none in 3 s");
  if (final) bob.send(TestUa::make_ack_for_failure(invite, *final));
}

}  // namespace
}  // namespace edge::test
