// Dialogs through the edge: Record-Route with tokens (RFC 5626 §5.3, RFC 5658), INVITE/200/ACK/BYE both ways,
// CANCEL, IPv6.
#include "proxy_test_support.h"

namespace edge::net::testing {
namespace {

using sip::HeaderId;

const char* const kSdp =
    "v=0\r\no=alice 1 1 IN IP4 10.1.1.7\r\ns=-\r\nc=IN IP4 10.1.1.7\r\nt=0 0\r\n"
    "m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

// alice, behind a NAT (her Via names 10.1.1.7), calls bob over UDP.
std::string alice_invite(std::string_view method = "INVITE", std::string_view to_tag = {}) {
  const std::string body = method == "INVITE" ? kSdp : "";
  std::string s =
      "{m} sip:bob@example.test SIP/2.0\n"
      "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKa1inv;rport\n"
      "Max-Forwards: 70\n"
      "From: \"Alice\" <sip:alice@example.test>;tag=a1\n"
      "To: <sip:bob@example.test>{totag}\n"
      "Call-ID: call-1@10.1.1.7\n"
      "CSeq: 1 {m}\n"
      "Contact: <sip:alice@10.1.1.7:5062;ob>\n"
      "Supported: outbound\n"
      "{ct}Content-Length: {len}\n\n";
  s = fill(s, {{"m", std::string(method)},
               {"totag", to_tag.empty() ? "" : ";tag=" + std::string(to_tag)},
               {"ct", body.empty() ? "" : "Content-Type: application/sdp\n"},
               {"len", std::to_string(body.size())}});
  return crlf(s) + body;
}

// The core sends an INVITE to bob's registered contact, routed by bob's Path.
std::string core_invite(std::string_view route, std::string_view method = "INVITE",
                        std::string_view branch = "z9hG4bKcore1") {
  return crlf(
      fill("{m} sip:bob@203.0.113.5:40312;transport=tcp;ob SIP/2.0\n"
           "Record-Route: <sip:10.0.0.2;transport=tcp;lr;ftag=c1>\n"
           "Via: SIP/2.0/TCP 10.0.0.2:5060;branch={br}\n"
           "Via: SIP/2.0/UDP 198.18.5.5:5060;received=198.18.5.5;rport=5060;branch=z9hG4bKcarolx\n"
           "Route: {route}\n"
           "Max-Forwards: 69\n"
           "From: \"Dave\" <sip:dave@example.test>;tag=c1\n"
           "To: <sip:bob@example.test>\n"
           "Call-ID: call-2@198.18.5.5\n"
           "CSeq: 7 {m}\n"
           "Contact: <sip:dave@198.18.5.5:5060>\n"
           "Content-Length: 0\n\n",
           {{"m", std::string(method)}, {"route", std::string(route)}, {"br", std::string(branch)}}));
}

class Dialog : public ProxyFixture {};

TEST_F(Dialog, OutgoingInviteGetsTwoRecordRoutesTheUaFacingOneWithTheToken) {
  const std::string inv = alice_invite();
  from_client(kAlice, inv);
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out fwd(s.bytes);
  // UDP toward clients, TCP toward the core: RFC 5658 double Record-Route.
  ASSERT_EQ(fwd.values(HeaderId::record_route).size(), 2u);
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0), "sip:10.0.0.1:5060;transport=tcp;lr");
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 1), "sip:" + token_of(kAlice) + "@192.0.2.10:5060;lr");
  const sip::Via client = fwd.via(1);
  EXPECT_EQ(client.received, "198.51.100.7");
  EXPECT_EQ(client.rport_value, std::optional<std::uint16_t>(5062));
  EXPECT_EQ(fwd.msg().body(), kSdp);  // the body goes through byte for byte
}

