// Routing by the token in our Route (RFC 5626 §5.3): incoming vs outgoing, 403 on tampering, 430 for a gone
// flow, 503 without the HSM.
#include "proxy_test_support.h"

namespace edge::net::testing {
namespace {

using sip::HeaderId;

std::string core_request(std::string_view method, std::string_view ruri, std::string_view route,
                         std::string_view branch = "z9hG4bKcore1") {
  std::string s =
      "{m} {ruri} SIP/2.0\n"
      "Via: SIP/2.0/TCP 10.0.0.2:5060;branch={br}\n"
      "{route}"
      "Max-Forwards: 69\n"
      "From: <sip:dave@example.test>;tag=d1\n"
      "To: <sip:bob@example.test>\n"
      "Call-ID: tok-1@10.0.0.2\n"
      "CSeq: 3 {m}\n"
      "Contact: <sip:dave@10.0.0.2>\n"
      "Content-Length: 0\n\n";
  return crlf(fill(s, {{"m", std::string(method)},
                       {"ruri", std::string(ruri)},
                       {"br", std::string(branch)},
                       {"route", route.empty() ? "" : "Route: " + std::string(route) + "\n"}}));
}

std::string client_bye(std::string_view route) {
  return crlf(
      fill("BYE sip:dave@10.0.0.2 SIP/2.0\n"
           "Via: SIP/2.0/TCP 203.0.113.5:40312;branch=z9hG4bKbye1;rport\n"
           "Route: {route}\n"
           "Max-Forwards: 70\n"
           "From: <sip:bob@example.test>;tag=b1\n"
           "To: <sip:dave@example.test>;tag=d1\n"
           "Call-ID: tok-2@203.0.113.5\n"
           "CSeq: 2 BYE\n"
           "Content-Length: 0\n\n",
           {{"route", std::string(route)}}));
}

std::string with_char_changed(std::string token, std::size_t i) {
  token[i] = token[i] == 'A' ? 'B' : 'A';
  return token;
}

class Token : public ProxyFixture {};

TEST_F(Token, OneChangedCharacterInTheTokenIs403FromTheCore) {
  const std::string token = token_of(kBob);
  for (std::size_t i : {std::size_t{0}, std::size_t{10}, token.size() - 2}) {
    const std::string route = "<sip:" + with_char_changed(token, i) + "@10.0.0.1:5060;transport=tcp;lr;ob>";
    from_core(core_request("INVITE", "sip:bob@203.0.113.5:40312;transport=tcp", route));
    const FakeNetwork::Sent s = out_.take();
    ASSERT_TRUE(s.to_core) << i;
    Out resp(s.bytes);
    EXPECT_EQ(resp.status(), 403) << i;
  }
  EXPECT_EQ(proxy_->stats().r403, 3u);
  EXPECT_EQ(proxy_->stats().forwarded_to_flow, 0u);
}

TEST_F(Token, ATamperedTokenFromAClientIs403) {
  const std::string bad = with_char_changed(token_of(kBob), 20);
  from_client(kBob, client_bye("<sip:" + bad + "@192.0.2.10:5060;transport=tcp;lr>"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  EXPECT_EQ(s.flow, kBob);
  EXPECT_EQ(Out(s.bytes).status(), 403);
}

// "bob" is not token-shaped (docs/token-format.md): a Route of ours without a token, so nothing
// names a flow: 404. A token-shaped user part that is not a token of ours is 403.
TEST_F(Token, AUserPartThatIsNotTokenShapedIs404AndATokenShapedForeignOneIs403) {
  from_core(core_request("INVITE", "sip:bob@203.0.113.5", "<sip:bob@10.0.0.1:5060;transport=tcp;lr>"));
  EXPECT_EQ(Out(out_.take().bytes).status(), 404);
  from_core(core_request("INVITE", "sip:bob@203.0.113.5",
                         "<sip:" + std::string(46, 'B') + "@10.0.0.1:5060;transport=tcp;lr>"));
  EXPECT_EQ(Out(out_.take().bytes).status(), 403);
}

TEST_F(Token, AGoneFlowIs430) {
  const std::string token = token_of(kBob);
  out_.close_flow(kBob);
  from_core(
      core_request("INVITE", "sip:bob@203.0.113.5", "<sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob>"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 430);
  EXPECT_EQ(resp.msg().reason_phrase(), "Flow Failed");
  EXPECT_EQ(proxy_->stats().r430, 1u);
}

TEST_F(Token, HsmUnavailableForAnUncachedTokenIs503WithRetryAfter) {
  // Minted elsewhere (a peer node, before a restart): not in this codec's cache.
  flow::TokenCodec other(oracle_);
  const std::string token(other.mint(kBob).token.view());
  oracle_->set_unavailable(true);
  from_core(
      core_request("INVITE", "sip:bob@203.0.113.5", "<sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob>"));
  Out resp(out_.take().bytes);
  EXPECT_EQ(resp.status(), 503);
  EXPECT_EQ(resp.header("Retry-After"), "5");
  // With the HSM back the same token routes.
  oracle_->set_unavailable(false);
  from_core(
      core_request("INVITE", "sip:bob@203.0.113.5", "<sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob>"));
  EXPECT_EQ(out_.take().flow, kBob);
  EXPECT_EQ(proxy_->stats().verifies_hsm, 2u);
}

TEST_F(Token, ATokenWeMintedVerifiesFromTheCacheWithoutTheHsm) {
  const std::string token = token_of(kBob);  // minted through the proxy's codec
  const auto verifies = oracle_->verifies.load();
  from_core(core_request("MESSAGE", "sip:bob@203.0.113.5",
                         "<sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob>"));
  EXPECT_EQ(out_.take().flow, kBob);
  EXPECT_EQ(oracle_->verifies.load(), verifies);
  EXPECT_EQ(proxy_->stats().verifies_avoided, 1u);
  EXPECT_EQ(proxy_->stats().verifies_hsm, 0u);
}

TEST_F(Token, TheClientsOwnTokenOnItsFlowIsOutgoingAndGoesToTheCore) {
  const std::string token = token_of(kBob);
  from_client(kBob, client_bye("<sip:" + token + "@192.0.2.10:5060;transport=tcp;lr>, <sip:10.0.0.2;lr>"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out fwd(s.bytes);
  // Our value popped; the core's stays for the core to consume.
  ASSERT_EQ(fwd.values(HeaderId::route).size(), 1u);
  EXPECT_EQ(fwd.route_uri(HeaderId::route, 0), "sip:10.0.0.2;lr");
  EXPECT_EQ(proxy_->stats().outgoing_via_token, 1u);
  EXPECT_EQ(oracle_->verifies.load(), 0u);
}

std::string alice_message(std::string_view route) {
  return crlf(
      fill("MESSAGE sip:bob@203.0.113.5:40312 SIP/2.0\n"
           "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKam1;rport\n"
           "Route: {route}\n"
           "Max-Forwards: 70\n"
           "From: <sip:alice@example.test>;tag=a9\n"
           "To: <sip:bob@example.test>\n"
           "Call-ID: c2c-1\n"
           "CSeq: 1 MESSAGE\n"
           "Content-Length: 0\n\n",
           {{"route", std::string(route)}}));
}

TEST_F(Token, AnotherClientsTokenFromAClientGoesViaTheCoreByDefault) {
  const std::string bob = "<sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr>";
  from_client(kAlice, alice_message(bob));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out fwd(s.bytes);
  // bob's value stays: the core routes the request back through us.
  ASSERT_EQ(fwd.values(HeaderId::route).size(), 1u);
  EXPECT_EQ("<" + fwd.route_uri(HeaderId::route, 0) + ">", bob);
}

TEST_F(Token, TheRouteWalkPopsTheClientsOwnTokenThenStopsAtAnotherFlows) {
  // A core that did not Record-Route: alice's route set holds her token, our
  // core-facing URI, then bob's Path-derived values.
  const std::string route =
      "<sip:" + token_of(kAlice) +
      "@192.0.2.10:5060;lr>, <sip:10.0.0.1:5060;transport=tcp;lr>, <sip:" + token_of(kBob) +
      "@10.0.0.1:5060;transport=tcp;lr>";
  from_client(kAlice, alice_message(route));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out fwd(s.bytes);
  ASSERT_EQ(fwd.values(HeaderId::route).size(), 1u);
  EXPECT_EQ(fwd.route_user(HeaderId::route, 0), token_of(kBob));
  EXPECT_EQ(proxy_->stats().outgoing_via_token, 1u);
  // The core sends it back: now it is incoming for bob's flow.
  std::string back = s.bytes;
  back.insert(back.find("\r\n") + 2, "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKcoreback\r\n");
  from_core(back);
  EXPECT_EQ(out_.take().flow, kBob);
}

TEST_F(Token, WithDirectClientToClientRoutingAnotherClientsTokenIsIncomingOverThatFlow) {
  ProxyConfig cfg = lab_config();
  cfg.client_to_client_direct = true;
  make(cfg);
  from_client(kAlice, alice_message("<sip:" + token_of(kBob) + "@192.0.2.10:5060;lr>"));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kBob);
  EXPECT_EQ(Out(s.bytes).values(HeaderId::route).size(), 0u);
  from_client(kBob, answer(s.bytes, 200));
  const FakeNetwork::Sent back = out_.take();
  EXPECT_FALSE(back.to_core);
  EXPECT_EQ(back.flow, kAlice);
}

TEST_F(Token, ARouteThatIsNotOursFromAClientGoesToTheCoreUntouched) {
  from_client(kBob, client_bye("<sip:proxy.example.test;lr>"));
  Out fwd(out_.take().bytes);
  EXPECT_EQ(fwd.route_uri(HeaderId::route, 0), "sip:proxy.example.test;lr");
  EXPECT_EQ(fwd.via(0).host, "10.0.0.1");
}

TEST_F(Token, FromTheCoreWithoutATokenIs404AndATelUriIs416) {
  from_core(core_request("INVITE", "sip:bob@203.0.113.5", {}));
  EXPECT_EQ(Out(out_.take().bytes).status(), 404);
  from_core(core_request("INVITE", "sip:bob@203.0.113.5", "<sip:10.0.0.1:5060;transport=tcp;lr>"));
  EXPECT_EQ(Out(out_.take().bytes).status(), 404);
  from_core(core_request("INVITE", "tel:+15551234567", {}));
  EXPECT_EQ(Out(out_.take().bytes).status(), 416);
  // A host named in the message is never a destination.
  from_core(core_request("INVITE", "sip:bob@203.0.113.5", "<sip:198.51.100.99;lr>"));
  EXPECT_EQ(Out(out_.take().bytes).status(), 404);
}

TEST_F(Token, AnAckThatCannotBeRoutedIsDroppedNeverAnswered) {
  from_core(core_request("ACK", "sip:bob@203.0.113.5", {}));
  const std::string bad = with_char_changed(token_of(kBob), 5);
  from_core(core_request("ACK", "sip:bob@203.0.113.5", "<sip:" + bad + "@10.0.0.1:5060;transport=tcp;lr>"));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_ack, 2u);
}

TEST_F(Token, RejectedTokensAreLoggedRateLimitedAndNeverPrinted) {
  ProxyStateOptions options;
  options.log_lines_per_second = 2;
  make(lab_config(), options);
  const std::string token = token_of(kBob);
  const std::string bad = with_char_changed(token, 7);
  for (int i = 0; i < 10; ++i)
    from_core(
        core_request("INVITE", "sip:bob@203.0.113.5", "<sip:" + bad + "@10.0.0.1:5060;transport=tcp;lr>"));
  ASSERT_EQ(log_.size(), 2u);
  for (const std::string& line : log_) {
    EXPECT_EQ(line.find(bad), std::string::npos);
    EXPECT_EQ(line.find(token), std::string::npos);
    EXPECT_NE(line.find("token_rejected"), std::string::npos);
  }
  EXPECT_EQ(proxy_->stats().log_suppressed, 8u);
  EXPECT_EQ(proxy_->stats().r403, 10u);
}

// ---- issue 17: the core wherever it speaks from ----------------------------------------------

// The core's own TCP connection to our listener (a stock core reaching the Path
// URI): the transport marks it (Inbound::core_address, the core's IP), the
// top Via names the core's address, so it is the core: the token routes it to
// bob, with sip.client_to_client_direct false.
class CoreOwnConnection : public ProxyFixture {
 protected:
  void SetUp() override {
    ProxyConfig cfg = lab_config();
    cfg.core_address = {Transport::tcp, "10.0.0.2", 5060};
    make(cfg);
    out_.add_flow(kCoreOwn);
  }
  void from_core_address(const std::string& text) {
    Inbound in{kCoreOwn, false, text, now_};
    in.core_address = true;
    proxy_->on_message(in, out_);
  }
  const FlowKey kCoreOwn = flow_of(Transport::tcp, "192.0.2.10", 5060, "10.0.0.2", 41000);
};

TEST_F(CoreOwnConnection, ARequestFromTheCoresAddressNamingTheCoreInItsViaIsTheCores) {
  ASSERT_FALSE(config_.client_to_client_direct);
  const std::string route = "<sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr>";
  from_core_address(core_request("INVITE", "sip:bob@203.0.113.5:40312", route));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core) << "a core's own connection is the core, not a client going back to it";
  EXPECT_EQ(s.flow, kBob);
  EXPECT_EQ(proxy_->stats().requests_from_core, 1u);
  // bob's answer goes to the core (over the core link, like every answer to the core).
  from_client(kBob, answer(s.bytes, 180));
  EXPECT_TRUE(out_.take().to_core);
}

TEST_F(CoreOwnConnection, FromTheCoresAddressWithAnotherViaItIsAClient) {
  const std::string route = "<sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr>";
  std::string req = core_request("INVITE", "sip:bob@203.0.113.5:40312", route);
  req.replace(req.find("10.0.0.2:5060"), 13, "10.0.0.2:5099");
  from_core_address(req);
  const FakeNetwork::Sent s = out_.take();
  EXPECT_TRUE(s.to_core) << "another process on the core's host is a client: bob's token goes to the core";
  EXPECT_EQ(proxy_->stats().requests_from_core, 0u);
}

TEST_F(CoreOwnConnection, WithoutTheTransportsMarkTheViaAloneIsNotTheCore) {
  const std::string route = "<sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr>";
  from_client(kCoreOwn, core_request("INVITE", "sip:bob@203.0.113.5:40312", route));
  EXPECT_TRUE(out_.take().to_core) << "a Via is the sender's word; the address is the transport's";
}

TEST_F(Token, TheViaTowardTheCoreAsksForRportAndOnAStreamOffersAlias) {
  from_client(kBob, client_bye("<sip:proxy.example.test;lr>"));
  Out fwd(out_.take().bytes);
  EXPECT_TRUE(fwd.via(0).rport);
  EXPECT_TRUE(fwd.via(0).alias);
  ProxyConfig cfg = lab_config();
  cfg.core_side = {Transport::udp, "10.0.0.1", 5060};
  make(cfg);
  from_client(kBob, client_bye("<sip:proxy.example.test;lr>"));
  Out udp(out_.take().bytes);
  EXPECT_TRUE(udp.via(0).rport);
  EXPECT_FALSE(udp.via(0).alias) << "RFC 5923 alias is for connections";
}

// RFC 3261 §16.3 step 4: a core we do not recognise (it reaches us from an
// address that is not `core`) sends alice's request for bob back to us as a
// client; going to the core again would ping-pong until Max-Forwards ran out.
TEST_F(Token, ARequestThatWentToTheCoreThroughUsAndComesBackFromAClientIs482) {
  const FlowKey stranger = flow_of(Transport::tcp, "192.0.2.10", 5060, "10.0.0.9", 41001);
  out_.add_flow(stranger);
  from_client(kAlice, alice_message("<sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr>"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  std::string back = s.bytes;
  back.insert(back.find("\r\n") + 2, "Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bKloop1\r\n");
  from_client(stranger, back);
  const FakeNetwork::Sent r = out_.take();
  ASSERT_FALSE(r.to_core) << "sent to the core a second time";
  EXPECT_EQ(r.flow, stranger);
  EXPECT_EQ(Out(r.bytes).status(), 482);
  // Without a token too (a Request-URI the core routes to us, say).
  std::string no_token = back;
  const std::size_t at = no_token.find("Route: ");
  no_token.erase(at, no_token.find("\r\n", at) + 2 - at);
  from_client(stranger, no_token);
  EXPECT_EQ(Out(out_.take().bytes).status(), 482);
  // A Via naming our address with a branch that is not ours is no loop.
  std::string forged = crlf(
      "MESSAGE sip:bob@example.test SIP/2.0\n"
      "Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bKx1\n"
      "Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKnotours\n"
      "Max-Forwards: 70\nFrom: <sip:a@example.test>;tag=1\nTo: <sip:bob@example.test>\n"
      "Call-ID: forged-1\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n");
  from_client(stranger, forged);
  EXPECT_TRUE(out_.take().to_core);
}

}  // namespace
}  // namespace edge::net::testing
