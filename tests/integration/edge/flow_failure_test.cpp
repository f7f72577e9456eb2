// Issue "SIP outbound edge front end", tests 3 and 4: 430 for a closed flow, 403 for an altered token.
#include <ostream>

#include "edge_fixture.h"

namespace edge::test {
namespace {

// The edge's own responses never carry the core's Server header (the core's
// always do): that is how a test tells who answered.
void expect_from_edge(const SipMessage& r) {
  EXPECT_NE(r.header("Server"), std::optional<std::string>(kCoreServer))
      << r.summary() << " came from the core, not from the edge";
}

class FlowClosed : public EdgeTest, public ::testing::WithParamInterface<Transport> {};

std::string transport_name(const ::testing::TestParamInfo<Transport>& p) {
  return std::string(via_token(p.param));
}

// RFC 5626 §5.3.1: the client's connection is gone, so a request the core
// routes to it with the flow's token gets 430 Flow Failed from the edge.
TEST_P(FlowClosed, NextRequestTowardTheClientGets430FromTheEdge) {
  const Transport t = GetParam();
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, t).status(), 200);
  const std::string flows_key = "flows_" + std::string(uri_transport(t));
  ASSERT_EQ(edge_->status().number(flows_key), 1u);

  alice.close();
  ASSERT_TRUE(wait_status([&](const EdgedStatus& s) { return s.number(flows_key) == 0; }))
      << "edged did not notice that the client closed its connection";

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const SipMessage r = bob.receive_response("INVITE");
  EXPECT_EQ(r.status(), 430) << r.summary();
  expect_from_edge(r);
  bob.send(TestUa::make_ack_for_failure(invite, r));

  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("r430"), 1u);
  EXPECT_FALSE(edge_->events("flow_failed").empty()) << "no event=flow_failed log line";
}

INSTANTIATE_TEST_SUITE_P(StreamTransports, FlowClosed,
                         ::testing::Values(Transport::tcp, Transport::tls, Transport::ws, Transport::wss),
                         transport_name);

// RFC 5626 §5.3.1: a token that fails its integrity check gets 403. Here a peer
// of the edge presents alice's token with one character changed in a Route to
// the edge; the request must not reach alice.
TEST_F(EdgeTest, AlteredTokenFromAPeerGets403) {
  TestUa& alice = ua("alice");
  const SipMessage reg = register_through_edge(alice, Transport::tcp);
  ASSERT_EQ(reg.status(), 200);
  const std::string token = path_token(reg);
  ASSERT_FALSE(token.empty());
  const std::string bad = tamper_token(token);
  ASSERT_NE(bad, token);

  TestUa& mallory = ua("mallory");
  mallory.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  SipMessage invite = mallory.make_invite(alice.contact_uri());
  invite.prepend_header("Route", "<sip:" + bad + "@127.0.0.1:5060;transport=tcp;lr>");
  mallory.send(invite);
  const SipMessage r = mallory.receive_response("INVITE");
  EXPECT_EQ(r.status(), 403) << r.summary();
  expect_from_edge(r);
  mallory.send(TestUa::make_ack_for_failure(invite, r));
  EXPECT_FALSE(alice.try_receive(Millis(500))) << "the request with the altered token reached the client";

  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("r403"), 1u);
  EXPECT_FALSE(edge_->events("token_rejected").empty());
}

// The same check on the core side: bob sends an in-dialog request that the core
// loose-routes (its own Route value first) to the edge with a token. The valid
// token reaches alice; one changed character gets 403 from the edge, relayed by the core.
TEST_F(EdgeTest, AlteredTokenFromTheCoreGets403AndTheValidOneIsDelivered) {
  TestUa& alice = ua("alice");
  const SipMessage reg = register_through_edge(alice, Transport::tcp);
  ASSERT_EQ(reg.status(), 200);
  const std::string token = path_token(reg);
  ASSERT_FALSE(token.empty());

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  auto options_via_core = [&](const std::string& tok) {
    SipMessage m = SipMessage::request("OPTIONS", alice.contact_uri());
    m.add_header("Via", bob.via(TestUa::new_branch()));
    m.add_header("Max-Forwards", "70");
    m.add_header("Route", "<sip:127.0.0.1:5080;lr>");
    m.add_header("Route", "<sip:" + tok + "@127.0.0.1:5060;transport=tcp;lr>");
    m.add_header("From", "<" + bob.aor() + ">;tag=" + TestUa::new_tag());
    m.add_header("To", "<" + alice.aor() + ">;tag=" + TestUa::new_tag());  // in dialog: the core loose-routes
    m.add_header("Call-ID", TestUa::new_call_id());
    m.add_header("CSeq", "7 OPTIONS");
    return m;
  };

  bob.send(options_via_core(token));
  const SipMessage delivered = alice.receive_request("OPTIONS");
  alice.send(alice.make_response(delivered, 200, "OK"));
  EXPECT_EQ(bob.receive_response("OPTIONS").status(), 200);

  bob.send(options_via_core(tamper_token(token)));
  const SipMessage r = bob.receive_response("OPTIONS");
  EXPECT_EQ(r.status(), 403) << r.summary();
  expect_from_edge(r);
  EXPECT_FALSE(alice.try_receive(Millis(500))) << "the request with the altered token reached the client";
  EXPECT_EQ(edge_->status().number("r403"), 1u);
}

}  // namespace
}  // namespace edge::test