TEST_F(Dialog, OneRecordRouteWhenBothSidesAreTheSameInterface) {
  ProxyConfig cfg = lab_config();
  cfg.client_side = {{Transport::tcp, "10.0.0.1", 5060}};
  make(cfg);
  from_client(kBob, alice_invite());
  Out fwd(out_.take().bytes);
  ASSERT_EQ(fwd.values(HeaderId::record_route).size(), 1u);
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0),
            "sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr");
}

TEST_F(Dialog, InDialogRequestGetsNoRecordRoute) {
  from_client(kAlice, alice_invite("INVITE", "b7"));
  Out fwd(out_.take().bytes);
  EXPECT_TRUE(fwd.values(HeaderId::record_route).empty());
}

TEST_F(Dialog, SubscribeOutsideADialogIsRecordRouted) {
  from_client(kAlice, alice_invite("SUBSCRIBE"));
  Out fwd(out_.take().bytes);
  EXPECT_EQ(fwd.values(HeaderId::record_route).size(), 2u);
}

TEST_F(Dialog, WholeCallFromAUdpClientInviteOkAckByeFromCoreAndItsOk) {
  const std::string token = token_of(kAlice);
  from_client(kAlice, alice_invite());
  Out inv(out_.take().bytes);
  const std::string rr = "<sip:10.0.0.1:5060;transport=tcp;lr>, <sip:" + token + "@192.0.2.10:5060;lr>";

  // 180 and 200 from the core go back over alice's flow, our Via removed.
  for (int status : {180, 200}) {
    from_core(answer(inv.text(), status,
                     {{"Record-Route", rr}, {"Contact", "<sip:bob@203.0.113.5:40312;transport=tcp>"}}));
    const FakeNetwork::Sent s = out_.take();
    ASSERT_FALSE(s.to_core);
    EXPECT_EQ(s.flow, kAlice);
    Out resp(s.bytes);
    EXPECT_EQ(resp.status(), status);
    ASSERT_EQ(resp.values(HeaderId::via).size(), 1u);
    EXPECT_EQ(resp.via(0).branch, "z9hG4bKa1inv");
  }

  // alice's ACK follows the reversed route set: her own token first (outgoing, no
  // HSM call), then our core-facing URI; both are ours and popped.
  const auto verifies = oracle_->verifies.load();
  const std::string ack = crlf(
      "ACK sip:bob@203.0.113.5:40312;transport=tcp SIP/2.0\n"
      "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKa1ack;rport\n"
      "Route: <sip:" +
      token +
      "@192.0.2.10:5060;lr>, <sip:10.0.0.1:5060;transport=tcp;lr>\n"
      "Max-Forwards: 70\n"
      "From: \"Alice\" <sip:alice@example.test>;tag=a1\n"
      "To: <sip:bob@example.test>;tag=uas-tag-1\n"
      "Call-ID: call-1@10.1.1.7\n"
      "CSeq: 1 ACK\n"
      "Content-Length: 0\n\n");
  from_client(kAlice, ack);
  const FakeNetwork::Sent a = out_.take();
  ASSERT_TRUE(a.to_core);
  Out fack(a.bytes);
  EXPECT_TRUE(fack.values(HeaderId::route).empty());
  EXPECT_EQ(oracle_->verifies.load(), verifies);
  EXPECT_EQ(proxy_->stats().outgoing_via_token, 1u);
  EXPECT_GE(proxy_->stats().verifies_avoided, 1u);

  // bob hangs up: the core's BYE carries the route set in its order.
  const std::string bye = crlf(
      "BYE sip:alice@10.1.1.7:5062;ob SIP/2.0\n"
      "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKcorebye\n"
      "Via: SIP/2.0/TCP 203.0.113.5:40312;received=203.0.113.5;branch=z9hG4bKbobbye\n"
      "Route: <sip:10.0.0.1:5060;transport=tcp;lr>, <sip:" +
      token +
      "@192.0.2.10:5060;lr>\n"
      "Max-Forwards: 69\n"
      "From: <sip:bob@example.test>;tag=uas-tag-1\n"
      "To: \"Alice\" <sip:alice@example.test>;tag=a1\n"
      "Call-ID: call-1@10.1.1.7\n"
      "CSeq: 2 BYE\n"
      "Content-Length: 0\n\n");
  from_core(bye);
  const FakeNetwork::Sent b = out_.take();
  ASSERT_FALSE(b.to_core);
  EXPECT_EQ(b.flow, kAlice);
  Out fbye(b.bytes);
  EXPECT_TRUE(fbye.values(HeaderId::route).empty());
  EXPECT_TRUE(fbye.values(HeaderId::record_route).empty());
  EXPECT_EQ(fbye.via(0).transport, "UDP");
  EXPECT_EQ(fbye.via(0).host, "192.0.2.10");
  EXPECT_EQ(fbye.values(HeaderId::via).size(), 3u);
  EXPECT_EQ(proxy_->stats().incoming_via_token, 1u);

  // alice's 200 to the BYE goes to the core without our Via.
  from_client(kAlice, answer(fbye.text(), 200));
  const FakeNetwork::Sent ok = out_.take();
  ASSERT_TRUE(ok.to_core);
  Out fok(ok.bytes);
  EXPECT_EQ(fok.status(), 200);
  EXPECT_EQ(fok.via(0).branch, "z9hG4bKcorebye");
  EXPECT_EQ(fok.values(HeaderId::via).size(), 2u);
}

TEST_F(Dialog, IncomingInviteGoesOverTheTokensFlowWithRecordRouteCopiedWithoutOb) {
  const std::string token = token_of(kBob);
  from_core(core_invite("<sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob>"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  EXPECT_EQ(s.flow, kBob);
  Out fwd(s.bytes);
  EXPECT_TRUE(fwd.values(HeaderId::route).empty());
  EXPECT_EQ(fwd.msg().max_forwards(), std::optional<std::uint32_t>(68));
  // UA-facing value on top with the token; then the Route URI copied without ;ob.
  ASSERT_EQ(fwd.values(HeaderId::record_route).size(), 3u);
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0), "sip:" + token + "@192.0.2.10:5060;transport=tcp;lr");
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 1), "sip:" + token + "@10.0.0.1:5060;transport=tcp;lr");
  EXPECT_EQ(fwd.via(0).transport, "TCP");
  EXPECT_EQ(fwd.via(0).host, "192.0.2.10");

  // bob's 200 returns to the core with our Via popped.
  from_client(kBob, answer(fwd.text(), 200));
  const FakeNetwork::Sent ok = out_.take();
  ASSERT_TRUE(ok.to_core);
  EXPECT_EQ(Out(ok.bytes).via(0).branch, "z9hG4bKcore1");
}

TEST_F(Dialog, CancelFromAClientFollowsItsInviteWithTheSameBranch) {
  from_client(kAlice, alice_invite());
  Out inv(out_.take().bytes);
  from_client(kAlice, alice_invite("CANCEL"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out cancel(s.bytes);
  EXPECT_EQ(cancel.msg().method(), sip::Method::cancel);
  EXPECT_EQ(cancel.via(0).branch, inv.via(0).branch);  // RFC 3261 §16.11
  EXPECT_TRUE(cancel.values(HeaderId::record_route).empty());
}

TEST_F(Dialog, CancelFromTheCoreFollowsTheIncomingInviteToTheSameFlow) {
  const std::string route = "<sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr;ob>";
  from_core(core_invite(route));
  Out inv(out_.take().bytes);
  from_core(core_invite(route, "CANCEL"));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kBob);
  Out cancel(s.bytes);
  EXPECT_EQ(cancel.via(0).branch, inv.via(0).branch);
  EXPECT_EQ(cancel.values(HeaderId::record_route).size(), 1u);  // the core's own; none of ours
}

TEST_F(Dialog, IncomingInviteToAnIpv6Flow) {
  const std::string token = token_of(kCarol);
  from_core(core_invite("<sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob>"));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kCarol);
  Out fwd(s.bytes);
  EXPECT_EQ(fwd.via(0).host, "2001:db8::10");
  EXPECT_TRUE(fwd.via(0).host_is_ipv6);
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0),
            "sip:" + token + "@[2001:db8::10]:5060;transport=tcp;lr");
  // and carol's answer finds the core.
  from_client(kCarol, answer(fwd.text(), 486));
  EXPECT_TRUE(out_.take().to_core);
}

// RFC 7118 §5.2: the URI transport parameter is "ws" for WebSocket flows, secure or
// not ("wss" is no registered value; only the Via says WSS). Both directions: the
// UA-facing Record-Route of an outgoing INVITE and of an incoming one.
class WebSocketDialog : public ProxyFixture, public ::testing::WithParamInterface<Transport> {
 protected:
  void SetUp() override {
    ProxyConfig cfg = lab_config();
    cfg.client_side.push_back({Transport::ws, "192.0.2.10", 8080});
    cfg.client_side.push_back({Transport::wss, "192.0.2.10", 8443});
    make(cfg);
    out_.add_flow(browser());
  }
  FlowKey browser() const {
    return GetParam() == Transport::ws ? flow_of(Transport::ws, "192.0.2.10", 8080, "198.51.100.20", 51000)
                                       : flow_of(Transport::wss, "192.0.2.10", 8443, "198.51.100.20", 51001);
  }
  std::uint16_t port() const { return GetParam() == Transport::ws ? 8080 : 8443; }
};

TEST_P(WebSocketDialog, OutgoingInviteRecordRoutesTheBrowserSideWithTransportWs) {
  from_client(browser(), alice_invite());
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out fwd(s.bytes);
  ASSERT_EQ(fwd.values(HeaderId::record_route).size(), 2u) << fwd.text();
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0), "sip:10.0.0.1:5060;transport=tcp;lr");
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 1),
            "sip:" + token_of(browser()) + "@192.0.2.10:" + std::to_string(port()) + ";transport=ws;lr");
  // That URI is ours when the browser routes its BYE by it: popped, and on to the core.
  std::string bye = alice_invite("BYE", "b7");
  bye.insert(bye.find("Max-Forwards:"), "Route: <" + fwd.route_uri(HeaderId::record_route, 1) + ">, <" +
                                            fwd.route_uri(HeaderId::record_route, 0) + ">\r\n");
  from_client(browser(), bye);
  const FakeNetwork::Sent b = out_.take();
  ASSERT_TRUE(b.to_core);
  EXPECT_TRUE(Out(b.bytes).values(HeaderId::route).empty()) << b.bytes;
}

TEST_P(WebSocketDialog, IncomingInviteRecordRoutesTheBrowserSideWithTransportWs) {
  const std::string token = token_of(browser());
  from_core(core_invite("<sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob>"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  EXPECT_EQ(s.flow, browser());
  Out fwd(s.bytes);
  ASSERT_EQ(fwd.values(HeaderId::record_route).size(), 3u) << fwd.text();
  EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0),
            "sip:" + token + "@192.0.2.10:" + std::to_string(port()) + ";transport=ws;lr");
  // The Via toward the browser still tells WS from WSS (RFC 7118 §5.3).
  EXPECT_EQ(fwd.via(0).transport, GetParam() == Transport::ws ? "WS" : "WSS");
  // The browser's answer, and a request it sends along that route, find their way back.
  from_client(browser(), answer(fwd.text(), 486));
  EXPECT_TRUE(out_.take().to_core);
}

INSTANTIATE_TEST_SUITE_P(Transports, WebSocketDialog, ::testing::Values(Transport::ws, Transport::wss),
                         [](const ::testing::TestParamInfo<Transport>& p) {
                           return p.param == Transport::ws ? std::string("ws") : std::string("wss");
                         });

}  // namespace
}  // namespace edge::net::testing
